import Foundation
import SchnellImageIO
import SchnellServer
import XCTest

/// The smaller request cases of issue 15: what a client sends is refused up front with the field
/// named, and what the server reports is exact.
final class RequestEdgeTests: XCTestCase {
    func testHeadOnAnImageReportsItsLength() throws {
        let test = try TestServer()
        let response = try test.client.postJSON("/v1/images/generations", ["prompt": "a", "response_format": "url"])
        let url = try XCTUnwrap((response.json["data"] as? [[String: Any]])?.first?["url"] as? String)
        let path = try XCTUnwrap(URLComponents(string: url)?.path)
        let body = try test.client.get(path).body
        XCTAssertGreaterThan(body.count, 100)
        let head = try test.client.request("HEAD", path)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-length"], String(body.count))
        XCTAssertTrue(head.body.isEmpty)
    }

    private func post(_ test: TestServer, _ json: String) throws -> RawResponse {
        try test.client.request("POST", "/v1/images/generations", headers: ["Content-Type": "application/json"], body: Array(json.utf8))
    }

    func testNULInThePromptIsRefusedBeforeGenerating() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let response = try post(test, #"{"prompt": "a cat\u0000 on a mat"}"#)
        assertError(response, status: 400, code: "invalid_request", param: "prompt")
        XCTAssertTrue((response.error["message"] as? String)?.contains("NUL") == true)
        let form = try postEdit(test.client, multipart([("prompt", "a\0b")], files: [("image", pngOfSize(64))]))
        assertError(form, status: 400, code: "invalid_request", param: "prompt")
        XCTAssertTrue(generator.requests.isEmpty, "nothing was generated")
    }

    func testPromptLengthCountsScalarsNotGraphemes() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        // One grapheme: "e" and 16 MB of combining acute accents (U+0301, 2 bytes each).
        let grapheme = "e" + String(repeating: "\u{301}", count: 8_000_000)
        XCTAssertEqual(grapheme.unicodeScalars.count, 8_000_001)
        let body = try JSONSerialization.data(withJSONObject: ["prompt": grapheme])
        let started = Date()
        let response = try test.client.request("POST", "/v1/images/generations", headers: ["Content-Type": "application/json"],
                                               body: Array(body))
        assertError(response, status: 400, code: "invalid_request", param: "prompt")
        // Sending and parsing 16 MB on a loaded debug build; the grapheme walk took 20 s.
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": String(repeating: "\u{301}", count: 32_000)]).status, 200,
                       "32,000 scalars are allowed")
        assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "a" + String(repeating: "\u{301}", count: 32_000)]),
                    status: 400, code: "invalid_request", param: "prompt")
        XCTAssertEqual(generator.requests.count, 1)
    }

    func testDuplicateKeysAreRefusedNamingTheKey() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let duplicated = try post(test, #"{"prompt": "a", "n": 1, "n": 2}"#)
        assertError(duplicated, status: 400, code: "invalid_request", param: "n")
        // Keys compare after unescaping: "\u0070rompt" is "prompt".
        assertError(try post(test, #"{"prompt": "a", "\u0070rompt": "b"}"#), status: 400, code: "invalid_request", param: "prompt")
        let form = multipart([("prompt", "a"), ("prompt", "b")], files: [("image", try pngOfSize(64))])
        assertError(try postEdit(test.client, form), status: 400, code: "invalid_request", param: "prompt")
        XCTAssertTrue(generator.requests.isEmpty)
        XCTAssertEqual(try post(test, #"{"prompt": "a", "extra": {"n": 1}, "n": 1}"#).status, 200, "the same key in another object is fine")
    }

    func testSeedsNearTheTopAreRefusedRatherThanReportedTwice() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        let top = Int64.max
        let response = try post(test, #"{"prompt": "a", "n": 3, "seed": \#(top - 1)}"#)
        assertError(response, status: 400, code: "invalid_request", param: "seed")
        XCTAssertTrue((response.error["message"] as? String)?.contains("at most \(top - 2)") == true, "\(response.error)")
        let highest = try post(test, #"{"prompt": "a", "n": 3, "seed": \#(top - 2)}"#)
        XCTAssertEqual(highest.status, 200)
        let seeds = (highest.json["data"] as? [[String: Any]])?.compactMap { ($0["seed"] as? NSNumber)?.int64Value }
        XCTAssertEqual(seeds, [top - 2, top - 1, top])
        XCTAssertEqual(try post(test, #"{"prompt": "a", "seed": \#(top)}"#).status, 200, "one image may use the top seed")
    }

    private func pngOfSize(_ side: Int) throws -> [UInt8] {
        try ImageEncoder.encode(try Image8(width: side, height: side, channels: 3, pixels: [UInt8](repeating: 9, count: side * side * 3)), as: .png)
    }
}
