import Foundation
import SchnellImageIO
import SchnellServer
import XCTest

final class EditTests: XCTestCase {
    private func png(width: Int, height: Int, channels: Int) throws -> [UInt8] {
        let image = try Image8(width: width, height: height, channels: channels,
                               pixels: [UInt8](repeating: 200, count: width * height * channels))
        return try ImageEncoder.encode(image, as: .png)
    }

    func testEditPassesImageAndMaskToTheModel() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let body = multipart([("prompt", "a starry sky"), ("n", "2"), ("strength", "0.7"), ("seed", "9"), ("model", "flux-1-schnell")],
                             files: [("image", try png(width: 96, height: 64, channels: 3)), ("mask", try png(width: 96, height: 64, channels: 4))])
        let response = try postEdit(test.client, body)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual((response.json["data"] as? [[String: Any]])?.map { $0["seed"] as? Int }, [9, 10])
        XCTAssertEqual(response.json["size"] as? String, "96x64", "without size the upload's size is kept")
        let request = try XCTUnwrap(generator.requests.last)
        XCTAssertEqual(request.prompt, "a starry sky")
        XCTAssertEqual(request.count, 2)
        XCTAssertEqual(request.strength, 0.7)
        XCTAssertEqual(request.initImage?.width, 96)
        XCTAssertEqual(request.initImage?.pixels.allSatisfy { $0 == 200 }, true, "the upload's pixels reach the model")
        XCTAssertEqual(request.mask?.channels, 4)

        let sized = multipart([("prompt", "x"), ("size", "64x64")], files: [("image[]", try png(width: 100, height: 70, channels: 3))])
        XCTAssertEqual(try postEdit(test.client, sized).status, 200)
        XCTAssertEqual(generator.requests.last.map { [$0.width, $0.height] }, [64, 64])
        XCTAssertNil(generator.requests.last?.mask)
    }

    func testEditErrors() throws {
        let test = try TestServer()
        let image = try png(width: 64, height: 64, channels: 3)
        let mismatched = multipart([("prompt", "x")], files: [("image", image), ("mask", try png(width: 32, height: 64, channels: 4))])
        assertError(try postEdit(test.client, mismatched), status: 400, code: "invalid_request", param: "mask")
        let opaqueMask = multipart([("prompt", "x")], files: [("image", image), ("mask", try png(width: 64, height: 64, channels: 3))])
        assertError(try postEdit(test.client, opaqueMask), status: 400, code: "invalid_request", param: "mask")
        assertError(try postEdit(test.client, multipart([("prompt", "x")], files: [])), status: 400, code: "invalid_request", param: "image")
        assertError(try postEdit(test.client, multipart([], files: [("image", image)])), status: 400, code: "invalid_request", param: "prompt")
        assertError(try postEdit(test.client, multipart([("prompt", "x")], files: [("image", Array("not an image".utf8))])),
                    status: 400, code: "invalid_request", param: "image")
        assertError(try postEdit(test.client, multipart([("prompt", "x"), ("n", "two")], files: [("image", image)])),
                    status: 400, code: "invalid_request", param: "n")
        assertError(try postEdit(test.client, Array("--XyZ-boundary\r\nno headers end".utf8)), status: 400, code: "invalid_request")
        assertError(try test.client.request("POST", "/v1/images/edits", headers: ["Content-Type": "multipart/form-data"], body: [1]),
                    status: 400, code: "invalid_request")
        assertError(try test.client.postJSON("/v1/images/edits", ["prompt": "x"]), status: 400, code: "invalid_request", param: "image")
        assertError(try test.client.request("POST", "/v1/images/edits", headers: ["Content-Type": "text/plain"], body: Array("x".utf8)),
                    status: 415, code: "unsupported_media_type")
    }

    func testEditsOnAModelWithoutEditsAreNotImplemented() throws {
        var model = FakeGenerator.schnell
        model.supportsEdits = false
        let test = try TestServer(generator: FakeGenerator(model: model))
        let body = multipart([("prompt", "x")], files: [("image", try png(width: 64, height: 64, channels: 3))])
        assertError(try postEdit(test.client, body), status: 501, code: "not_implemented")
    }
}
