import Foundation
import Schnell
import SchnellImageIO
import SchnellServer
import XCTest

final class GenerationTests: XCTestCase {
    func testB64GenerationHasOpenAIShapeAndSeeds() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let response = try test.client.postJSON("/v1/images/generations", [
            "model": "flux-1-schnell", "prompt": "a watercolor fox", "n": 2, "size": "128x64", "seed": 42,
            "user": "u1", "style": "vivid", "something_new": ["ignored": true],
        ])
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual(response.headers["content-type"], "application/json")
        let json = response.json
        XCTAssertNotNil(json["created"] as? Int)
        XCTAssertEqual(json["size"] as? String, "128x64")
        XCTAssertEqual(json["output_format"] as? String, "png")
        XCTAssertEqual(json["quality"] as? String, "auto")
        let usage = try XCTUnwrap(json["usage"] as? [String: Any])
        XCTAssertEqual(usage["output_tokens"] as? Int, 2 * 8 * 4)
        let timings = try XCTUnwrap(json["timings"] as? [String: Double])
        XCTAssertEqual(timings["denoise"], 0.01)
        XCTAssertNotNil(timings["total"])
        let data = try XCTUnwrap(json["data"] as? [[String: Any]])
        XCTAssertEqual(data.count, 2)
        XCTAssertEqual(data.map { $0["seed"] as? Int }, [42, 43])
        for item in data {
            XCTAssertTrue(item.keys.contains("revised_prompt"))
            XCTAssertTrue(item["revised_prompt"] is NSNull)
            XCTAssertNil(item["url"])
            let bytes = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(item["b64_json"] as? String)))
            XCTAssertEqual(Array(bytes.prefix(8)), pngSignature)
            let decoded = try ImageDecoder.decode(Array(bytes))
            XCTAssertEqual([decoded.width, decoded.height, decoded.channels], [128, 64, 3])
            let seed = UInt64(try XCTUnwrap(item["seed"] as? Int))
            XCTAssertEqual(decoded.pixels[0..<4].map { $0 }, (0..<4).map { UInt8(truncatingIfNeeded: UInt64($0) &+ seed) },
                           "PNG is lossless: the model's pixels come back exactly")
            XCTAssertTrue(String(decoding: bytes, as: UTF8.self).contains("seed: \(seed), steps: 4, size: 128x64"),
                          "generation parameters are in the PNG's text chunks")
        }
        let request = try XCTUnwrap(generator.requests.first)
        XCTAssertEqual(generator.requests.count, 1, "n > 1 is one request")
        XCTAssertEqual([request.width, request.height, request.count, request.steps], [128, 64, 2, 4])
        XCTAssertEqual(request.seed, 42)
        XCTAssertEqual(request.prompt, "a watercolor fox")
        XCTAssertNil(request.guidance)
    }

    func testDefaultsSizesQualityAndRandomSeed() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let plain = try test.client.postJSON("/v1/images/generations", ["prompt": "a fox"])
        XCTAssertEqual(plain.status, 200)
        XCTAssertEqual(plain.json["size"] as? String, "64x64")
        XCTAssertNotNil((plain.json["data"] as? [[String: Any]])?.first?["seed"] as? Int, "a random seed is reported")
        let cases: [([String: Any], [Int])] = [
            (["size": "auto"], [64, 64, 4]),
            (["aspect_ratio": "16:9"], [1360, 768, 4]),
            (["aspect_ratio": "9:16", "resolution": "1k"], [768, 1360, 4]),
            (["aspect_ratio": "1:1", "resolution": "2k"], [2048, 2048, 4]),
            (["aspect_ratio": "16:9", "resolution": "2k"], [2048, 1136, 4]),
            (["size": "auto", "aspect_ratio": "1:1"], [1024, 1024, 4]),
            (["quality": "low"], [64, 64, 2]), (["quality": "hd"], [64, 64, 8]), (["quality": "medium"], [64, 64, 4]),
            (["quality": "high", "steps": 3], [64, 64, 3]), (["num_inference_steps": 1], [64, 64, 1]),
        ]
        for (extra, expected) in cases {
            var body: [String: Any] = ["prompt": "a fox", "seed": 7]
            body.merge(extra) { $1 }
            let response = try test.client.postJSON("/v1/images/generations", body)
            XCTAssertEqual(response.status, 200, "\(extra): \(String(decoding: response.body, as: UTF8.self))")
            let request = try XCTUnwrap(generator.requests.last)
            XCTAssertEqual([request.width, request.height, request.steps], expected, "\(extra)")
        }
    }

    func testJPEGAndWebPOutput() throws {
        let test = try TestServer()
        let jpeg = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "output_format": "jpeg", "output_compression": 80])
        XCTAssertEqual(jpeg.status, 200)
        XCTAssertEqual(jpeg.json["output_format"] as? String, "jpeg")
        let bytes = Data(base64Encoded: (jpeg.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String ?? "") ?? Data()
        XCTAssertEqual(Array(bytes.prefix(3)), [0xFF, 0xD8, 0xFF])
        let webp = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "output_format": "webp"])
        let webpBytes = Data(base64Encoded: (webp.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String ?? "") ?? Data()
        XCTAssertEqual(Array(webpBytes.prefix(4)), Array("RIFF".utf8))
    }

    func testValidationErrorsNameTheParameter() throws {
        let test = try TestServer()
        let long = String(repeating: "a", count: 32_001)
        let cases: [([String: Any], String)] = [
            ([:], "prompt"), (["prompt": ""], "prompt"), (["prompt": "  \n"], "prompt"), (["prompt": 5], "prompt"),
            (["prompt": long], "prompt"), (["prompt": ["a"]], "prompt"),
            (["n": 0], "n"), (["n": 11], "n"), (["n": "2"], "n"), (["n": 1.5], "n"), (["n": true], "n"),
            (["size": "big"], "size"), (["size": "large"], "size"), (["size": "1024 x 1024"], "size"), (["size": 1024], "size"),
            (["size": "1024X1024"], "size"), (["size": "1000x1000"], "size"), (["size": "4096x4096"], "size"),
            (["size": "32x32"], "size"), (["size": "00000000000001024x1024"], "size"), (["size": "x1024"], "size"),
            (["size": "-1024x1024"], "size"), (["size": ["w": 1]], "size"),
            (["aspect_ratio": "wide"], "aspect_ratio"), (["aspect_ratio": "10:1"], "aspect_ratio"),
            (["aspect_ratio": "16:9", "resolution": "4k"], "resolution"), (["resolution": "1k"], "resolution"),
            (["response_format": "png"], "response_format"), (["response_format": 1], "response_format"),
            (["output_format": "gif"], "output_format"), (["output_compression": 101], "output_compression"),
            (["output_compression": -1], "output_compression"),
            (["quality": "ultra"], "quality"), (["background": "transparent"], "background"), (["background": "pink"], "background"),
            (["steps": 0], "steps"), (["steps": 9], "steps"), (["steps": "4"], "steps"), (["num_inference_steps": 100], "num_inference_steps"),
            (["guidance_scale": 3.5], "guidance_scale"), (["guidance_scale": "3"], "guidance_scale"),
            (["seed": -1], "seed"), (["seed": "42"], "seed"), (["seed": 1.5], "seed"),
            (["async": "yes"], "async"), (["user": 5], "user"), (["style": false], "style"), (["model": 3], "model"),
        ]
        for (fields, param) in cases {
            var body: [String: Any] = ["prompt": "a fox"]
            if fields.isEmpty { body = [:] }
            body.merge(fields) { $1 }
            assertError(try test.client.postJSON("/v1/images/generations", body), status: 400, code: "invalid_request", param: param)
            XCTAssertEqual(try test.client.postJSON("/v1/images/generations", body).error["type"] as? String, "invalid_request_error")
        }
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "a", "model": "dall-e-3"]),
                    status: 404, code: "model_not_found", param: "model")
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "a", "background": "opaque"]).status, 200)
    }

    func testGuidanceIsPassedToModelsThatUseIt() throws {
        var dev = FakeGenerator.schnell
        dev.id = "flux.1-dev"
        dev.supportsGuidance = true
        dev.defaultGuidance = 3.5
        let generator = FakeGenerator(model: dev)
        let test = try TestServer(generator: generator)
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "a"]).status, 200)
        XCTAssertEqual(generator.requests.last?.guidance, 3.5)
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "a", "guidance_scale": 5]).status, 200)
        XCTAssertEqual(generator.requests.last?.guidance, 5)
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "a", "guidance_scale": 500]),
                    status: 400, code: "invalid_request", param: "guidance_scale")
    }

    func testGeneratorFailuresAreServerErrors() throws {
        struct Broken: ImageGenerating {
            let model = FakeGenerator.schnell
            let images: Bool
            func validate(_ request: GenerationRequest) throws {}

            func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult {
                if images { return GenerationResult(images: [], steps: 4, guidance: nil, timings: []) }
                throw CocoaError(.fileReadCorruptFile)
            }
        }
        let failing = try TestServer(generator: Broken(images: false))
        assertError(try failing.client.postJSON("/v1/images/generations", ["prompt": "a"]), status: 500, code: "server_error")
        let empty = try TestServer(generator: Broken(images: true))
        assertError(try empty.client.postJSON("/v1/images/generations", ["prompt": "a"]), status: 500, code: "no_image_generated")
        XCTAssertEqual(try empty.client.get("/health").status, 200)
    }

    /// A model that accepts every request up front and then refuses it as the client's fault.
    struct RejectingGenerator: ImageGenerating {
        let model = FakeGenerator.schnell

        func validate(_ request: GenerationRequest) throws {}

        func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult {
            throw PipelineError.invalidRequest(parameter: "strength", reason: "too small for any step to run")
        }
    }

    func testAModelsRejectionIsA400NamingTheParameter() throws {
        let test = try TestServer(generator: RejectingGenerator())
        let response = try test.client.postJSON("/v1/images/generations", ["prompt": "a fox", "size": "64x64"])
        XCTAssertEqual(response.status, 400, String(decoding: response.body, as: UTF8.self))
        let error = try XCTUnwrap(response.json["error"] as? [String: Any])
        XCTAssertEqual(error["code"] as? String, "invalid_request")
        XCTAssertEqual(error["param"] as? String, "strength")
        XCTAssertEqual(error["message"] as? String, "strength: too small for any step to run")
        XCTAssertEqual(try test.client.get("/health").status, 200, "the server keeps serving")
    }
}
