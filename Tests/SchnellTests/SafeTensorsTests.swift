import Foundation
import XCTest
@testable import Schnell

/// The safetensors reader on good and damaged files: every damage is refused with an error
/// naming the file and, where there is one, the tensor.
final class SafeTensorsTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-safetensors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Writes a file from a header (JSON text) and raw data; `headerLength` overrides the prefix.
    func write(_ name: String, header: String, data: [UInt8], headerLength: UInt64? = nil) throws -> String {
        let headerBytes = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (headerLength ?? UInt64(headerBytes.count)).littleEndian) { Array($0) }
        bytes += headerBytes + data
        let path = folder.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    func assertRefused(_ path: String, containing words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(path: path), file: file, line: line) { error in
            let message = "\(error)"
            for word in words + [path] {
                XCTAssertTrue(message.contains(word), "'\(message)' should mention '\(word)'", file: file, line: line)
            }
        }
    }

    func testReadsTensorsInEveryDType() throws {
        let header = #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"#
            + #""b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},"c":{"dtype":"F16","shape":[1],"data_offsets":[20,22]},"#
            + #""d":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[22,24]}}"#
        let data = floats([1, 2, 3, 4]) + [0x80, 0x3f, 0x00, 0xc0] + [0x00, 0x3c] + [0x38, 0x7e]
        let file = try SafeTensorsFile(path: try write("good.safetensors", header: header, data: data))
        XCTAssertEqual(file.metadata["format"], "pt")
        XCTAssertEqual(file.tensors["a"]?.floats(), [1, 2, 3, 4])
        XCTAssertEqual(file.tensors["b"]?.floats(), [1, -2])
        XCTAssertEqual(file.tensors["c"]?.floats(), [1])
        XCTAssertEqual(file.tensors["d"]?.floats(), [1, 448])
        XCTAssertEqual(file.tensors["a"]?.rows(1..<2).floats(), [3, 4])
    }

    func testHeaderLengthPastTheEnd() throws {
        let path = try write("long.safetensors", header: "{}", data: [], headerLength: 1 << 40)
        assertRefused(path, containing: ["header length", "past the end"])
    }

    func testTooSmallAndEmptyFiles() throws {
        let path = folder.appendingPathComponent("tiny.safetensors").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        assertRefused(path, containing: ["too small"])
        let empty = folder.appendingPathComponent("empty.safetensors").path
        try Data().write(to: URL(fileURLWithPath: empty))
        assertRefused(empty, containing: ["too small"])
    }

    func testInvalidJSONHeader() throws {
        assertRefused(try write("json.safetensors", header: #"{"a": {"dtype": "F32", "#, data: []), containing: ["not valid JSON"])
        assertRefused(try write("array.safetensors", header: "[1, 2]", data: []), containing: ["not a JSON object"])
        assertRefused(try write("fields.safetensors", header: #"{"w":{"dtype":"F32"}}"#, data: []), containing: ["'w'"])
    }

    func testOffsetsOutOfRange() throws {
        // One tensor points past the data section while another sits at its start: not a cut-off file.
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[96,100]}}"#
        assertRefused(try write("range.safetensors", header: header, data: floats([1, 2])), containing: ["'b'", "outside"])
        let reversed = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#
        assertRefused(try write("reversed.safetensors", header: reversed, data: floats([1, 2])), containing: ["'a'", "outside"])
    }

    func testOverlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertRefused(try write("overlap.safetensors", header: header, data: floats([1, 2, 3])), containing: ["overlaps", "'a'", "'b'"])
    }

    func testShapeTimesDTypeNotMatchingSpan() throws {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        assertRefused(try write("size.safetensors", header: header, data: floats([1, 2])), containing: ["'a'", "[3]", "8-byte"])
    }

    /// [2^31, 2^31] F32 is 2^64 bytes, which wraps to 0 in 64-bit arithmetic: refused rather than
    /// fitted into a 0-byte span, alone or as two tensors of a recognised model (whose parameter
    /// sum would overflow in `schnell inspect`).
    func testElementCountTimesDTypeSizeMustNotWrap() throws {
        let huge = #"{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}"#
        assertRefused(try write("wrap.safetensors", header: #"{"a":\#(huge)}"#, data: []),
                      containing: ["'a'", "[2147483648, 2147483648]", "0-byte span"])
        let two = try write("wrap2.safetensors", header: #"{"decoder.mid_block.resnets.0.conv1.weight":\#(huge),"b":\#(huge)}"#, data: [])
        XCTAssertThrowsError(try ModelInspector.inspect(path: two)) { error in
            guard case .sizeMismatch(two, _, [1 << 31, 1 << 31], "F32", 0)? = error as? WeightsError else {
                return XCTFail("expected sizeMismatch, got \(error)")
            }
        }
    }

    /// The reference reader's 100 MB header limit; the file is sparse, so it takes no disk.
    func testHeaderOverTheLimitIsRefusedBeforeParsing() throws {
        let length = SafeTensorsFile.maxHeaderBytes + 1
        let path = try write("big-header.safetensors", header: "", data: [], headerLength: length)
        XCTAssertEqual(truncate(path, off_t(8 + length)), 0)
        assertRefused(path, containing: ["\(length) bytes", "\(SafeTensorsFile.maxHeaderBytes)"])
    }

    /// A FIFO or device named like a model file would block open() or read() for ever: each is
    /// refused at once, naming the file and what it is. Bounded: a blocked open fails the test
    /// after 10 s instead of hanging it.
    func testNonRegularFilesAreRefusedWithoutBlocking() throws {
        let fifo = folder.appendingPathComponent("pipe.safetensors").path
        let fifoConfig = folder.appendingPathComponent("config.json").path
        let directory = folder.path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertEqual(mkfifo(fifoConfig, 0o600), 0)
        let attempts: [(path: String, kind: String, open: @Sendable () throws -> Void)] = [
            (fifo, "a FIFO", { _ = try SafeTensorsFile(path: fifo) }),
            (fifoConfig, "a FIFO", { _ = try TransformerConfig(contentsOf: fifoConfig) }),
            ("/dev/zero", "a device", { _ = try SafeTensorsFile(path: "/dev/zero") }),
            ("/dev/zero", "a device", { _ = try CLIPTextConfig.read(path: "/dev/zero") }),
            (directory, "a folder", { _ = try SafeTensorsFile(path: directory) }),
        ]
        for attempt in attempts {
            let finished = DispatchSemaphore(value: 0)
            let outcome = Outcome()
            DispatchQueue.global().async {
                do { try attempt.open() } catch { outcome.message = "\(error)" }
                finished.signal()
            }
            XCTAssertEqual(finished.wait(timeout: .now() + 10), .success, "opening \(attempt.path) blocked")
            XCTAssertEqual(outcome.message, "\(attempt.path): cannot open: \(attempt.kind), not a regular file")
        }
    }

    final class Outcome: @unchecked Sendable {
        var message = "no error"
    }

    func testTruncatedData() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
        assertRefused(try write("cut.safetensors", header: header, data: floats([1, 2, 3])), containing: ["truncated", "'b'"])
    }

    func testUnsupportedDType() throws {
        let header = #"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#
        assertRefused(try write("dtype.safetensors", header: header, data: floats([1, 2])), containing: ["'a'", "I64"])
    }

    func testMissingAndUnexpectedTensorsAtModelLoad() throws {
        let folder = Fixtures.path("transformer/tiny-dev/tiny-dev.safetensors")
        let store = try WeightStore(path: folder)
        let config = try TransformerConfig(checkpoint: Checkpoint(path: folder, family: .transformer))
        let table = FluxWeightNames.table(config)
        // A table for a deeper model misses tensors; a shallower one leaves tensors unused.
        var deeper = config
        deeper.numSingleLayers += 1
        XCTAssertThrowsError(try FluxWeightNames.table(deeper).resolve(from: store, layout: .original)) { error in
            XCTAssertEqual(error as? WeightsError, .missingTensor(name: "single_blocks.2.modulation.lin.weight", file: folder))
        }
        var shallower = deeper
        shallower.numSingleLayers -= 2
        XCTAssertThrowsError(try FluxWeightNames.table(shallower).resolve(from: store, layout: .original)) { error in
            XCTAssertTrue("\(error)".contains("unexpected tensors 'single_blocks.1."), "\(error)")
        }
        XCTAssertNoThrow(try table.resolve(from: store, layout: .original))
    }

    func testWrongShapeIsNamed() throws {
        let path = Fixtures.path("transformer/tiny-dev/tiny-dev.safetensors")
        var config = try TransformerConfig(checkpoint: Checkpoint(path: path, family: .transformer))
        config.axesDimsRope = [2, 2, 4]
        config.jointAttentionDim += 1
        XCTAssertThrowsError(try FluxTransformer(config: config, store: WeightStore(path: path), layout: .original,
                                                 prefix: "", backend: CPUBackend())) { error in
            XCTAssertEqual(error as? WeightsError, .wrongShape(name: "txt_in.weight", file: path, expected: [24, 17], actual: [24, 16]))
        }
    }

    /// The one layer-count parser: 1 + the largest decimal N of `<prefix>N.…`.
    func testBlockCountReadsTheLargestIndex() throws {
        let names = ["blocks.0.a", "blocks.2.b", "blocks.10.c", "blocks.x.d", "blocks.+40.e", "blocks.50",
                     "blocks..f", "other.7.g", "single_blocks.3.h", "blocks.9223372036854775807.i"]
        let path = try TextEncoderFixtures.zeroCheckpoint(names.map { TensorSpec($0, [1]) })
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try WeightStore(path: path)
        XCTAssertEqual(store.blockCount(prefix: "blocks."), 11, "a gap (1) still counts up to the largest index; Int.max (whose count overflows) does not")
        XCTAssertEqual(store.blockCount(prefix: "single_blocks."), 4)
        XCTAssertEqual(store.blockCount(prefix: "other.7."), 0, "names with no index below the prefix")
        XCTAssertEqual(store.blockCount(prefix: "absent."), 0)
        let tiny = try WeightStore(path: Fixtures.path("transformer/tiny-dev/tiny-dev.safetensors"))
        XCTAssertEqual(tiny.blockCount(prefix: "double_blocks."), 1)
        XCTAssertEqual(tiny.blockCount(prefix: "single_blocks."), 2)
    }

    func testShardedFolderReadsEveryShard() throws {
        let store = try WeightStore(path: Fixtures.path("transformer/tiny-dev/transformer"))
        XCTAssertEqual(store.filePaths.count, 13)
        XCTAssertTrue(store.contains("single_transformer_blocks.1.proj_out.weight"))
        let index = Fixtures.path("transformer/tiny-dev/transformer/diffusion_pytorch_model.safetensors.index.json")
        XCTAssertEqual(try WeightStore(path: index).names, store.names)
    }
}
