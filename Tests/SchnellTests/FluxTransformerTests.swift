import Foundation
import XCTest
@testable import Schnell

/// Parity with diffusers' FluxTransformer2DModel on tiny random models (fixtures written by
/// Tests/Fixtures/generate_transformer.py). Tolerance: relative L2 error < 1e-4 in float32.
final class FluxTransformerTests: XCTestCase {
    struct Case {
        let name: String
        let grid: (Int, Int)
        let textTokens: Int
        let axes: [Int]
    }

    static let cases = [
        Case(name: "tiny-schnell", grid: (6, 4), textTokens: 7, axes: [4, 6, 6]),
        Case(name: "tiny-dev", grid: (3, 5), textTokens: 5, axes: [2, 2, 4]),
    ]

    func run(_ model: FluxTransformer, _ testCase: Case) throws -> (output: [Float], expected: [Float]) {
        let io = try SafeTensorsFile(path: Fixtures.path("transformer/\(testCase.name)/io.safetensors"))
        func input(_ name: String) throws -> Tensor {
            guard let tensor = io.tensors[name] else { throw WeightsError.missingTensor(name: name, file: io.path) }
            return tensor.floats()
        }
        let latents = try input("hidden_states"), text = try input("encoder_hidden_states")
        let rotary = model.rotaryTable(textTokens: testCase.textTokens, gridHeight: testCase.grid.0, gridWidth: testCase.grid.1)
        let output = model(latents: latents.reshaped([latents.count / model.config.inChannels, model.config.inChannels]),
                           text: text.reshaped([testCase.textTokens, model.config.jointAttentionDim]),
                           pooled: try input("pooled_projections").reshaped([model.config.pooledProjectionDim]),
                           timestep: try input("timestep").values[0],
                           guidance: io.tensors["guidance"].map { $0.floats().values[0] }, rotary: rotary)
        return (output.values, try input("output").values)
    }

    func testDiffusersLayoutMatchesDiffusers() throws {
        for testCase in Self.cases {
            let model = try FluxTransformer.load(path: Fixtures.path("transformer/\(testCase.name)"), backend: CPUBackend())
            XCTAssertEqual(model.layout, .diffusers)
            XCTAssertEqual(model.config.axesDimsRope, testCase.axes)
            let (output, expected) = try run(model, testCase)
            let error = relativeL2(output, expected)
            XCTAssertLessThan(error, 1e-4, "\(testCase.name) diffusers layout: relative L2 \(error)")
        }
    }

    func testOriginalSingleFileMatchesDiffusers() throws {
        for testCase in Self.cases {
            let path = Fixtures.path("transformer/\(testCase.name)/\(testCase.name).safetensors")
            let model = try FluxTransformer.load(path: path, backend: CPUBackend(), axesDimsRope: testCase.axes)
            XCTAssertEqual(model.layout, .original)
            let (output, expected) = try run(model, testCase)
            let error = relativeL2(output, expected)
            XCTAssertLessThan(error, 1e-4, "\(testCase.name) original layout: relative L2 \(error)")
        }
    }

    func testConfigInferredFromSingleFileMatchesDiffusersConfig() throws {
        for testCase in Self.cases {
            let folder = try Checkpoint(path: Fixtures.path("transformer/\(testCase.name)"), family: .transformer)
            let single = try Checkpoint(path: Fixtures.path("transformer/\(testCase.name)/\(testCase.name).safetensors"),
                                        family: .transformer)
            XCTAssertNil(single.folder.configPath)
            var inferred = try TransformerConfig(checkpoint: single)
            XCTAssertNil(inferred.axesDimsRope, "rotary axes cannot be read from tensors of head width \(inferred.headDim)")
            inferred.axesDimsRope = testCase.axes
            XCTAssertEqual(inferred, try TransformerConfig(checkpoint: folder))
            XCTAssertEqual(folder.folder.configPath.map { ($0 as NSString).lastPathComponent }, "config.json")
        }
    }

    func testSingleFileWithoutAxesIsRefusedWithAClearMessage() throws {
        let path = Fixtures.path("transformer/tiny-dev/tiny-dev.safetensors")
        XCTAssertThrowsError(try FluxTransformer.load(path: path, backend: CPUBackend())) { error in
            XCTAssertTrue("\(error)".contains("rotary axes"), "\(error)")
        }
    }
}
