import Foundation
import SchnellKernels
import XCTest
@testable import Schnell

/// Paths and comparisons shared by the tests.
enum Fixtures {
    /// Tests/Fixtures, found from this source file so it works from any working directory.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

/// ||a - b|| / ||b||, the error measure the parity tests bound.
func relativeL2(_ actual: [Float], _ expected: [Float]) -> Double {
    precondition(actual.count == expected.count, "sizes differ: \(actual.count) vs \(expected.count)")
    var difference = 0.0, norm = 0.0
    for (a, b) in zip(actual, expected) {
        difference += Double(a - b) * Double(a - b)
        norm += Double(b) * Double(b)
    }
    return (difference / max(norm, 1e-30)).squareRoot()
}

/// Skips the calling test when the tier in use lacks AVX512-BF16, saying what the test needed and
/// which tier runs, so a missing tier shows up as skipped, not as a pass.
func requireAVX512BF16(for what: String) throws {
    let level = schnell_cpu_level()
    guard level >= SCHNELL_CPU_AVX512_BF16 else {
        throw XCTSkip("\(what) needs AVX512-BF16; the tier in use is \(String(cString: schnell_cpu_level_name(level)))")
    }
}

/// Runs `body` at every CPU tier this machine supports, lowest first, then goes back to the tier
/// that was in use. `CPUTierTests` reports the tiers the machine lacks as skipped.
func atEveryTier(_ body: (CPUTier) throws -> Void) rethrows {
    let saved = CPUTier.current
    defer { try? CPUTier.use(saved) }
    for tier in CPUTier.allCases where tier.rawValue <= CPUTier.supported.rawValue {
        XCTAssertNoThrow(try CPUTier.use(tier))
        try body(tier)
    }
}

/// Deterministic pseudo-random floats in [-1, 1) for kernel tests.
struct TestRandom {
    var state: UInt64

    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
    }

    mutating func values(_ count: Int) -> [Float] { (0..<count).map { _ in next() } }
}

/// Small safetensors files written from values, for tests that need weights of their own.
enum SafeTensorsFixture {
    /// A temporary file holding `tensors` (name -> values, shape) in `dtype` (f32 or bf16, rounded
    /// to nearest even), opened; the file is deleted at once (the memory map keeps its data).
    static func write(_ tensors: [String: (values: [Float], shape: [Int])], dtype: DType = .f32) throws -> SafeTensorsFile {
        var header: [String: Any] = [:]
        var data: [UInt8] = []
        for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            let bytes: [UInt8]
            switch dtype {
            case .bf16:
                var halves = [UInt16](repeating: 0, count: tensor.values.count)
                schnell_f32_to_bf16(tensor.values, &halves, tensor.values.count)
                bytes = halves.withUnsafeBytes { Array($0) }
            default:
                bytes = tensor.values.withUnsafeBytes { Array($0) }
            }
            header[name] = ["dtype": dtype.rawValue, "shape": tensor.shape, "data_offsets": [data.count, data.count + bytes.count]]
            data += bytes
        }
        let json = try JSONSerialization.data(withJSONObject: header)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-test-\(UUID().uuidString).safetensors").path
        var file = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        file += Array(json) + data
        try Data(file).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try SafeTensorsFile(path: path)
    }
}

/// Temporary copies of committed fixtures with one part damaged, for the tests of what the
/// loaders refuse; each copy is removed when its test ends.
enum DamagedCopy {
    static func folder(_ source: String, for test: XCTestCase) throws -> URL {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-damaged-\(UUID().uuidString)")
        try FileManager.default.copyItem(atPath: source, toPath: copy.path)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: copy) }
        return copy
    }

    /// Rewrites the JSON object in `file` through `edit`.
    static func editJSON(_ file: URL, _ edit: (inout [String: Any]) -> Void) throws {
        guard var object = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: file.path])
        }
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: file)
    }

    /// Rewrites a safetensors file's header through `edit`, which may append to the data section.
    static func editHeader(_ file: URL, _ edit: (inout [String: Any], inout Data) -> Void) throws {
        let bytes = try Data(contentsOf: file)
        let headerBytes = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        guard var header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerBytes))) as? [String: Any] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: file.path])
        }
        var data = bytes.subdata(in: (8 + headerBytes)..<bytes.count)
        edit(&header, &data)
        let json = try JSONSerialization.data(withJSONObject: header)
        var rewritten = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { rewritten.append(contentsOf: $0) }
        try (rewritten + json + data).write(to: file)
    }
}

extension WeightTensor {
    /// float32 values stored as `dtype` (rounded as `schnell_quantize_reference` does) in memory
    /// the engine owns; `file` names where they came from in messages.
    init(values: [Float], shape: [Int], dtype: DType, name: String, file: String) throws {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        guard let bytes = dtype.byteCount(of: values.count) else {
            throw WeightsError.wrongShape(name: name, file: file, expected: [values.count / dtype.blockValues * dtype.blockValues],
                                          actual: shape)
        }
        let memory = try MappedFile(anonymousBytes: bytes, name: file) { destination in
            schnell_quantize_reference(values, dtype.kernelCode, destination, values.count)
        }
        self.init(name: name, dtype: dtype, shape: shape, file: file, mapping: memory, byteOffset: 0)
    }
}
