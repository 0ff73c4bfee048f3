import Foundation
import XCTest
@testable import Schnell

/// GGUF and scaled-fp8 weights end to end against diffusers (Tests/Fixtures/generate_quantized.py):
/// the reference is FluxPipeline in float32 with the same weights dequantized by the `gguf`
/// package (or fp8 times its scale), so what is measured here is Schnell's own arithmetic on the
/// quantized weights — the integer kernels quantize activations to int8 per block of 32 (Q8_0)
/// or 256 (K types) — not the quantization itself.
final class QuantizedPipelineTests: XCTestCase {
    static let bundled = FluxPipelineTests.bundled

    struct Bounds {
        /// Relative L2 of the T5 states, the first transformer call's velocity and the final latents.
        let t5, velocity, latents: Double
        /// Image PSNR (dB) against diffusers' 8-bit image.
        let psnr: Double
    }

    func check(_ caseName: String, files: PipelineFiles, bounds: Bounds, file: StaticString = #filePath, line: UInt = #line) throws {
        let pipeline = try FluxPipeline.load(files, backend: CPUBackend())
        let expected = try SafeTensorsFile(path: Fixtures.path("quantized/cases/\(caseName).safetensors"))
        func golden(_ name: String) throws -> WeightTensor {
            guard let tensor = expected.tensors[name] else { throw WeightsError.missingTensor(name: name, file: expected.path) }
            return tensor
        }
        let backend = pipeline.ops
        let prompt = "a photo of a cat sitting on a red sofa"
        let text = try pipeline.t5.encode(ids: pipeline.t5Tokenizer.encode(prompt, maxLength: 256))
        let t5Error = relativeL2(backend.download(text), try golden("prompt_embeds").floats())

        let latentsIn = try golden("call_latents"), textIn = try golden("call_text")
        let rotary = pipeline.transformer.rotaryTable(textTokens: textIn.shape[0], gridHeight: 48 / 16, gridWidth: 64 / 16)
        let velocity = pipeline.transformer(latents: backend.upload(latentsIn), text: backend.upload(textIn),
                                            pooled: backend.upload(try golden("call_pooled")),
                                            timestep: try golden("call_timestep").floats()[0], guidance: nil, rotary: rotary)
        let velocityError = relativeL2(backend.download(velocity), try golden("call_velocity").floats())

        var latents: [Float] = []
        let request = GenerationRequest(prompt: prompt, width: 64, height: 48, steps: 4, seed: 42, count: 1, maxSequenceLength: 256)
        let result = try pipeline.generate(request, observe: IntermediateObserver { name, value in
            if name == "latents" { latents = backend.download(value) }
        })
        let latentsError = relativeL2(latents, try golden("latents").floats())
        let reference = try golden("image_u8").floats()
        let squared = zip(result.images[0].rgb, reference).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) }
        let psnr = 10 * log10(255 * 255 / max(squared / Double(reference.count), 1e-12))
        print(String(format: "%@: T5 %.2e, velocity %.2e, latents %.2e, image PSNR %.1f dB (tier %@)",
                     caseName, t5Error, velocityError, latentsError, psnr, CPUTier.current.description))
        XCTAssertLessThan(t5Error, bounds.t5, "\(caseName): T5 states, relative L2", file: file, line: line)
        XCTAssertLessThan(velocityError, bounds.velocity, "\(caseName): transformer velocity, relative L2", file: file, line: line)
        XCTAssertLessThan(latentsError, bounds.latents, "\(caseName): final latents, relative L2", file: file, line: line)
        XCTAssertGreaterThanOrEqual(psnr, bounds.psnr, "\(caseName): image PSNR", file: file, line: line)
    }

    func testQ8_0MatchesDiffusersOnTheDequantizedWeights() throws {
        let files = PipelineFiles(model: Self.bundled, transformer: Fixtures.path("quantized/tiny-schnell-Q8_0.gguf"),
                                  t5: Fixtures.path("quantized/tiny-t5-Q8_0.gguf"))
        try atEveryTier { _ in
            // Measured on Zen 4: T5 9.0e-3, velocity 8.6e-3, latents 8.3e-3, PSNR 53.5-54.1 dB (the
            // int8 rounding of activations; on the dequantized weights in float32 it was 4e-6).
            try check("tiny-Q8_0", files: files, bounds: Bounds(t5: 2e-2, velocity: 2e-2, latents: 2e-2, psnr: 40))
        }
    }

    func testQ4_KMatchesDiffusersOnTheDequantizedWeights() throws {
        // The bundled folder's tokenizers, CLIP and VAE; its T5 config is of the 32-wide encoder,
        // so the folder is linked without it and the 256-wide GGUF's shapes give the configuration.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-wide-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for part in ["model_index.json", "scheduler", "text_encoder", "tokenizer", "tokenizer_2", "vae"] {
            try FileManager.default.createSymbolicLink(atPath: folder + "/" + part, withDestinationPath: Self.bundled + "/" + part)
        }
        let files = PipelineFiles(model: folder, transformer: Fixtures.path("quantized/wide-schnell-Q4_K.gguf"),
                                  t5: Fixtures.path("quantized/wide-t5-Q4_K.gguf"))
        try atEveryTier { _ in
            // Measured on Zen 4: T5 2.9e-2, velocity 9.3e-3, latents 1.0e-2, PSNR 53.1-53.8 dB.
            try check("wide-Q4_K", files: files, bounds: Bounds(t5: 5e-2, velocity: 2e-2, latents: 2e-2, psnr: 40))
        }
    }

    func testScaledFP8MatchesDiffusersOnTheScaledWeights() throws {
        let files = PipelineFiles(model: Self.bundled, transformer: Fixtures.path("quantized/tiny-schnell-fp8-scaled.safetensors"))
        try atEveryTier { _ in
            try check("tiny-fp8-scaled", files: files, bounds: Bounds(t5: 1e-4, velocity: 1e-4, latents: 1e-4, psnr: 45))
        }
    }

    /// `--weights` quantizes float weights and leaves GGUF blocks as stored.
    func testLoadQuantizationOnlyTouchesFloatWeights() throws {
        let gguf = try WeightStore(path: Fixtures.path("quantized/tiny-schnell-Q8_0.gguf"))
        let blocks = try Linear(weight: gguf.tensor("double_blocks.0.img_attn.qkv.weight"), bias: nil)
        let quantization = WeightQuantization(type: .q4_0)
        XCTAssertEqual(try quantization.quantize(blocks, engineName: "double.0.img_qkv").blocks[0].weight.dtype, .q8_0)
        let float = try WeightStore(path: Self.bundled + "/transformer")
        let layer = try Linear(weight: float.tensor("transformer_blocks.0.attn.to_q.weight"), bias: nil)
        let quantized = try quantization.quantize(layer, engineName: "double.0.img_qkv")
        XCTAssertEqual(quantized.blocks[0].weight.dtype, .q4_0)
        // img_in is kept in a float type by the rule city96's converter follows: a bf16 weight stays
        // bf16 (converting it to F16 could overflow); only float32 ones are narrowed to F16.
        XCTAssertEqual(try quantization.quantize(layer, engineName: "img_in").blocks[0].weight.dtype, .bf16)
    }

    /// A GGUF in place of the safetensors in a diffusers folder's transformer/ (beside its
    /// config.json) loads as the same model as the file given with --transformer.
    func testGGUFInsideADiffusersFolder() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-gguf-folder-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder + "/transformer", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for part in ["model_index.json", "scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"] {
            try FileManager.default.createSymbolicLink(atPath: folder + "/" + part, withDestinationPath: Self.bundled + "/" + part)
        }
        try FileManager.default.createSymbolicLink(atPath: folder + "/transformer/config.json",
                                                   withDestinationPath: Self.bundled + "/transformer/config.json")
        try FileManager.default.createSymbolicLink(atPath: folder + "/transformer/flux1-tiny-schnell-Q8_0.gguf",
                                                   withDestinationPath: Fixtures.path("quantized/tiny-schnell-Q8_0.gguf"))
        let inFolder = try FluxPipeline.load(PipelineFiles(model: folder), backend: CPUBackend())
        XCTAssertEqual(inFolder.transformer.layout, .original)
        let request = GenerationRequest(prompt: "a cat", width: 32, height: 32, steps: 2, seed: 5, count: 1, maxSequenceLength: 256)
        let given = try FluxPipeline.load(PipelineFiles(model: Self.bundled, transformer: Fixtures.path("quantized/tiny-schnell-Q8_0.gguf")),
                                          backend: CPUBackend())
        XCTAssertEqual(try inFolder.generate(request).images[0].rgb, try given.generate(request).images[0].rgb)
        let float = try FluxPipeline.load(PipelineFiles(model: Self.bundled), backend: CPUBackend())
        XCTAssertNotEqual(try inFolder.generate(request).images[0].rgb, try float.generate(request).images[0].rgb,
                          "the folder's GGUF must be what was loaded, not a float transformer")
    }

    /// `schnell quantize` writes the committed files again byte for byte (they pin its rounding
    /// and layout; generate_quantized.py made them with it).
    func testQuantizeRewritesTheCommittedFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-quantize-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for (family, name) in [(ModelFamily.transformer, "tiny-schnell-Q8_0.gguf"), (.t5, "tiny-t5-Q8_0.gguf")] {
            let output = folder + "/" + name
            try CheckpointQuantizer.write(Checkpoint(path: Self.bundled, family: family), to: output,
                                          quantization: WeightQuantization(type: .q8_0))
            let written = try Data(contentsOf: URL(fileURLWithPath: output))
            let committed = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("quantized/" + name)))
            XCTAssertEqual(written.count, committed.count, name)
            XCTAssertTrue(written == committed, "\(name): the bytes differ from the committed file")
        }
    }
}
