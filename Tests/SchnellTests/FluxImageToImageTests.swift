import Foundation
import XCTest
@testable import Schnell

/// Image to image and inpainting against diffusers' FluxImg2ImgPipeline and FluxInpaintPipeline
/// (float32, CPU) on the bundled tiny pipeline, fixtures by Tests/Fixtures/generate_edits.py: same
/// init image, mask, prompt, seed, strength and steps must give the same image within 2/255 per pixel,
/// and on the way the same starting latents (relative L2 < 1e-4).
final class FluxImageToImageTests: XCTestCase {
    struct Case: Decodable {
        let name, prompt: String
        let source_width, source_height, width, height, steps: Int
        let strength: Double
        let seeds: [UInt64]
    }

    static let pipeline = Result { try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend()) }

    func loadCase(_ name: String) throws -> (Case, SafeTensorsFile) {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pipeline/edits/\(name).json")))
        return (try JSONDecoder().decode(Case.self, from: data), try SafeTensorsFile(path: Fixtures.path("pipeline/edits/\(name).safetensors")))
    }

    func floats(_ file: SafeTensorsFile, _ name: String) throws -> [Float] {
        guard let tensor = file.tensors[name] else { throw WeightsError.missingTensor(name: name, file: file.path) }
        return tensor.floats()
    }

    func bytes(_ file: SafeTensorsFile, _ name: String) throws -> [UInt8] {
        try floats(file, name).map { UInt8($0) }
    }

    /// Runs the case and returns the worst pixel difference per image, in 1/255 steps.
    func worstDifferences(_ testCase: Case, _ file: SafeTensorsFile, request: GenerationRequest) throws -> [Float] {
        try checkStartLatents(testCase, file, request: request)
        var stepCounts = Set<Int>()
        let result = try Self.pipeline.get().generate(request) { progress in
            stepCounts.insert(progress.stepCount)
            return true
        }
        XCTAssertEqual(result.images.map(\.seed), testCase.seeds)
        // Both cases (4 steps at strength 0.6 or 0.75) run diffusers' last 3 steps.
        XCTAssertEqual(stepCounts, [3])
        let reference = try floats(file, "image_u8"), pixels = testCase.width * testCase.height * 3
        return result.images.enumerated().map { index, image in
            zip(image.rgb, reference[(index * pixels)..<((index + 1) * pixels)]).map { abs(Float($0) - $1) }.max() ?? .infinity
        }
    }

    /// The init image's latent sample (first draw) noised (second draw) to the first sigma that runs.
    func checkStartLatents(_ testCase: Case, _ file: SafeTensorsFile, request: GenerationRequest) throws {
        let pipeline = try Self.pipeline.get()
        let backend = pipeline.ops
        let edit = ImageToImage(request: request, initImage: try XCTUnwrap(request.initImage), steps: testCase.steps,
                                latentChannels: pipeline.vae.config.latentChannels, downsampling: 8, backend: backend)
        let encoded = try edit.encode(vae: pipeline.vae)
        let schedule = try pipeline.scheduler.schedule(steps: testCase.steps, imageSequenceLength: (testCase.width / 16) * (testCase.height / 16))
        for (index, seed) in testCase.seeds.enumerated() {
            var generator = TorchGenerator(seed: seed)
            let start = edit.start(encoded, generator: &generator, schedule: schedule, vae: pipeline.vae, backend: backend)
            let expected = backend.packLatents(backend.upload(try floats(file, "start_latents_\(index)"),
                                                              shape: [edit.channels, edit.latentHeight, edit.latentWidth]))
            XCTAssertLessThan(relativeL2(backend.download(start.latents), backend.download(expected)), 1e-4,
                              "\(testCase.name) seed \(seed): starting latents")
        }
    }

    func testImageToImageMatchesDiffusers() throws {
        let (testCase, file) = try loadCase("img2img-80x60-to-64x48")
        let initImage = InputImage(width: testCase.source_width, height: testCase.source_height, channels: 3,
                                   pixels: try bytes(file, "init_image"))
        // No strength: diffusers' default 0.6 (the fixture's) must be taken.
        XCTAssertEqual(testCase.strength, ImageToImage.defaultStrength)
        let request = GenerationRequest(prompt: testCase.prompt, width: testCase.width, height: testCase.height, steps: testCase.steps,
                                        seed: testCase.seeds[0], count: testCase.seeds.count, initImage: initImage)
        for (index, worst) in try worstDifferences(testCase, file, request: request).enumerated() {
            XCTAssertLessThanOrEqual(worst, 2, "img2img image \(index): max pixel difference \(worst)/255")
        }
    }

    func testInpaintingMatchesDiffusers() throws {
        let (testCase, file) = try loadCase("inpaint-64x48")
        let initImage = InputImage(width: testCase.source_width, height: testCase.source_height, channels: 3,
                                   pixels: try bytes(file, "init_image"))
        let mask = InputImage(width: testCase.source_width, height: testCase.source_height, channels: 4,
                              pixels: try bytes(file, "mask_rgba"))
        let request = GenerationRequest(prompt: testCase.prompt, width: testCase.width, height: testCase.height, steps: testCase.steps,
                                        seed: testCase.seeds[0], initImage: initImage, mask: mask, strength: testCase.strength)
        for worst in try worstDifferences(testCase, file, request: request) {
            XCTAssertLessThanOrEqual(worst, 2, "inpainting: max pixel difference \(worst)/255")
        }
    }

    /// PIL's Lanczos resize, which diffusers applies to an init image of another size: byte for byte.
    func testLanczosResizeIsPILs() throws {
        let file = try SafeTensorsFile(path: Fixtures.path("pipeline/edits/resize.safetensors"))
        for (name, width, height) in [("down", 80, 60), ("up", 40, 30)] {
            let resized = LanczosResampling.resize(try bytes(file, "\(name)_source"), width: width, height: height, channels: 3,
                                                   toWidth: 64, toHeight: 48)
            let expected = try bytes(file, "\(name)_resized")
            let worst = zip(resized, expected).map { abs(Int($0) - Int($1)) }.max() ?? .max
            XCTAssertEqual(worst, 0, "\(name): max difference from PIL \(worst)")
        }
    }

    func testFirstStepFollowsDiffusersArithmetic() {
        XCTAssertEqual(ImageToImage.firstStep(steps: 4, strength: 0.6), 1)
        XCTAssertEqual(ImageToImage.firstStep(steps: 4, strength: 1), 0)
        // 5 * 0.8 is 4.0 in float64; float32's 0.8 would give 4.0000001 and skip no step.
        XCTAssertEqual(ImageToImage.firstStep(steps: 5, strength: 0.8), 1)
        XCTAssertEqual(ImageToImage.firstStep(steps: 28, strength: 0.01), 27)
    }

    func testInvalidEditsNameTheParameter() throws {
        let pipeline = try Self.pipeline.get()
        let rgb = InputImage(width: 64, height: 48, channels: 3, pixels: [UInt8](repeating: 128, count: 64 * 48 * 3))
        let rgba = InputImage(width: 64, height: 48, channels: 4, pixels: [UInt8](repeating: 0, count: 64 * 48 * 4))
        let smallMask = InputImage(width: 32, height: 48, channels: 4, pixels: [UInt8](repeating: 0, count: 32 * 48 * 4))
        func parameter(_ request: GenerationRequest) -> String? {
            do {
                try pipeline.validate(request)
                return nil
            } catch let PipelineError.invalidRequest(parameter, _) {
                return parameter
            } catch {
                return "\(error)"
            }
        }
        func request(initImage: InputImage? = nil, mask: InputImage? = nil, strength: Double? = nil) -> GenerationRequest {
            GenerationRequest(prompt: "p", width: 64, height: 48, initImage: initImage, mask: mask, strength: strength)
        }
        XCTAssertNil(parameter(request(initImage: rgb, mask: rgba, strength: 1)))
        XCTAssertNil(parameter(request(initImage: rgba)))
        for strength in [0, -0.5, 1.01, .nan, 1e-20] {
            XCTAssertEqual(parameter(request(initImage: rgb, strength: strength)), "strength", "strength \(strength)")
        }
        XCTAssertEqual(parameter(request(strength: 0.5)), "strength")
        XCTAssertEqual(parameter(request(mask: rgba)), "image")
        XCTAssertEqual(parameter(request(initImage: rgb, mask: smallMask)), "mask")
        XCTAssertEqual(parameter(request(initImage: rgb, mask: rgb)), "mask")
        let truncated = InputImage(width: 64, height: 48, channels: 3, pixels: [1, 2, 3])
        XCTAssertEqual(parameter(request(initImage: truncated)), "image")
        XCTAssertThrowsError(try pipeline.generate(request(initImage: rgb, strength: 0)))
    }
}
