import Foundation
import XCTest
@testable import Schnell

/// Bytes of a GGUF file written field by field (little-endian, as the GGUF spec lays them out),
/// so a test can write any file, well-formed or not, without going through `GGUFWriter`.
struct GGUFBytes {
    struct Metadata {
        let key: String
        let type: UInt32
        let value: [UInt8]

        static func uint32(_ key: String, _ value: UInt32) -> Metadata { Metadata(key: key, type: 4, value: GGUFBytes.u32(value)) }
        static func string(_ key: String, _ value: String) -> Metadata { Metadata(key: key, type: 8, value: GGUFBytes.string(value)) }
    }

    struct TensorInfo {
        let name: String
        /// Dimensions as GGUF stores them: innermost (ne0) first.
        let ne: [UInt64]
        let type: UInt32
        let offset: UInt64
        var dimensionCount: UInt32? = nil
    }

    var version: UInt32 = 3
    var metadata: [Metadata] = []
    var tensors: [TensorInfo] = []
    var alignment = 32
    var data: [UInt8] = []
    /// Counts written in place of the real ones.
    var tensorCount: UInt64? = nil
    var metadataCount: UInt64? = nil

    static func u32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    static func u64(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    static func string(_ text: String) -> [UInt8] { u64(UInt64(text.utf8.count)) + Array(text.utf8) }

    /// The header up to the last tensor info, unpadded.
    var header: [UInt8] {
        var bytes = Array("GGUF".utf8) + Self.u32(version)
        bytes += Self.u64(tensorCount ?? UInt64(tensors.count)) + Self.u64(metadataCount ?? UInt64(metadata.count))
        for entry in metadata { bytes += Self.string(entry.key) + Self.u32(entry.type) + entry.value }
        for tensor in tensors {
            bytes += Self.string(tensor.name) + Self.u32(tensor.dimensionCount ?? UInt32(tensor.ne.count))
            for size in tensor.ne { bytes += Self.u64(size) }
            bytes += Self.u32(tensor.type) + Self.u64(tensor.offset)
        }
        return bytes
    }

    /// The whole file: the header padded to the alignment, then the data section.
    var file: [UInt8] {
        var bytes = header
        bytes += [UInt8](repeating: 0, count: (alignment - bytes.count % alignment) % alignment)
        return bytes + data
    }
}

/// The GGUF reader (GGUF.swift) on good and damaged files: every damage is refused with a
/// `WeightsError` naming the file and, where there is one, the tensor; counts and lengths too
/// large for the file are refused before anything is allocated for them.
final class GGUFTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// One F32 tensor [2, 2] holding 1, 2, 3, 4 after a string metadata entry.
    func oneTensor(name: String = "w", ne: [UInt64] = [2, 2], type: UInt32 = 0, offset: UInt64 = 0) -> GGUFBytes {
        var gguf = GGUFBytes()
        gguf.metadata = [.string("general.architecture", "flux")]
        gguf.tensors = [.init(name: name, ne: ne, type: type, offset: offset)]
        gguf.data = floats([1, 2, 3, 4])
        return gguf
    }

    /// Refused with a `WeightsError` whose message holds the path and every one of `words`;
    /// returns the error for further checks.
    @discardableResult
    func assertRefused(_ bytes: [UInt8], _ name: String, containing words: [String],
                       file: StaticString = #filePath, line: UInt = #line) throws -> WeightsError? {
        let path = try write(name, bytes)
        var refusal: WeightsError?
        XCTAssertThrowsError(try GGUFFile(path: path), file: file, line: line) { error in
            guard let error = error as? WeightsError else {
                return XCTFail("\(error) is not a WeightsError", file: file, line: line)
            }
            refusal = error
            let message = "\(error)"
            for word in words + [path] {
                XCTAssertTrue(message.contains(word), "'\(message)' should mention '\(word)'", file: file, line: line)
            }
        }
        return refusal
    }

    // MARK: Valid files

    func testReadsVersionsTwoAndThree() throws {
        for version: UInt32 in [2, 3] {
            var gguf = oneTensor()
            gguf.version = version
            let file = try GGUFFile(path: try write("v\(version).gguf", gguf.file))
            XCTAssertEqual(file.version, version)
            XCTAssertEqual(file.alignment, 32)
            XCTAssertEqual(file.tensors["w"]?.floats(), [1, 2, 3, 4])
            XCTAssertEqual(file.metadata["general.architecture"], "flux")
        }
    }

    /// ne [3, 2] is 2 rows of 3: the shape is ne reversed and the values row-major.
    func testShapesAreNeReversed() throws {
        var gguf = GGUFBytes()
        gguf.tensors = [.init(name: "m", ne: [3, 2], type: 0, offset: 0), .init(name: "v", ne: [4, 1, 2, 1], type: 0, offset: 32)]
        gguf.data = floats([1, 2, 3, 4, 5, 6]) + [UInt8](repeating: 0, count: 8) + floats(Array(repeating: 7, count: 8))
        let file = try GGUFFile(path: try write("shapes.gguf", gguf.file))
        XCTAssertEqual(file.tensors["m"]?.shape, [2, 3])
        XCTAssertEqual(file.tensors["m"]?.rows(1..<2).floats(), [4, 5, 6])
        XCTAssertEqual(file.tensors["v"]?.shape, [1, 2, 1, 4])
        XCTAssertEqual(file.tensorOrder, ["m", "v"])
    }

    /// general.alignment 64: the data section starts at the next multiple of 64 and offsets are
    /// multiples of 64 (an offset of 32, good under the default, is refused).
    func testCustomAlignmentIsHonoured() throws {
        var gguf = oneTensor(offset: 64)
        gguf.metadata.append(.uint32("general.alignment", 64))
        gguf.alignment = 64
        gguf.data = [UInt8](repeating: 0xff, count: 64) + floats([1, 2, 3, 4])
        XCTAssertEqual(gguf.header.count % 64 != 0, true, "the header must need padding for the test to mean anything")
        let file = try GGUFFile(path: try write("align64.gguf", gguf.file))
        XCTAssertEqual(file.alignment, 64)
        XCTAssertEqual(file.tensors["w"]?.floats(), [1, 2, 3, 4])

        var misaligned = oneTensor(offset: 32)
        misaligned.metadata.append(.uint32("general.alignment", 64))
        misaligned.alignment = 64
        misaligned.data = [UInt8](repeating: 0, count: 32) + floats([1, 2, 3, 4])
        try assertRefused(misaligned.file, "align64-at32.gguf", containing: ["'w'", "offset 32", "alignment 64"])
    }

    func testMetadataValuesAreRead() throws {
        var gguf = oneTensor()
        let strings = GGUFBytes.u32(8) + GGUFBytes.u64(3) + ["a", "bc", ""].flatMap(GGUFBytes.string)
        let integers = GGUFBytes.u32(5) + GGUFBytes.u64(2) + GGUFBytes.u32(UInt32(bitPattern: -7)) + GGUFBytes.u32(9)
        gguf.metadata += [
            .init(key: "tokenizer.tokens", type: 9, value: strings),
            .init(key: "ints", type: 9, value: integers),
            .init(key: "nested", type: 9, value: GGUFBytes.u32(9) + GGUFBytes.u64(1) + integers),
            .init(key: "u8", type: 0, value: [200]), .init(key: "i8", type: 1, value: [0xff]),
            .init(key: "u16", type: 2, value: [0x34, 0x12]), .init(key: "i16", type: 3, value: [0xfe, 0xff]),
            .init(key: "i32", type: 5, value: GGUFBytes.u32(UInt32(bitPattern: -3))),
            .init(key: "f32", type: 6, value: GGUFBytes.u32(Float(1.5).bitPattern)),
            .init(key: "yes", type: 7, value: [1]), .init(key: "no", type: 7, value: [0]),
            .init(key: "u64", type: 10, value: GGUFBytes.u64(1 << 40)),
            .init(key: "i64", type: 11, value: GGUFBytes.u64(UInt64(bitPattern: -5))),
            .init(key: "f64", type: 12, value: GGUFBytes.u64(Double(0.25).bitPattern)),
            .string("general.name", "tiny ünïcode"),
        ]
        let metadata = try GGUFFile(path: try write("metadata.gguf", gguf.file)).metadata
        let expected = ["tokenizer.tokens": "[3 values]", "ints": "[2 values]", "nested": "[1 values]", "u8": "200", "i8": "-1",
                        "u16": "4660", "i16": "-2", "i32": "-3", "f32": "1.5", "yes": "true", "no": "false",
                        "u64": "1099511627776", "i64": "-5", "f64": "0.25", "general.name": "tiny ünïcode",
                        "general.architecture": "flux"]
        XCTAssertEqual(metadata, expected)
    }

    /// Each type ggml defines, at ggml's block sizes (ggml-common.h: block_q4_0 is a half and 16
    /// bytes for 32 values, block_q6_K 210 bytes for 256, ...): a file holding exactly those bytes
    /// is read, and one byte fewer is a truncated file.
    func testEveryTypeHasGGMLsByteSize() throws {
        let bytesPer256: [(DType, UInt32, Int)] = [
            (.f32, 0, 1024), (.f16, 1, 512), (.bf16, 30, 512), (.q4_0, 2, 8 * 18), (.q4_1, 3, 8 * 20), (.q5_0, 6, 8 * 22),
            (.q5_1, 7, 8 * 24), (.q8_0, 8, 8 * 34), (.q2_K, 10, 84), (.q3_K, 11, 110), (.q4_K, 12, 144), (.q5_K, 13, 176),
            (.q6_K, 14, 210),
        ]
        XCTAssertEqual(Set(bytesPer256.map(\.0)), Set(DType.allCases.filter { $0.ggmlType != nil }), "every GGUF type is listed")
        for (dtype, number, bytes) in bytesPer256 {
            var gguf = GGUFBytes()
            gguf.tensors = [.init(name: "t", ne: [256, 3], type: number, offset: 0)]
            gguf.data = [UInt8](repeating: 0, count: 3 * bytes)
            let tensor = try XCTUnwrap(GGUFFile(path: try write("\(dtype.rawValue).gguf", gguf.file)).tensors["t"])
            XCTAssertEqual(tensor.dtype, dtype)
            XCTAssertEqual(tensor.sizeBytes, 3 * bytes, dtype.rawValue)
            XCTAssertEqual(tensor.rows(1..<2).pointer - tensor.pointer, bytes, "\(dtype.rawValue) row bytes")
            gguf.data.removeLast()
            let error = try assertRefused(gguf.file, "\(dtype.rawValue)-short.gguf", containing: ["'t'", "truncated"])
            guard case .truncated? = error else { return XCTFail("\(dtype.rawValue): \(String(describing: error)) is not .truncated") }
        }
    }

    /// GGUFWriter's file read back: the same names in order, shapes, types and bytes.
    func testWriterRoundTrip() throws {
        let specs: [(String, [Int], DType)] = [("a.weight", [3, 64], .q8_0), ("b.weight", [2, 256], .q4_K), ("c.bias", [5], .f32),
                                               ("d", [2, 3, 4], .f16), ("e", [1, 2, 2, 32], .bf16), ("f", [1, 256], .q6_K)]
        let infos = specs.enumerated().map { index, spec in
            GGUFWriter.TensorInfo(name: spec.0, shape: spec.1, dtype: spec.2) { destination in
                let count = spec.2.byteCount(of: spec.1.reduce(1, *)) ?? 0
                for byte in 0..<count { destination.storeBytes(of: UInt8(truncatingIfNeeded: byte * 7 + index), toByteOffset: byte, as: UInt8.self) }
            }
        }
        let path = folder.appendingPathComponent("written.gguf").path
        try GGUFWriter.write(to: path, metadata: [("general.architecture", "flux"), ("general.name", "round trip")], tensors: infos)
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.tensorOrder, specs.map(\.0))
        XCTAssertEqual(file.metadata["general.architecture"], "flux")
        XCTAssertEqual(file.metadata["general.name"], "round trip")
        XCTAssertEqual(file.metadata["general.quantization_version"], "2")
        for (index, spec) in specs.enumerated() {
            let tensor = try XCTUnwrap(file.tensors[spec.0])
            XCTAssertEqual(tensor.shape, spec.1, spec.0)
            XCTAssertEqual(tensor.dtype, spec.2, spec.0)
            let bytes = Array(UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.sizeBytes))
            XCTAssertEqual(bytes, (0..<tensor.sizeBytes).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }, spec.0)
        }
    }

    /// The fuzzer's seeds (Tests/Fuzz/make_seeds.py) stay valid files, so it starts inside the format.
    func testFuzzSeedsAreValid() throws {
        let seeds = Fixtures.root.deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/gguf")
        let names = try FileManager.default.contentsOfDirectory(atPath: seeds.path).sorted()
        XCTAssertEqual(names, ["blocks.gguf", "floats.gguf", "metadata-v2.gguf"])
        for name in names {
            let file = try GGUFFile(path: seeds.appendingPathComponent(name).path)
            XCTAssertFalse(file.tensors.isEmpty, name)
        }
    }

    // MARK: Damaged files

    func testBadMagicAndVersions() throws {
        var bytes = oneTensor().file
        bytes[3] = UInt8(ascii: "X")
        try assertRefused(bytes, "magic.gguf", containing: ["magic"])
        try assertRefused(Array("GG".utf8), "short.gguf", containing: ["magic"])
        try assertRefused([], "empty.gguf", containing: ["invalid GGUF file", "empty"])
        for version: UInt32 in [1, 4, 0x0300_0000] {
            var gguf = oneTensor()
            gguf.version = version
            try assertRefused(gguf.file, "v\(version).gguf", containing: ["version \(version) is not supported"])
        }
    }

    /// The file cut inside each part of the header: the version, a count, a metadata key, a
    /// metadata value, and the tensor info's name, dimensions, type and offset.
    func testTruncatedHeader() throws {
        var gguf = oneTensor(name: "tensor.weight")
        gguf.metadata.append(.uint32("general.file_type", 7))
        let header = gguf.header
        let tensorInfoStart = header.count - (8 + 13 + 4 + 16 + 4 + 8)
        // Bytes: 0 magic, 4 version, 8 tensor count, 16 metadata count, 24 "general.architecture"
        // = "flux", 68 "general.file_type" = 7 (key chars 76..<93, type 93, value 97), 101 the
        // tensor info (name chars 109..<122, dimension count 122, dims 126, type 142, offset 146).
        // Before byte 74 the counts already ask for more than is left (each metadata entry takes
        // at least 13 bytes, each tensor info 24).
        XCTAssertEqual([tensorInfoStart, header.count], [101, 154])
        let cuts: [(Int, [String])] = [
            (6, ["truncated", "version"]), (12, ["truncated", "tensor count"]),
            (20, ["tensor count 1 is more than the file can hold"]), (40, ["metadata count 2 is more than the file can hold"]),
            (80, ["metadata key", "17 bytes runs past the end"]),
            (95, ["truncated", "type of metadata 'general.file_type'"]),
            (99, ["truncated", "metadata 'general.file_type'"]),
            (104, ["truncated", "name of tensor 0"]),
            (115, ["name of tensor 0", "13 bytes runs past the end"]),
            (124, ["truncated", "dimensions of 'tensor.weight'"]),
            (138, ["truncated", "dimensions of 'tensor.weight'"]),
            (143, ["truncated", "type of 'tensor.weight'"]),
            (153, ["truncated", "offset of 'tensor.weight'"]),
        ]
        for (cut, words) in cuts {
            try assertRefused(Array(header.prefix(cut)), "cut-\(cut).gguf", containing: words)
        }
    }

    /// Cut inside the last tensor's data: `.truncated` naming it, with the sizes.
    func testTruncatedData() throws {
        var gguf = oneTensor()
        gguf.tensors.append(.init(name: "last", ne: [8], type: 0, offset: 32))
        gguf.data = floats([1, 2, 3, 4]) + [UInt8](repeating: 0, count: 16) + floats([1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertNoThrow(try GGUFFile(path: try write("whole.gguf", gguf.file)))
        let error = try assertRefused(Array(gguf.file.dropLast(5)), "cut.gguf", containing: ["'last'", "truncated"])
        XCTAssertEqual(error, .truncated(file: folder.appendingPathComponent("cut.gguf").path, tensor: "last", needBytes: 64, haveBytes: 59))
    }

    func testOffsetsOutOfRange() throws {
        var gguf = oneTensor()
        gguf.tensors.append(.init(name: "far", ne: [4], type: 0, offset: 1 << 20))
        let error = try assertRefused(gguf.file, "far.gguf", containing: ["'far'", "outside"])
        guard case .offsetsOutOfRange? = error else { return XCTFail("\(String(describing: error)) is not .offsetsOutOfRange") }
        // An aligned offset whose end overflows Int, and one past Int.
        try assertRefused(oneTensor(offset: UInt64(Int.max) - 31).file, "wrap.gguf", containing: ["'w'", "outside"])
        try assertRefused(oneTensor(offset: UInt64.max - 31).file, "huge.gguf", containing: ["'w'", "offset 18446744073709551584"])
    }

    func testMisalignedOffset() throws {
        var gguf = oneTensor(offset: 4)
        gguf.data = [0, 0, 0, 0] + gguf.data
        try assertRefused(gguf.file, "misaligned.gguf", containing: ["'w'", "offset 4", "alignment 32"])
    }

    func testBadAlignment() throws {
        for (index, entry) in [GGUFBytes.Metadata.uint32("general.alignment", 48), .uint32("general.alignment", 0),
                               .uint32("general.alignment", 1 << 31),
                               .init(key: "general.alignment", type: 10, value: GGUFBytes.u64(64)),
                               .string("general.alignment", "64")].enumerated() {
            var gguf = oneTensor()
            gguf.metadata.append(entry)
            try assertRefused(gguf.file, "alignment-\(index).gguf", containing: ["general.alignment must be a uint32 power of two"])
        }
    }

    func testUnknownTensorTypeIsNamed() throws {
        let error = try assertRefused(oneTensor(type: 16).file, "iq2.gguf", containing: ["'w'", "IQ2_XXS", "Q8_0", "Q4_K"])
        guard case .unsupportedDType? = error else { return XCTFail("\(String(describing: error)) is not .unsupportedDType") }
        try assertRefused(oneTensor(type: 999).file, "999.gguf", containing: ["'w'", "ggml type 999"])
    }

    func testRowsMustBeWholeBlocks() throws {
        var gguf = oneTensor(ne: [40, 1], type: 8)
        gguf.data = [UInt8](repeating: 0, count: 68)
        try assertRefused(gguf.file, "q8-40.gguf", containing: ["'w'", "40 values", "Q8_0 blocks of 32"])
    }

    func testDimensions() throws {
        let cases: [(GGUFBytes.TensorInfo, [String])] = [
            (.init(name: "w", ne: [4, 0], type: 0, offset: 0), ["dimension of 0"]),
            (.init(name: "w", ne: [1 << 40], type: 0, offset: 0), ["dimension of 1099511627776"]),
            (.init(name: "w", ne: [UInt64.max], type: 0, offset: 0), ["dimension of 18446744073709551615"]),
            (.init(name: "w", ne: [1 << 30, 1 << 30, 1 << 30], type: 0, offset: 0), ["too large"]),
            (.init(name: "w", ne: [1, 1, 1, 1, 4], type: 0, offset: 0), ["5 dimensions"]),
            (.init(name: "w", ne: [], type: 0, offset: 0), ["0 dimensions"]),
            (.init(name: "w", ne: [4], type: 0, offset: 0, dimensionCount: UInt32.max), ["4294967295 dimensions"]),
        ]
        for (index, (info, words)) in cases.enumerated() {
            var gguf = oneTensor()
            gguf.tensors = [info]
            try assertRefused(gguf.file, "dims-\(index).gguf", containing: ["'w'"] + words)
        }
    }

    func testDuplicateNamesAndKeys() throws {
        var tensors = oneTensor()
        tensors.tensors.append(.init(name: "w", ne: [1], type: 0, offset: 32))
        tensors.data += [UInt8](repeating: 0, count: 32)
        try assertRefused(tensors.file, "tensors.gguf", containing: ["tensor 'w' appears twice"])
        var keys = oneTensor()
        keys.metadata.append(.uint32("general.architecture", 1))
        try assertRefused(keys.file, "keys.gguf", containing: ["metadata key 'general.architecture' appears twice"])
    }

    func testOverlappingTensors() throws {
        var gguf = oneTensor()
        gguf.tensors.append(.init(name: "inside", ne: [2], type: 0, offset: 0))
        let error = try assertRefused(gguf.file, "overlap.gguf", containing: ["overlaps", "'w'", "'inside'"])
        guard case .overlapping? = error else { return XCTFail("\(String(describing: error)) is not .overlapping") }
        // Three spans where only the first and the last meet: [0, 96) holds [64, 80).
        var spread = GGUFBytes()
        spread.tensors = [.init(name: "big", ne: [24], type: 0, offset: 0), .init(name: "after", ne: [4], type: 0, offset: 128),
                          .init(name: "hidden", ne: [4], type: 0, offset: 64)]
        spread.data = [UInt8](repeating: 0, count: 160)
        try assertRefused(spread.file, "spread.gguf", containing: ["'hidden'", "'big'", "overlaps"])
    }

    /// Counts and lengths of 2^60 (and others past what the file holds) are refused at once: each
    /// within 1 s (measured: well under 1 ms), and none allocates for what it announces (2^60
    /// items of anything would fail the test by running out of memory).
    func testAbsurdCountsAndLengthsAreRefusedQuickly() throws {
        let huge: UInt64 = 1 << 60
        var tensorCount = oneTensor()
        tensorCount.tensorCount = huge
        var metadataCount = oneTensor()
        metadataCount.metadataCount = huge
        var keyLength = oneTensor()
        keyLength.metadata = [.init(key: "", type: 8, value: [])]
        var keyBytes = keyLength.file
        keyBytes.replaceSubrange(24..<32, with: GGUFBytes.u64(huge))
        var valueLength = oneTensor()
        valueLength.metadata = [.init(key: "k", type: 8, value: GGUFBytes.u64(huge))]
        var arrayLength = oneTensor()
        arrayLength.metadata = [.init(key: "k", type: 9, value: GGUFBytes.u32(0) + GGUFBytes.u64(huge))]
        var fileSizedArray = oneTensor()  // 2^31 - 1 bytes announced in a file of ~200
        fileSizedArray.metadata = [.init(key: "k", type: 9, value: GGUFBytes.u32(0) + GGUFBytes.u64(UInt64(Int32.max)))]
        var arrayOfArrays = oneTensor()  // 2^20 empty arrays would fit in 12 MB; the file has ~200 bytes
        arrayOfArrays.metadata = [.init(key: "k", type: 9, value: GGUFBytes.u32(9) + GGUFBytes.u64(1 << 20))]
        var nameLength = oneTensor()
        nameLength.tensors = []
        nameLength.tensorCount = 1
        nameLength.data = GGUFBytes.u64(huge) + [UInt8](repeating: 0, count: 64)
        let cases: [(String, [UInt8], [String])] = [
            ("tensor-count", tensorCount.file, ["tensor count 1152921504606846976"]),
            ("metadata-count", metadataCount.file, ["metadata count 1152921504606846976"]),
            ("key-length", keyBytes, ["metadata key", "1152921504606846976 bytes"]),
            ("value-length", valueLength.file, ["metadata 'k'", "1152921504606846976 bytes"]),
            ("array-length", arrayLength.file, ["metadata 'k' 1152921504606846976"]),
            ("file-sized-array", fileSizedArray.file, ["metadata 'k' 2147483647"]),
            ("array-of-arrays", arrayOfArrays.file, ["metadata 'k' 1048576"]),
            ("name-length", Array(nameLength.header) + nameLength.data, ["name of tensor 0", "1152921504606846976 bytes"]),
        ]
        for (name, bytes, words) in cases {
            let start = Date()
            try assertRefused(bytes, name + ".gguf", containing: words)
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, name)
        }
    }

    func testBadMetadataValues() throws {
        let cases: [(GGUFBytes.Metadata, [String])] = [
            (.init(key: "k", type: 13, value: []), ["metadata 'k' has unknown type 13"]),
            (.init(key: "k", type: 7, value: [2]), ["metadata 'k' is a bool of value 2"]),
            (.init(key: "k", type: 9, value: GGUFBytes.u32(13) + GGUFBytes.u64(0)), ["array of unknown type 13"]),
            (.init(key: "k", type: 8, value: GGUFBytes.u64(2) + [0xff, 0xfe]), ["metadata 'k' is not UTF-8"]),
            // Arrays of arrays of arrays: more nesting than any GGUF writer produces.
            (.init(key: "k", type: 9, value: GGUFBytes.u32(9) + GGUFBytes.u64(1) + GGUFBytes.u32(9) + GGUFBytes.u64(1)
                                             + GGUFBytes.u32(9) + GGUFBytes.u64(0)), ["nests arrays too deeply"]),
        ]
        for (index, (entry, words)) in cases.enumerated() {
            var gguf = oneTensor()
            gguf.metadata = [entry]
            try assertRefused(gguf.file, "value-\(index).gguf", containing: words)
        }
    }
}
