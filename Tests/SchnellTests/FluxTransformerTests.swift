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

    /// The model's output and its named intermediates on the fixture's inputs, next to diffusers'.
    struct Run {
        let output: [Float]
        let expected: [Float]
        let intermediates: [String: [Float]]
        let io: SafeTensorsFile
    }

    func run(_ model: FluxTransformer, _ testCase: Case, backend: CPUBackend) throws -> Run {
        let io = try SafeTensorsFile(path: Fixtures.path("transformer/\(testCase.name)/io.safetensors"))
        func input(_ name: String) throws -> WeightTensor {
            guard let tensor = io.tensors[name] else { throw WeightsError.missingTensor(name: name, file: io.path) }
            return tensor
        }
        let latents = backend.upload(try input("hidden_states")), text = backend.upload(try input("encoder_hidden_states"))
        let rotary = model.rotaryTable(textTokens: testCase.textTokens, gridHeight: testCase.grid.0, gridWidth: testCase.grid.1)
        var intermediates: [String: [Float]] = [:]
        let output = model(latents: latents.reshaped([latents.count / model.config.inChannels, model.config.inChannels]),
                           text: text.reshaped([testCase.textTokens, model.config.jointAttentionDim]),
                           pooled: backend.upload(try input("pooled_projections")).reshaped([model.config.pooledProjectionDim]),
                           timestep: try input("timestep").floats()[0],
                           guidance: io.tensors["guidance"].map { $0.floats()[0] }, rotary: rotary,
                           observe: IntermediateObserver { name, value in intermediates[name] = backend.download(value) })
        return Run(output: backend.download(output), expected: try input("output").floats(),
                   intermediates: intermediates, io: io)
    }

    func testDiffusersLayoutMatchesDiffusers() throws {
        for testCase in Self.cases {
            let backend = CPUBackend()
            let model = try FluxTransformer.load(path: Fixtures.path("transformer/\(testCase.name)"), backend: backend)
            XCTAssertEqual(model.layout, .diffusers)
            XCTAssertEqual(model.config.axesDimsRope, testCase.axes)
            let result = try run(model, testCase, backend: backend)
            let error = relativeL2(result.output, result.expected)
            XCTAssertLessThan(error, 1e-4, "\(testCase.name) diffusers layout: relative L2 \(error)")
        }
    }

    func testOriginalSingleFileMatchesDiffusers() throws {
        for testCase in Self.cases {
            let path = Fixtures.path("transformer/\(testCase.name)/\(testCase.name).safetensors")
            let backend = CPUBackend()
            let model = try FluxTransformer.load(path: path, backend: backend, axesDimsRope: testCase.axes)
            XCTAssertEqual(model.layout, .original)
            let result = try run(model, testCase, backend: backend)
            let error = relativeL2(result.output, result.expected)
            XCTAssertLessThan(error, 1e-4, "\(testCase.name) original layout: relative L2 \(error)")
        }
    }

    /// Layer by layer against the stages generate_transformer.py kept with forward hooks: the time
    /// embedding (diffusers' `time_text_embed`), the first double-stream block's text and image
    /// outputs, and the first single-stream block's output (diffusers splits it into text and image
    /// rows; the engine keeps the joint sequence). Tolerance: relative L2 < 1e-4 each, float32. In
    /// both checkpoint layouts, so a failure names the stage and the layout.
    func testIntermediatesMatchDiffusersLayerByLayer() throws {
        for testCase in Self.cases {
            let backend = CPUBackend()
            let folder = Fixtures.path("transformer/\(testCase.name)")
            let models = [("diffusers", try FluxTransformer.load(path: folder, backend: backend)),
                          ("original", try FluxTransformer.load(path: folder + "/\(testCase.name).safetensors", backend: backend,
                                                                axesDimsRope: testCase.axes))]
            for (layout, model) in models {
                let result = try run(model, testCase, backend: backend)
                let textWidth = testCase.textTokens * model.config.innerDim
                let single = try XCTUnwrap(result.intermediates["single.0"], "no single.0 stage")
                let stages: [(engine: [Float]?, golden: String)] = [
                    (result.intermediates["temb"], "temb"),
                    (result.intermediates["double.0.txt"], "double0_txt"),
                    (result.intermediates["double.0.img"], "double0_img"),
                    (Array(single[..<textWidth]), "single0_txt"),
                    (Array(single[textWidth...]), "single0_img"),
                ]
                for (engine, golden) in stages {
                    let actual = try XCTUnwrap(engine, "\(testCase.name) \(layout): no stage for \(golden)")
                    let expected = try XCTUnwrap(result.io.tensors[golden], "fixture lacks \(golden)").floats()
                    let error = relativeL2(actual, expected)
                    XCTAssertLessThan(error, 1e-4, "\(testCase.name) \(layout) \(golden): relative L2 \(error)")
                    print("\(testCase.name) \(layout) \(golden): relative L2 error \(error)")
                }
                XCTAssertEqual(result.intermediates.count, 1 + 2 * model.config.numLayers + model.config.numSingleLayers,
                               "temb, two streams per double block, one joint output per single block")
            }
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
