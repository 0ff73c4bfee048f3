import Foundation
import XCTest
@testable import Schnell

/// LoRAs on the bundled tiny pipeline against diffusers with the same files
/// (Tests/Fixtures/generate_lora.py: `load_lora_weights` + `set_adapters`, float32): the
/// transformer's output for fixed inputs at scale 0.8, and the final image, for a PEFT file, a
/// kohya file, an XLabs file, two PEFT files at once and a kohya CLIP LoRA; then a Q8_0 base.
final class LoRAParityTests: XCTestCase {
    static let pipeline = Result { try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend()) }
    static let references = Result { try SafeTensorsFile(path: Fixtures.path("lora/references.safetensors")) }

    private func reference(_ name: String) throws -> [Float] {
        try XCTUnwrap(Self.references.get().tensors[name], "no reference '\(name)'").floats()
    }

    private func loras(_ pipeline: FluxPipeline, _ names: [(String, Float)]) throws -> [AppliedLoRA] {
        try names.map { AppliedLoRA(try pipeline.loadLoRA(path: Fixtures.path("lora/\($0.0).safetensors")), scale: $0.1) }
    }

    /// The transformer on the fixed inputs (12 image tokens on a 3 x 4 grid, 5 text tokens).
    private func transformerOutput(_ transformer: FluxTransformer) throws -> [Float] {
        let ops = CPUBackend()
        let latents = ops.upload(try reference("hidden_states"), shape: [12, 64])
        let text = ops.upload(try reference("encoder_hidden_states"), shape: [5, 32])
        let pooled = ops.upload(try reference("pooled_projections"), shape: [16])
        let rotary = transformer.rotaryTable(textTokens: 5, gridHeight: 3, gridWidth: 4)
        return ops.download(transformer(latents: latents, text: text, pooled: pooled, timestep: try reference("timestep")[0],
                                        guidance: nil, rotary: rotary))
    }

    func testTransformerOutputsMatchDiffusers() throws {
        let pipeline = try Self.pipeline.get()
        XCTAssertLessThan(relativeL2(try transformerOutput(pipeline.transformer), try reference("output_base")), 1e-5, "base")
        let cases: [(String, [(String, Float)])] = [
            ("peft", [("peft", 0.8)]), ("peft-small", [("peft-small", 0.8)]), ("kohya", [("kohya", 0.8)]),
            ("xlabs", [("xlabs", 0.8)]), ("peft+peft-small", [("peft", 0.8), ("peft-small", 0.5)]),
        ]
        for (name, applied) in cases {
            let adapted = try pipeline.transformer.adapted(try loras(pipeline, applied).deltas(\.transformerDeltas), mode: .auto)
            let output = try transformerOutput(adapted)
            let expected = try reference("output_\(name)")
            XCTAssertLessThan(relativeL2(output, expected), 1e-4, name)
            XCTAssertGreaterThan(relativeL2(try reference("output_base"), expected), 1e-2, "\(name): the LoRA matters")
        }
    }

    func testImagesMatchDiffusers() throws {
        let pipeline = try Self.pipeline.get()
        let cases: [(String, [(String, Float)])] = [
            ("base", []), ("peft", [("peft", 0.8)]), ("kohya", [("kohya", 0.8)]), ("xlabs", [("xlabs", 0.8)]),
            ("peft+peft-small", [("peft", 0.8), ("peft-small", 0.5)]), ("kohya-te", [("kohya-te", 0.8)]),
        ]
        for (name, applied) in cases {
            var request = GenerationRequest(prompt: "a photo of a cat sitting on a red sofa", width: 64, height: 48, steps: 4, seed: 42,
                                            maxSequenceLength: 256)
            request.loras = try loras(pipeline, applied)
            let image = try pipeline.generate(request).images[0].rgb
            let expected = try reference("image_\(name)").map { Int($0) }
            let worst = zip(image, expected).map { abs(Int($0) - $1) }.max() ?? 255
            XCTAssertLessThanOrEqual(worst, 2, "\(name): largest difference \(worst)/255")
        }
        let base = try reference("image_base"), kohyaTE = try reference("image_kohya-te")
        XCTAssertNotEqual(base, kohyaTE, "the CLIP LoRA changes the image")
    }

    /// A Q8_0 base takes the updates at run time; its output stays as close to diffusers' float
    /// result with the LoRA as the Q8_0 base alone is to the float base.
    func testAQuantizedBaseTakesTheLoRA() throws {
        let quantized = try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend(),
                                              quantization: WeightQuantization(type: .q8_0))
        let baseError = relativeL2(try transformerOutput(quantized.transformer), try reference("output_base"))
        let adapted = try quantized.transformer.adapted(try loras(quantized, [("peft", 0.8)]).deltas(\.transformerDeltas), mode: .auto)
        let loraError = relativeL2(try transformerOutput(adapted), try reference("output_peft"))
        XCTAssertLessThan(loraError, 2e-2, "Q8_0 + LoRA against float + LoRA")
        XCTAssertLessThan(loraError, 3 * max(baseError, 1e-3), "the LoRA adds no error of its own (base alone: \(baseError))")
    }
}
