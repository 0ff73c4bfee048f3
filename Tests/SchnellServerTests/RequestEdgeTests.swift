import Foundation
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
}
