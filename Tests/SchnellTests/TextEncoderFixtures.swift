import Foundation
import XCTest
@testable import Schnell

/// The fixtures written by Tests/Fixtures/generate_text_encoders.py (transformers 5.23, torch 2.15).
enum TextEncoderFixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/text_encoders")

    static func path(_ components: String...) -> String {
        components.reduce(root) { $0.appendingPathComponent($1) }.path
    }

    static func inputIds(_ fixture: String) throws -> [Int32] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(fixture, "input_ids.json")))
        return try JSONDecoder().decode([Int32].self, from: data)
    }

    /// A float32 reference output of the fixture.
    static func expected(_ fixture: String, _ name: String) throws -> WeightTensor {
        try SafeTensorsFile(path: path(fixture, "expected.safetensors")).tensors[name]
            ?? { throw WeightsError.missingTensor(name: name, file: fixture) }()
    }

    /// Name -> shape of a manifest of the real encoder.
    static func manifest(_ file: String) throws -> [String: [Int]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(file)))
        return try JSONDecoder().decode([String: [Int]].self, from: data)
    }
}

extension TextEncoderFixtures {
    /// Writes a safetensors file of f16 zeros holding `specs` to a fresh temporary path: shapes
    /// without numbers, for loader tests that need no reference outputs.
    static func zeroCheckpoint(_ specs: [TensorSpec]) throws -> String {
        var header: [String: Any] = [:]
        var offset = 0
        for spec in specs {
            let bytes = spec.shape.reduce(2, *)
            header[spec.name] = ["dtype": "F16", "shape": spec.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header)
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(Data(count: offset))
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("schnell-\(UUID().uuidString).safetensors").path
        try file.write(to: URL(fileURLWithPath: path))
        return path
    }
}
