import Foundation
import Schnell
import SchnellImageIO
@testable import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// One server-sent event: its name and its JSON data.
struct StreamEvent {
    var name: String
    var data: [String: Any]
}

/// A chunked HTTP body put back together.
func dechunk(_ body: [UInt8]) throws -> [UInt8] {
    var output: [UInt8] = []
    var position = 0
    while position < body.count {
        guard let lineEnd = (position..<(body.count - 1)).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
              let size = Int(String(decoding: body[position..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16) else {
            throw ClientError.malformed
        }
        if size == 0 { return output }
        let start = lineEnd + 2
        guard start + size + 2 <= body.count else { throw ClientError.malformed }
        output += body[start..<start + size]
        position = start + size + 2
    }
    throw ClientError.malformed
}

/// The events of a `text/event-stream` body (comments skipped).
func events(_ response: RawResponse) throws -> [StreamEvent] {
    let text = String(decoding: try dechunk(response.body), as: UTF8.self)
    return try text.components(separatedBy: "\n\n").compactMap { block -> StreamEvent? in
        var name = "message", data = ""
        for line in block.split(separator: "\n") {
            if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data += line.dropFirst(6) }
        }
        guard !data.isEmpty else { return nil }
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
        return StreamEvent(name: name, data: object)
    }
}

final class StreamingTests: XCTestCase {
    private func png(width: Int, height: Int) throws -> [UInt8] {
        let image = try Image8(width: width, height: height, channels: 3, pixels: [UInt8](repeating: 90, count: width * height * 3))
        return try ImageEncoder.encode(image, as: .png)
    }

    func testAStreamSendsPartialImagesThenTheSameImageAsWithoutStreaming() throws {
        let test = try TestServer()
        let body: [String: Any] = ["prompt": "a red fox", "size": "128x64", "seed": 5, "stream": true, "partial_images": 2]
        let response = try test.client.postJSON("/v1/images/generations", body)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        XCTAssertEqual(response.headers["content-type"], "text/event-stream")
        XCTAssertEqual(response.headers["transfer-encoding"], "chunked")
        let received = try events(response)
        XCTAssertEqual(received.map(\.name), ["image_generation.partial_image", "image_generation.partial_image",
                                              "image_generation.completed"])
        for (index, event) in received.enumerated() {
            XCTAssertEqual(event.data["type"] as? String, event.name)
            XCTAssertEqual(event.data["size"] as? String, "128x64")
            XCTAssertEqual(event.data["quality"] as? String, "auto")
            XCTAssertEqual(event.data["background"] as? String, "opaque")
            XCTAssertEqual(event.data["output_format"] as? String, "png")
            XCTAssertNotNil(event.data["created_at"] as? Int)
            let image = try ImageDecoder.decode([UInt8](try XCTUnwrap(Data(base64Encoded: event.data["b64_json"] as? String ?? ""))))
            XCTAssertEqual([image.width, image.height], [128, 64])
            if index < 2 {
                XCTAssertEqual(event.data["partial_image_index"] as? Int, index)
                XCTAssertEqual(image.pixels.first, UInt8(64 * (index + 1)), "the generator's preview")
            }
        }
        let completed = received[2].data
        XCTAssertEqual(completed["seed"] as? Int, 5)
        let usage = try XCTUnwrap(completed["usage"] as? [String: Any])
        // "a red fox": 3 words, 5 CLIP and 4 T5 tokens; 128x64 is 8 x 4 = 32 image tokens.
        XCTAssertEqual(usage["input_tokens"] as? Int, 9)
        XCTAssertEqual(usage["output_tokens"] as? Int, 32)
        XCTAssertEqual(usage["total_tokens"] as? Int, 41)
        XCTAssertNotNil((completed["timings"] as? [String: Any])?["total"] as? Double)

        var plain = body
        plain["stream"] = nil
        plain["partial_images"] = nil
        let direct = try test.client.postJSON("/v1/images/generations", plain)
        let directImage = try XCTUnwrap((direct.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String)
        XCTAssertEqual(completed["b64_json"] as? String, directImage, "streamed and plain images are the same file")
    }

    func testPartialImagesZeroAndSeveralImages() throws {
        let test = try TestServer()
        let none = try events(try test.client.postJSON("/v1/images/generations",
                                                       ["prompt": "x", "size": "64x64", "stream": true, "n": 2, "seed": 1]))
        XCTAssertEqual(none.map(\.name), ["image_generation.completed", "image_generation.completed"])
        XCTAssertEqual(none.map { $0.data["image_index"] as? Int }, [0, 1])
        XCTAssertEqual(none.map { $0.data["seed"] as? Int }, [1, 2])
        // The input tokens go with the first image, so the events add up to the request's usage.
        XCTAssertEqual(none.map { ($0.data["usage"] as? [String: Any])?["input_tokens"] as? Int }, [5, 0])
        XCTAssertEqual(none.map { ($0.data["usage"] as? [String: Any])?["output_tokens"] as? Int }, [16, 16])

        // Three previews asked of a 2-step generation: only one fits before the last step.
        let short = try events(try test.client.postJSON("/v1/images/generations",
                                                        ["prompt": "x", "size": "64x64", "stream": true, "partial_images": 3, "steps": 2]))
        XCTAssertEqual(short.map(\.name), ["image_generation.partial_image", "image_generation.completed"])
    }

    func testAStreamedEditUsesEditEvents() throws {
        let test = try TestServer()
        let body = multipart([("prompt", "x"), ("stream", "true"), ("partial_images", "1")], files: [("image", try png(width: 64, height: 64))])
        let response = try postEdit(test.client, body)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        let received = try events(response)
        XCTAssertEqual(received.map(\.name), ["image_edit.partial_image", "image_edit.completed"])
        let usage = try XCTUnwrap(received[1].data["usage"] as? [String: Any])
        XCTAssertEqual((usage["input_tokens_details"] as? [String: Any])?["image_tokens"] as? Int, 16, "64x64: 16 image tokens in")
        XCTAssertEqual((usage["input_tokens_details"] as? [String: Any])?["text_tokens"] as? Int, 5, "'x': 3 CLIP and 2 T5 tokens")
        XCTAssertEqual(usage["input_tokens"] as? Int, 21)
    }

    func testStreamFieldsAreValidated() throws {
        let test = try TestServer()
        let cases: [([String: Any], String)] = [
            (["stream": true, "partial_images": 4], "partial_images"),
            (["stream": true, "partial_images": -1], "partial_images"),
            (["stream": true, "partial_images": "2"], "partial_images"),
            (["partial_images": 2], "partial_images"),
            (["stream": "yes"], "stream"),
            (["stream": true, "async": true], "stream"),
            (["stream": true, "response_format": "url"], "response_format"),
        ]
        for (extra, param) in cases {
            var body: [String: Any] = ["prompt": "x", "size": "64x64"]
            body.merge(extra) { $1 }
            assertError(try test.client.postJSON("/v1/images/generations", body), status: 400, code: "invalid_request", param: param)
        }
        XCTAssertEqual(try test.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "partial_images": 0]).status, 200)
    }

    /// A model that fails after its first step, once the stream has begun.
    private struct FailingGenerator: ImageGenerating {
        let model = FakeGenerator.schnell
        func validate(_ request: GenerationRequest) throws {}

        func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                      preview: (PreviewImage) -> Void) throws -> GenerationResult {
            preview(PreviewImage(image: 0, index: 0, step: 1, width: request.width, height: request.height,
                                 rgb: [UInt8](repeating: 0, count: request.width * request.height * 3)))
            throw CocoaError(.fileReadCorruptFile)
        }
    }

    func testAFailureAfterTheStreamBeganIsAnErrorEvent() throws {
        let test = try TestServer(generator: FailingGenerator())
        let response = try test.client.postJSON("/v1/images/generations",
                                                ["prompt": "x", "size": "64x64", "stream": true, "partial_images": 1])
        XCTAssertEqual(response.status, 200)
        let received = try events(response)
        XCTAssertEqual(received.map(\.name), ["image_generation.partial_image", "error"])
        let error = try XCTUnwrap(received[1].data["error"] as? [String: Any])
        XCTAssertEqual(error["code"] as? String, "server_error")
        XCTAssertNotNil(error["message"] as? String)
    }

    /// Records whether its generation was asked to stop, and at which step.
    private final class StoppableGenerator: ImageGenerating, @unchecked Sendable {
        let model = FakeGenerator.schnell
        let stoppedAt = Locked<Int?>(nil)
        let started = DispatchSemaphore(value: 0)
        func validate(_ request: GenerationRequest) throws {}

        func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                      preview: (PreviewImage) -> Void) throws -> GenerationResult {
            started.signal()
            for step in 0..<200 {
                guard progress(GenerationProgress(stage: .denoising, image: 0, imageCount: 1, step: step, stepCount: 200)) else {
                    stoppedAt.mutate { $0 = step }
                    throw PipelineError.cancelled
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return GenerationResult(images: [], steps: 200, guidance: nil, timings: [])
        }
    }

    func testAClientThatLeavesCancelsItsGeneration() throws {
        let generator = StoppableGenerator()
        let test = try TestServer(generator: generator)
        let fd = try test.client.connect()
        let body = Array(#"{"prompt": "x", "size": "64x64", "stream": true, "steps": 8}"#.utf8)
        RawClient.send(fd, Array("POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
        XCTAssertEqual(generator.started.wait(timeout: .now() + 10), .success)
        close(fd)
        let deadline = Date(timeIntervalSinceNow: 5)
        while generator.stoppedAt.value == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let step = try XCTUnwrap(generator.stoppedAt.value, "the generation went on after its client left")
        XCTAssertLessThan(step, 100, "stopped within a few steps of the client leaving (each step is 50 ms)")
        XCTAssertEqual(try test.client.get("/health").json["queue_depth"] as? Int, 0)
    }

    func testStoppingTheServerEndsAStreamWithAnErrorEvent() throws {
        let generator = FakeGenerator(stepSeconds: 0.2)
        let test = try TestServer(generator: generator)
        let answer = Locked<RawResponse?>(nil)
        let done = DispatchSemaphore(value: 0)
        let client = test.client
        Thread {
            let response = try? client.postJSON("/v1/images/generations",
                                                     ["prompt": "x", "size": "64x64", "stream": true, "partial_images": 1, "steps": 8])
            answer.mutate { $0 = response }
            done.signal()
        }.start()
        let deadline = Date(timeIntervalSinceNow: 5)
        while generator.requests.isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertTrue(test.server.stop())
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "the streamed client was answered")
        let received = try events(try XCTUnwrap(answer.value))
        XCTAssertEqual(received.map(\.name), ["image_generation.partial_image", "error"])
        XCTAssertEqual((received.last?.data["error"] as? [String: Any])?["code"] as? String, "server_shutting_down")
    }
}
