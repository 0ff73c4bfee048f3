import Foundation
import SchnellServer
import XCTest

/// The playground page as the server serves it: its files and their headers, no key to load it,
/// and the origin rule that lets it call the API (the page itself is tested in headless Chromium
/// by Tests/server/playground_test.py).
final class PlaygroundTests: XCTestCase {
    func testPageFilesAreServedWithoutAKeyAndWithAStrictPolicy() throws {
        let test = try TestServer { $0.apiKeys = ["sk-test"] }
        for path in ["/", "/playground", "/playground/", "/playground/index.html"] {
            let page = try test.client.get(path)
            XCTAssertEqual(page.status, 200, path)
            XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8", path)
            XCTAssertTrue(String(decoding: page.body, as: UTF8.self).contains(#"<script src="/playground/playground.js""#), path)
        }
        let script = try test.client.get("/playground/playground.js")
        XCTAssertEqual(script.status, 200)
        XCTAssertEqual(script.headers["content-type"], "text/javascript; charset=utf-8")
        XCTAssertEqual(script.headers["cache-control"], "no-cache")
        XCTAssertEqual(script.headers["x-content-type-options"], "nosniff")
        let policy = try XCTUnwrap(script.headers["content-security-policy"])
        XCTAssertTrue(policy.hasPrefix("default-src 'self';"), policy)
        XCTAssertTrue(policy.contains("img-src 'self' data: blob:"), policy)
        XCTAssertFalse(policy.contains("unsafe"), policy)
        XCTAssertEqual(try test.client.get("/playground/playground.css").headers["content-type"], "text/css; charset=utf-8")

        assertError(try test.client.get("/playground/missing.js"), status: 404, code: "not_found")
        XCTAssertNotEqual(try test.client.get("/playground/..%2FPackage.swift").status, 200)
        // The page is open; the API it calls is not.
        assertError(try test.client.get("/v1/models"), status: 401, code: "invalid_api_key")
    }

    func testThePageMayCallTheAPIFromItsOwnOriginOnly() throws {
        let test = try TestServer { $0.publicURL = "https://images.example.com:443/schnell" }
        let port = test.server.boundPort
        // Browsers send Origin on the page's POSTs even to its own origin; the scheme's default port is left out.
        for origin in ["http://127.0.0.1:\(port)", "http://localhost:\(port)", "https://images.example.com"] {
            XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "a fox"], headers: ["Origin": origin]).status,
                           200, origin)
        }
        // Another port, or a name that resolves here only by DNS rebinding, is another origin.
        for origin in ["http://127.0.0.1:\(port == 65535 ? port - 1 : port + 1)", "http://evil.example:\(port)"] {
            assertError(try test.client.postJSON("/v1/images/generations", ["prompt": "a fox"], headers: ["Origin": origin]),
                        status: 403, code: "origin_not_allowed")
        }
    }
}
