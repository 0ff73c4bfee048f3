import Foundation
@testable import SchnellServer
import XCTest

/// `MultipartForm` splits bodies at the exact delimiter, however much of it a part's bytes repeat.
final class MultipartTests: XCTestCase {
    func testPartsHoldingPiecesOfTheDelimiterAreKeptWhole() throws {
        // Every prefix of "\r\n--B" inside the file, and a boundary-like line without the leading CRLF.
        let tricky = Array("\r\r\n\r\n-\r\n--\r\n--C--B\r\n-B".utf8) + [0, 255, 13, 10]
        let body = Array("--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsky\r\n".utf8)
            + Array("--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n".utf8) + tricky
            + Array("\r\n--B--\r\n".utf8)
        let form = try MultipartForm(body: body, boundary: "B")
        XCTAssertEqual(form.parts.map(\.name), ["prompt", "image"])
        XCTAssertEqual(form.parts[0].body, Array("sky".utf8))
        XCTAssertEqual(form.parts[1].body, tricky)
        XCTAssertEqual(form.parts[1].filename, "a.png")
    }

    func testBodiesWithoutAClosingDelimiterAreRefused() {
        let open = Array("--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsky".utf8)
        XCTAssertThrowsError(try MultipartForm(body: open, boundary: "B"))
        XCTAssertThrowsError(try MultipartForm(body: Array("no delimiter".utf8), boundary: "B"))
        XCTAssertThrowsError(try MultipartForm(body: [], boundary: "B"))
    }
}
