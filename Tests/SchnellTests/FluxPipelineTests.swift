import Foundation
import XCTest
@testable import Schnell

/// End to end against diffusers' FluxPipeline (float32, CPU) on tiny random pipelines written
/// by Tests/Fixtures/generate_pipeline.py: same prompt, seed, size and steps must give the same
/// image within 2/255 per pixel. Stages are checked on the way (text encoders and final latents,
/// relative L2 < 1e-4) so a failure names the stage.
final class FluxPipelineTests: XCTestCase {
    static let bundled = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Weights/tiny-flux-schnell").path

    struct Case: Decodable {
        let name, pipeline, prompt: String
        let width, height, steps: Int
        let seeds: [UInt64]
        let guidance: Float
        let max_sequence_length: Int
    }

    func loadCase(_ name: String) throws -> (Case, SafeTensorsFile) {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pipeline/cases/\(name).json")))
        return (try JSONDecoder().decode(Case.self, from: data),
                try SafeTensorsFile(path: Fixtures.path("pipeline/cases/\(name).safetensors")))
    }

    func check(_ pipeline: FluxPipeline, caseName: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (testCase, expected) = try loadCase(caseName)
        func golden(_ name: String) throws -> [Float] {
            guard let tensor = expected.tensors[name] else { throw WeightsError.missingTensor(name: name, file: expected.path) }
            return tensor.floats()
        }
        let backend = pipeline.ops
        let pooled = try pipeline.clip.encode(ids: pipeline.clipTokenizer.encode(testCase.prompt)).pooled
        XCTAssertLessThan(relativeL2(backend.download(pooled), try golden("pooled")), 1e-4, "\(caseName): CLIP pooled",
                          file: file, line: line)
        let text = try pipeline.t5.encode(ids: pipeline.t5Tokenizer.encode(testCase.prompt, maxLength: testCase.max_sequence_length))
        XCTAssertLessThan(relativeL2(backend.download(text), try golden("prompt_embeds")), 1e-4, "\(caseName): T5 states",
                          file: file, line: line)

        let request = GenerationRequest(prompt: testCase.prompt, width: testCase.width, height: testCase.height,
                                        steps: testCase.steps, guidance: pipeline.hasGuidance ? testCase.guidance : nil,
                                        seed: testCase.seeds[0],
                                        count: testCase.seeds.count, maxSequenceLength: testCase.max_sequence_length)
        var latents: [[Float]] = []
        let result = try pipeline.generate(request, observe: IntermediateObserver { name, value in
            if name == "latents" { latents.append(backend.download(value)) }
        })
        XCTAssertEqual(result.images.map(\.seed), testCase.seeds, file: file, line: line)
        // The packed latents after the last step (diffusers' output_type="latent"), per image.
        let expectedLatents = try golden("latents"), perImage = expectedLatents.count / testCase.seeds.count
        XCTAssertEqual(latents.count, testCase.seeds.count, "\(caseName): one latents stage per image", file: file, line: line)
        for (index, values) in latents.enumerated() {
            let error = relativeL2(values, Array(expectedLatents[(index * perImage)..<((index + 1) * perImage)]))
            XCTAssertLessThan(error, 1e-4, "\(caseName) image \(index): final latents, relative L2 \(error)", file: file, line: line)
        }
        let reference = try golden("image_u8")
        let pixels = testCase.width * testCase.height * 3
        for (index, image) in result.images.enumerated() {
            let expectedPixels = reference[(index * pixels)..<((index + 1) * pixels)]
            let worst = zip(image.rgb, expectedPixels).map { abs(Float($0) - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 2, "\(caseName) image \(index): max pixel difference \(worst)/255", file: file, line: line)
        }
    }

    func testSchnellFolderMatchesDiffusers() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: Self.bundled), backend: CPUBackend())
        XCTAssertFalse(pipeline.hasGuidance)
        try check(pipeline, caseName: "schnell-64x48")
        try check(pipeline, caseName: "schnell-48x48-n2")
    }

    func testSchnellSingleFilesMatchDiffusers() throws {
        let folder = Fixtures.path("pipeline/tiny-flux-schnell-files")
        let files = PipelineFiles(transformer: folder + "/flux1-tiny-schnell.safetensors", vae: folder + "/ae.safetensors",
                                  clip: folder + "/clip_l.safetensors", t5: folder + "/t5xxl.safetensors",
                                  configFolder: Self.bundled)
        let pipeline = try FluxPipeline.load(files, backend: CPUBackend())
        XCTAssertEqual(pipeline.transformer.layout, .original)
        try check(pipeline, caseName: "schnell-64x48")
    }

    func testDevFolderMatchesDiffusers() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: Fixtures.path("pipeline/tiny-flux-dev")), backend: CPUBackend())
        XCTAssertTrue(pipeline.hasGuidance)
        try check(pipeline, caseName: "dev-32x64")
    }

    func testNoiseIsTorchsForTheSeed() throws {
        let (testCase, expected) = try loadCase("schnell-48x48-n2")
        for (index, seed) in testCase.seeds.enumerated() {
            guard let noise = expected.tensors["noise_\(index)"] else { throw WeightsError.missingTensor(name: "noise_\(index)", file: expected.path) }
            var generator = TorchGenerator(seed: seed)
            XCTAssertEqual(generator.randn(count: noise.count), noise.floats(), "seed \(seed)")
        }
    }

    func testSizesThatAreNotMultiplesOf16AreRefused() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: Self.bundled), backend: CPUBackend())
        XCTAssertThrowsError(try pipeline.generate(GenerationRequest(prompt: "x", width: 100, height: 64))) { error in
            XCTAssertEqual(error as? PipelineError, .invalidRequest(parameter: "width", reason: "100 is not a multiple of 16"))
        }
        XCTAssertThrowsError(try pipeline.generate(GenerationRequest(prompt: "x", width: 64, height: 8))) { error in
            XCTAssertEqual(error as? PipelineError, .invalidRequest(parameter: "height", reason: "8 is outside 16...4096"))
        }
        XCTAssertThrowsError(try pipeline.generate(GenerationRequest(prompt: "x", width: 64, height: 64, guidance: 3.5))) { error in
            XCTAssertEqual((error as? PipelineError).map { "\($0)" }, "guidance: tiny-flux-schnell has no guidance embedding (schnell-like); leave it out")
        }
    }

    func testCancellingStopsTheLoop() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: Self.bundled), backend: CPUBackend())
        var seen = 0
        XCTAssertThrowsError(try pipeline.generate(GenerationRequest(prompt: "x", width: 32, height: 32, steps: 4)) { progress in
            seen += 1
            return progress.stage != .denoising || progress.step < 2
        }) { error in XCTAssertEqual(error as? PipelineError, .cancelled) }
        XCTAssertEqual(seen, 4, "text encoding, steps 1 and 2, then the refused step 3")
    }
}
