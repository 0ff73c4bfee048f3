import Foundation
import SchnellImageIO
import SchnellServer
import XCTest

/// Edit uploads are measured from their headers, refused over the pixel budget (4 x max side squared,
/// image and mask together) before anything else, and decoded only once the queue has admitted them.
final class UploadTests: XCTestCase {
    private func encoded(_ format: ImageFormat, width: Int, height: Int, channels: Int, quality: Int = 80) throws -> [UInt8] {
        let pixels = (0..<(width * height * channels)).map { UInt8(truncatingIfNeeded: $0) }
        return try ImageEncoder.encode(try Image8(width: width, height: height, channels: channels, pixels: pixels), as: format, quality: quality)
    }

    /// A PNG whose IHDR declares `width` x `height` and whose pixel data is missing.
    private func declaredPNG(width: Int, height: Int) throws -> [UInt8] {
        var bytes = try encoded(.png, width: 1, height: 1, channels: 3)
        for (offset, side) in [(16, width), (20, height)] {
            bytes.replaceSubrange(offset..<(offset + 4), with: [UInt8(side >> 24), UInt8(side >> 16 & 255), UInt8(side >> 8 & 255), UInt8(side & 255)])
        }
        return bytes
    }

    /// Small files of each format whose headers declare 16384x16384 (16383 for lossy WebP).
    private func bombs() throws -> [(String, [UInt8])] {
        var jpeg = try encoded(.jpeg, width: 32, height: 32, channels: 3)
        let sof = try XCTUnwrap(jpeg.indices.first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg.replaceSubrange((sof + 5)..<(sof + 9), with: [0x40, 0x00, 0x40, 0x00])
        var lossy = try encoded(.webp, width: 32, height: 32, channels: 3)
        XCTAssertEqual(Array(lossy[12..<16]), Array("VP8 ".utf8))
        lossy.replaceSubrange(26..<30, with: [0xFF, 0x3F, 0xFF, 0x3F])
        var lossless = try encoded(.webp, width: 32, height: 32, channels: 3, quality: 100)
        XCTAssertEqual(Array(lossless[12..<16]), Array("VP8L".utf8))
        let bits = UInt32(16383) | UInt32(16383) << 14
        lossless.replaceSubrange(21..<25, with: [UInt8(bits & 255), UInt8(bits >> 8 & 255), UInt8(bits >> 16 & 255), UInt8(bits >> 24)])
        return [("png", try declaredPNG(width: 16384, height: 16384)), ("jpeg", jpeg), ("webp lossy", lossy), ("webp lossless", lossless)]
    }

    func testBombsAreRefusedFromTheirHeadersAtOnce() throws {
        let generator = FakeGenerator()
        let test = try TestServer(generator: generator)
        for (name, bomb) in try bombs() {
            for files in [[("image", bomb)], [("image", try encoded(.png, width: 64, height: 64, channels: 3)), ("mask", bomb)]] {
                let started = Date()
                let response = try postEdit(test.client, multipart([("prompt", "x")], files: files))
                let seconds = Date().timeIntervalSince(started)
                assertError(response, status: 400, code: "invalid_request", param: files.count == 1 ? "image" : "mask")
                // Decoding 16384^2 takes seconds and 1 GiB; the header is a few bytes (issue 15 asks for under 100 ms).
                XCTAssertLessThan(seconds, 0.1, "\(name) as \(files.last!.0)")
            }
        }
        XCTAssertTrue(generator.requests.isEmpty)
    }

    func testImageAndMaskShareOnePixelBudget() throws {
        let generator = FakeGenerator()
        // Budget 4 x 256^2 = 262,144 pixels.
        let test = try TestServer(generator: generator) { $0.limits.maxSide = 256 }
        let image = try encoded(.png, width: 400, height: 400, channels: 3)
        let mask = try encoded(.png, width: 400, height: 400, channels: 4)
        let alone = try postEdit(test.client, multipart([("prompt", "x")], files: [("image", image)]))
        XCTAssertEqual(alone.status, 200, "160,000 pixels fit the budget")
        XCTAssertEqual(generator.requests.last?.initImage?.width, 400)
        let both = try postEdit(test.client, multipart([("prompt", "x")], files: [("image", image), ("mask", mask)]))
        assertError(both, status: 400, code: "invalid_request", param: "mask")
        XCTAssertTrue((both.error["message"] as? String)?.contains("320000") == true, "names the pixels counted")
        let over = try postEdit(test.client, multipart([("prompt", "x")], files: [("image", try declaredPNG(width: 1024, height: 257))]))
        assertError(over, status: 400, code: "invalid_request", param: "image")
        XCTAssertEqual(generator.requests.count, 1)
    }

    func testFullQueueRefusesBeforeDecodingAndAdmittedUploadsDecodeOnTheWorker() throws {
        let generator = FakeGenerator(stepSeconds: 0.1)
        let test = try TestServer(generator: generator) { $0.maxQueue = 0 }
        // The header says 64x64 but the pixel data is missing: only a decode can find that out.
        let undecodable = try declaredPNG(width: 64, height: 64)
        let busy = try test.client.postJSON("/v1/images/generations", ["prompt": "busy", "async": true])
        XCTAssertEqual(busy.status, 202)
        Thread.sleep(forTimeInterval: 0.1)
        let full = try postEdit(test.client, multipart([("prompt", "x")], files: [("image", undecodable)]))
        assertError(full, status: 429, code: "rate_limit_exceeded")
        try waitForTask(test, id: try XCTUnwrap(busy.json["id"] as? String), status: "completed")
        let admitted = try postEdit(test.client, multipart([("prompt", "x")], files: [("image", undecodable)]))
        assertError(admitted, status: 400, code: "invalid_request", param: "image")
        XCTAssertEqual(generator.requests.count, 1, "a failed decode never reaches the model")

        let async = try postEdit(test.client, multipart([("prompt", "x"), ("async", "true")], files: [("image", undecodable)]))
        XCTAssertEqual(async.status, 202)
        let task = try waitForTask(test, id: try XCTUnwrap(async.json["id"] as? String), status: "failed")
        XCTAssertEqual((task["error"] as? [String: Any])?["param"] as? String, "image")
    }

    /// Polls a task for up to 5 seconds until it has `status`.
    @discardableResult
    private func waitForTask(_ test: TestServer, id: String, status: String) throws -> [String: Any] {
        var task = try test.client.get("/v1/tasks/\(id)").json
        for _ in 0..<250 where task["status"] as? String != status {
            Thread.sleep(forTimeInterval: 0.02)
            task = try test.client.get("/v1/tasks/\(id)").json
        }
        XCTAssertEqual(task["status"] as? String, status)
        return task
    }
}
