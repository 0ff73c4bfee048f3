import Foundation
import Schnell
import SchnellImageIO
import SchnellServer
import XCTest

/// `PipelineGenerator` over the bundled tiny model (Weights/tiny-flux-schnell). The reference is
/// `FluxPipeline.generate` called directly with the same request: the same code on the same
/// machine, so the pixels must be identical (PNG is lossless), not merely close.
final class PipelineGeneratorTests: XCTestCase {
    static let bundled = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Weights/tiny-flux-schnell").path

    func loadPipeline() throws -> FluxPipeline {
        try FluxPipeline.load(PipelineFiles(model: Self.bundled), backend: CPUBackend())
    }

    /// An RGB gradient and an RGBA mask whose left half is transparent (regenerated).
    func editImages(width: Int, height: Int) throws -> (image: Image8, mask: Image8) {
        var rgb: [UInt8] = [], rgba: [UInt8] = []
        for y in 0..<height {
            for x in 0..<width {
                rgb += [UInt8(x * 255 / width), UInt8(y * 255 / height), 128]
                rgba += [0, 0, 0, x < width / 2 ? 0 : 255]
            }
        }
        return (try Image8(width: width, height: height, channels: 3, pixels: rgb),
                try Image8(width: width, height: height, channels: 4, pixels: rgba))
    }

    func decodedImages(_ response: RawResponse) throws -> [Image8] {
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        let data = try XCTUnwrap(response.json["data"] as? [[String: Any]])
        return try data.map { item in
            let base64 = try XCTUnwrap(item["b64_json"] as? String)
            return try ImageDecoder.decode(Array(try XCTUnwrap(Data(base64Encoded: base64))))
        }
    }

    func testDescribesThePipeline() throws {
        let pipeline = try loadPipeline()
        let model = PipelineGenerator(pipeline: pipeline).model
        XCTAssertEqual(model.id, pipeline.modelID)
        XCTAssertTrue(model.answers(to: "flux-1-schnell") && model.answers(to: "black-forest-labs/FLUX.1-schnell"))
        XCTAssertEqual(model.defaultSteps, 4)
        XCTAssertFalse(model.supportsGuidance)
        XCTAssertNil(model.defaultGuidance)
        XCTAssertEqual(model.sizeMultiple, 16)
        XCTAssertEqual(model.limits, .pipeline)
        XCTAssertTrue(model.supportsEdits)
    }

    func testARequestMakesThePipelinesPixels() throws {
        let pipeline = try loadPipeline()
        let request = GenerationRequest(prompt: "a red kite", width: 32, height: 48, steps: 2, seed: 7, count: 2)
        let adapted = try PipelineGenerator(pipeline: pipeline).generate(request, progress: { _ in true }, preview: { _ in })
        let direct = try pipeline.generate(request)
        XCTAssertEqual(adapted.images.map(\.seed), [7, 8])
        XCTAssertEqual(adapted.images.map(\.rgb), direct.images.map(\.rgb))
        XCTAssertEqual(adapted.steps, 2)
    }

    func testProgressAndCancellationPassThrough() throws {
        let pipeline = try loadPipeline()
        let generator = PipelineGenerator(pipeline: pipeline)
        let request = GenerationRequest(prompt: "x", width: 32, height: 32, steps: 3, seed: 1, count: 2)
        func trace(_ generate: ((GenerationProgress) -> Bool) throws -> GenerationResult) throws -> [String] {
            var seen: [String] = []
            _ = try generate { progress in
                seen.append("\(progress.stage) \(progress.stepsDone)/\(progress.totalSteps)")
                return true
            }
            return seen
        }
        let adapted = try trace { try generator.generate(request, progress: $0, preview: { _ in }) }
        XCTAssertEqual(adapted, try trace { try pipeline.generate(request, progress: $0) })
        XCTAssertEqual(adapted.first, "textEncoding 0/6")
        XCTAssertEqual(adapted.last, "decoding 6/6")

        var reports = 0
        XCTAssertThrowsError(try generator.generate(request, progress: { progress in
            reports += 1
            return progress.stepsDone < 2
        }, preview: { _ in })) { error in XCTAssertEqual(error as? PipelineError, .cancelled) }
        XCTAssertEqual(reports, 4, "text encoding, steps 1 and 2, then the refused step 3")
    }

    func testTheServerAnswersWithThePipelinesPixels() throws {
        let pipeline = try loadPipeline()
        let test = try TestServer(generator: PipelineGenerator(pipeline: pipeline))
        let response = try test.client.postJSON("/v1/images/generations", [
            "model": "flux-1-schnell", "prompt": "a lighthouse", "size": "64x80", "steps": 2, "seed": 11, "n": 2,
        ])
        let served = try decodedImages(response)
        let direct = try pipeline.generate(GenerationRequest(prompt: "a lighthouse", width: 64, height: 80, steps: 2, seed: 11, count: 2))
        XCTAssertEqual(served.map(\.pixels), direct.images.map(\.rgb))
        XCTAssertEqual((response.json["data"] as? [[String: Any]])?.map { $0["seed"] as? Int }, [11, 12])
        let timings = try XCTUnwrap(response.json["timings"] as? [String: Double])
        XCTAssertNotNil(timings["text encoders"], "the pipeline's stages are reported: \(timings.keys.sorted())")
    }

    func testEditsReachThePipeline() throws {
        let pipeline = try loadPipeline()
        let test = try TestServer(generator: PipelineGenerator(pipeline: pipeline))
        let (image, mask) = try editImages(width: 64, height: 64)
        let body = multipart([("prompt", "a boat"), ("steps", "4"), ("strength", "0.5"), ("seed", "3")],
                             files: [("image", try ImageEncoder.encode(image, as: .png)), ("mask", try ImageEncoder.encode(mask, as: .png))])
        let served = try decodedImages(try postEdit(test.client, body))
        let request = GenerationRequest(prompt: "a boat", width: 64, height: 64, steps: 4, seed: 3,
                                        initImage: InputImage(width: 64, height: 64, channels: 3, pixels: image.pixels),
                                        mask: InputImage(width: 64, height: 64, channels: 4, pixels: mask.pixels), strength: 0.5)
        XCTAssertEqual(served.map(\.pixels), try pipeline.generate(request).images.map(\.rgb))
        var unmasked = request
        unmasked.mask = nil
        XCTAssertNotEqual(served.map(\.pixels), try pipeline.generate(unmasked).images.map(\.rgb), "the mask changes the picture")
    }

    func testSeedsWrapPastTheTopRatherThanRepeat() throws {
        let pipeline = try loadPipeline()
        let result = try pipeline.generate(GenerationRequest(prompt: "x", width: 16, height: 16, steps: 1, seed: UInt64.max - 1, count: 3))
        XCTAssertEqual(result.images.map(\.seed), [UInt64.max - 1, UInt64.max, 0])
    }

    func testWhatThePipelineRefusesIsA400BeforeQueueing() throws {
        let pipeline = try loadPipeline()
        let test = try TestServer(generator: PipelineGenerator(pipeline: pipeline))
        // diffusers' arithmetic leaves no step to run for a vanishing strength; only the pipeline knows.
        let image = try ImageEncoder.encode(try editImages(width: 64, height: 64).image, as: .png)
        let tiny = multipart([("prompt", "x"), ("strength", "1e-20"), ("async", "true")], files: [("image", image)])
        assertError(try postEdit(test.client, tiny), status: 400, code: "invalid_request", param: "strength")
        let noImage = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "strength": 0.5, "async": true])
        assertError(noImage, status: 400, code: "invalid_request", param: "strength")
        XCTAssertEqual(noImage.error["message"] as? String, "strength: applies only with an init image")
    }

    func testTheServerNarrowsThePipelinesLimitsAndReportsThem() throws {
        let pipeline = try loadPipeline()
        let test = try TestServer(generator: PipelineGenerator(pipeline: pipeline)) { options in
            options.limits.maxSteps = 3
            options.limits.maxImages = 2
        }
        let model = try test.client.get("/v1/models/flux-1-schnell").json
        let allowed = try XCTUnwrap(model["allowedParams"] as? [String: Any])
        XCTAssertEqual(allowed["steps"] as? [String: Int], ["default": 4, "min": 1, "max": 3])
        XCTAssertEqual(allowed["max_images"] as? Int, 2)
        XCTAssertEqual(allowed["max_side"] as? Int, 2048)
        XCTAssertEqual(allowed["min_side"] as? Int, 64)
        let steps = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "num_inference_steps": 4])
        assertError(steps, status: 400, code: "invalid_request", param: "num_inference_steps")
        XCTAssertEqual(steps.error["message"] as? String, "num_inference_steps: steps 4 is outside 1...3")
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "n": 3]),
                    status: 400, code: "invalid_request", param: "n")
        let size = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "4096x64"])
        assertError(size, status: 400, code: "invalid_request", param: "size")
        XCTAssertEqual(size.error["message"] as? String, "size: width 4096 is outside 64...2048")
        // The model's default 4 steps are clamped to the server's 3.
        let clamped = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64"])
        XCTAssertEqual(clamped.status, 200, String(decoding: clamped.body, as: UTF8.self))
        let base64 = try XCTUnwrap((clamped.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String)
        let png = try XCTUnwrap(Data(base64Encoded: base64))
        XCTAssertTrue(String(decoding: png, as: UTF8.self).contains("steps: 3"), "the PNG's parameters record the steps run")
    }
}
