import Foundation
import Schnell
import SchnellServer
import XCTest

/// `compression`, `moderation`, `size` with `aspect_ratio`, `guidance_scale: 0` on schnell,
/// unknown fields and the async response format.
final class FieldValidationTests: XCTestCase {
    private func jpegBytes(_ test: TestServer, _ extra: [String: Any]) throws -> Data {
        var body: [String: Any] = ["prompt": "x", "size": "64x64", "seed": 3, "output_format": "jpeg"]
        body.merge(extra) { $1 }
        let response = try test.client.postJSON("/v1/images/generations", body)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        return try XCTUnwrap(Data(base64Encoded: (response.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String ?? ""))
    }

    func testCompressionIsTheAliasOfOutputCompression() throws {
        let test = try TestServer()
        let alias = try jpegBytes(test, ["compression": 10])
        XCTAssertEqual(alias, try jpegBytes(test, ["output_compression": 10]), "the same file either way")
        XCTAssertLessThan(alias.count, try jpegBytes(test, [:]).count, "quality 10 is smaller than the default 100")
        for (extra, param) in [(["compression": 500], "compression"), (["compression": -1], "compression"),
                               (["compression": "high"], "compression"), (["output_compression": 101], "output_compression"),
                               (["compression": 50, "output_compression": 50], "compression")] as [([String: Any], String)] {
            var body: [String: Any] = ["prompt": "x", "size": "64x64"]
            body.merge(extra) { $1 }
            assertError(try test.client.postJSON("/v1/images/generations", body), status: 400, code: "invalid_request", param: param)
        }
    }

    func testModerationIsCheckedAndEchoed() throws {
        let test = try TestServer()
        let low = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "moderation": "low"])
        XCTAssertEqual(low.json["moderation"] as? String, "low")
        let plain = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64"])
        XCTAssertEqual(plain.json["moderation"] as? String, "auto")
        for value in ["high", "none", ""] as [Any] + [1] {
            assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "moderation": value]),
                        status: 400, code: "invalid_request", param: "moderation")
        }
    }

    func testSizeWithAspectRatioIsRefused() throws {
        let test = try TestServer()
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "256x128", "aspect_ratio": "1:1"]),
                    status: 400, code: "invalid_request", param: "aspect_ratio")
    }

    func testGuidanceZeroOnSchnellMeansNone() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "guidance_scale": 0]).status, 200)
        XCTAssertNil(try XCTUnwrap(generator.requests.last).guidance)
        let refused = try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "guidance_scale": 3.5])
        assertError(refused, status: 400, code: "invalid_request", param: "guidance_scale")
        XCTAssertTrue((refused.error["message"] as? String ?? "").contains("does not use guidance"), "\(refused.error)")
    }

    func testUnknownFieldsAreIgnored() throws {
        let test = try TestServer()
        let response = try test.client.postJSON("/v1/images/generations",
                                                ["prompt": "x", "size": "64x64", "input_fidelity": "high", "some_future_field": [1, 2]])
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
    }

    func testAsyncTasksAnswerWithURLsUnlessAskedForBase64() throws {
        let test = try TestServer()
        for (extra, key) in [([:], "url"), (["response_format": "b64_json"], "b64_json")] as [([String: Any], String)] {
            var body: [String: Any] = ["prompt": "x", "size": "64x64", "async": true]
            body.merge(extra) { $1 }
            let created = try test.client.postJSON("/v1/images/generations", body)
            XCTAssertEqual(created.status, 202)
            let pollURL = try XCTUnwrap(created.json["poll_url"] as? String)
            var task: [String: Any] = [:]
            for _ in 0..<250 where task["status"] as? String != "completed" {
                Thread.sleep(forTimeInterval: 0.02)
                task = try test.client.get(pollURL).json
            }
            let item = try XCTUnwrap((task["data"] as? [[String: Any]])?.first)
            XCTAssertNotNil(item[key] as? String, "\(extra): \(item.keys)")
        }
    }
}
