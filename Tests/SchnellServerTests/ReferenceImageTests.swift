import Foundation
import Schnell
import SchnellImageIO
@testable import SchnellServer
import XCTest

/// Starting images wherever the OpenAI API and the gateways put them: JSON `image_url`,
/// `image_urls`, `images[]`, `image` and `mask` as data URLs or base64, multipart `image` on
/// /generations, and http(s) URLs from allowed hosts only.
final class ReferenceImageTests: XCTestCase {
    private func png(width: Int, height: Int, channels: Int = 3, value: UInt8 = 120) throws -> [UInt8] {
        let image = try Image8(width: width, height: height, channels: channels,
                               pixels: [UInt8](repeating: value, count: width * height * channels))
        return try ImageEncoder.encode(image, as: .png)
    }

    private func dataURL(_ bytes: [UInt8], type: String = "image/png") -> String {
        "data:\(type);base64,\(Data(bytes).base64EncodedString())"
    }

    func testGenerationsTakeADataURLInEveryJSONField() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let picture = dataURL(try png(width: 96, height: 80, value: 33))
        let forms: [[String: Any]] = [
            ["image_url": picture],
            ["image_url": ["url": picture]],
            ["image_urls": [picture], "operation": "image-to-image"],
            ["images": [["image_url": picture]]],
            ["image": picture],
            ["image": Data(try png(width: 96, height: 80, value: 33)).base64EncodedString()],
        ]
        for form in forms {
            var body: [String: Any] = ["prompt": "a fox", "strength": 0.5]
            body.merge(form) { $1 }
            let response = try test.client.postJSON("/v1/images/generations", body)
            XCTAssertEqual(response.status, 200, "\(form.keys): \(String(decoding: response.body, as: UTF8.self))")
            XCTAssertEqual(response.json["size"] as? String, "96x80", "without size the picture's size is kept")
            let request = try XCTUnwrap(generator.requests.last)
            XCTAssertEqual(request.initImage?.width, 96)
            XCTAssertEqual(request.initImage?.pixels.allSatisfy { $0 == 33 }, true, "\(form.keys): the picture reaches the model")
            XCTAssertEqual(request.strength, 0.5)
            let usage = try XCTUnwrap(response.json["usage"] as? [String: Any])
            XCTAssertEqual((usage["input_tokens_details"] as? [String: Any])?["image_tokens"] as? Int, 30, "96x80: 6 x 5 tokens")
        }
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "a fox", "size": "64x64"]).status, 200)
        XCTAssertNil(generator.requests.last?.initImage, "no picture: text to image")
    }

    func testMultipartImageOnGenerations() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let body = multipart([("prompt", "x"), ("size", "64x64")], files: [("image", try png(width: 70, height: 70, value: 9))])
        let response = try test.client.request("POST", "/v1/images/generations",
                                               headers: ["Content-Type": "multipart/form-data; boundary=XyZ-boundary"], body: body)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual(generator.requests.last?.initImage?.pixels.first, 9)
        XCTAssertEqual(generator.requests.last.map { [$0.width, $0.height] }, [64, 64])
    }

    func testJSONEditsWithImageAndMask() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let body: [String: Any] = ["prompt": "a boat", "images": [["image_url": dataURL(try png(width: 64, height: 64))]],
                                   "mask": ["image_url": dataURL(try png(width: 64, height: 64, channels: 4, value: 0))]]
        let response = try test.client.postJSON("/v1/images/edits", body)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual(generator.requests.last?.initImage?.pixels.first, 120)
        XCTAssertEqual(generator.requests.last?.mask?.channels, 4)
        assertError(try test.client.postJSON("/v1/images/edits", ["prompt": "a boat", "mask": dataURL(try png(width: 64, height: 64, channels: 4))]),
                    status: 400, code: "invalid_request", param: "image")
    }

    func testBadReferencesAreRefusedNamingTheField() throws {
        let test = try TestServer()
        let picture = dataURL(try png(width: 64, height: 64))
        let cases: [([String: Any], String)] = [
            (["image_urls": [picture, picture]], "image_urls"),
            (["image_url": picture, "image_urls": [picture]], "image_urls"),
            (["image": picture, "image_url": picture], "image_url"),
            (["images": [["file_id": "file-123"]]], "images"),
            (["images": "not a list"], "images"),
            (["image_urls": [7]], "image_urls"),
            (["image_url": 7], "image_url"),
            (["reference_image_urls": [picture]], "reference_image_urls"),
            (["image_url": "data:text/plain;base64,aGVsbG8="], "image_url"),
            (["image_url": "data:image/png,rawbytes"], "image_url"),
            (["image_url": "data:image/png;base64,"], "image_url"),
            (["image_url": "%%% not base64 %%%"], "image_url"),
            (["image_url": dataURL(Array("not an image".utf8))], "image_url"),
            (["image_url": "https://images.example.com/cat.png"], "image_url"),
            (["operation": "image-to-image"], "operation"),
            (["operation": "text-to-image", "image_url": picture], "operation"),
            (["operation": "outpaint"], "operation"),
            (["mask": picture], "mask"),
        ]
        for (extra, param) in cases {
            var body: [String: Any] = ["prompt": "x"]
            body.merge(extra) { $1 }
            let response = try test.client.postJSON("/v1/images/generations", body)
            assertError(response, status: 400, code: "invalid_request", param: param)
        }
        let remote = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "image_url": "https://images.example.com/cat.png"])
        XCTAssertTrue((remote.error["message"] as? String ?? "").contains("--fetch-images-from"), "\(remote.error)")
    }

    func testURLsAreFetchedFromAllowedHostsWithinLimits() throws {
        // The first server holds a picture at a URL; the second fetches it.
        let origin = try TestServer()
        let stored = try origin.server.store.storeImage(try png(width: 64, height: 64, value: 77), fileExtension: "png")
        let link = "http://127.0.0.1:\(origin.server.boundPort)/v1/images/files/\(stored)"

        let generator = FakeGenerator()
        let fetching = try TestServer(generator: generator) { options in options.fetchHosts = ["127.0.0.1"] }
        let fetched = try fetching.client.postJSON("/v1/images/generations", ["prompt": "x", "image_url": link])
        XCTAssertEqual(fetched.status, 200, String(decoding: fetched.body, as: UTF8.self))
        XCTAssertEqual(generator.requests.last?.initImage?.pixels.first, 77)
        // Image and mask fetched in one request: each gets its own bytes.
        let maskName = try origin.server.store.storeImage(try png(width: 64, height: 64, channels: 4, value: 5), fileExtension: "png")
        let both = try fetching.client.postJSON("/v1/images/edits", ["prompt": "x", "image": link,
                                                                     "mask": "http://127.0.0.1:\(origin.server.boundPort)/v1/images/files/\(maskName)"])
        XCTAssertEqual(both.status, 200, String(decoding: both.body, as: UTF8.self))
        XCTAssertEqual(generator.requests.last?.initImage?.pixels.first, 77)
        XCTAssertEqual(generator.requests.last?.mask?.pixels.first, 5)

        let missing = try fetching.client.postJSON("/v1/images/generations",
                                                   ["prompt": "x", "image_url": "http://127.0.0.1:\(origin.server.boundPort)/v1/images/files/00000000000000000000000000000000.png"])
        assertError(missing, status: 400, code: "invalid_request", param: "image_url")
        XCTAssertTrue((missing.error["message"] as? String ?? "").contains("HTTP 404"), "\(missing.error)")

        let elsewhere = try fetching.client.postJSON("/v1/images/generations",
                                                     ["prompt": "x", "image_url": "http://localhost:\(origin.server.boundPort)/v1/images/files/\(stored)"])
        assertError(elsewhere, status: 400, code: "invalid_request", param: "image_url")
        XCTAssertTrue((elsewhere.error["message"] as? String ?? "").contains("allowed: 127.0.0.1"), "\(elsewhere.error)")

        let small = try TestServer { options in
            options.fetchHosts = ["127.0.0.1"]
            options.fetchMaxBytes = 1024
        }
        let big = try origin.server.store.storeImage(try png(width: 512, height: 512, channels: 3, value: 1) + [UInt8](repeating: 0, count: 4096),
                                                     fileExtension: "png")
        let tooBig = try small.client.postJSON("/v1/images/generations",
                                               ["prompt": "x", "image_url": "http://127.0.0.1:\(origin.server.boundPort)/v1/images/files/\(big)"])
        assertError(tooBig, status: 400, code: "invalid_request", param: "image_url")
        XCTAssertTrue((tooBig.error["message"] as? String ?? "").contains("--fetch-max-bytes"), "\(tooBig.error)")
    }

    func testFetchFlagsAreParsed() throws {
        let (options, rest) = try ServerOptions.parse(["--fetch-images-from", "Images.Example.com", "--fetch-max-bytes", "2048",
                                                       "--fetch-timeout=3", "--other"])
        XCTAssertEqual(options.fetchHosts, ["images.example.com"])
        XCTAssertEqual(options.fetchMaxBytes, 2048)
        XCTAssertEqual(options.fetchTimeoutSeconds, 3)
        XCTAssertEqual(rest, ["--other"])
        for bad in [["--fetch-images-from", "https://x.com/a"], ["--fetch-images-from", ""], ["--fetch-max-bytes", "10"],
                    ["--fetch-timeout", "0"]] {
            XCTAssertThrowsError(try ServerOptions.parse(bad), "\(bad)")
        }
    }
}
