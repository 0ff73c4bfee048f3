import Foundation
import Schnell
import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A model that never looks at its progress callback, so it cannot be cancelled: it sleeps
/// `seconds` and returns one black image.
private final class UncancellableGenerator: ImageGenerating, @unchecked Sendable {
    let model = FakeGenerator.schnell
    let seconds: Double

    init(seconds: Double) { self.seconds = seconds }

    func validate(_ request: GenerationRequest) throws {}

    func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult {
        Thread.sleep(forTimeInterval: seconds)
        let pixels = [UInt8](repeating: 0, count: request.width * request.height * 3)
        return GenerationResult(images: [GeneratedImage(width: request.width, height: request.height, rgb: pixels, seed: 0)],
                                steps: 1, guidance: nil, timings: [])
    }
}

/// `ImageServer.stop()`, as SIGTERM runs it: everyone waiting is answered 503, every async task's
/// final state is on disk, and the worker is joined within the shutdown timeout.
final class ShutdownTests: XCTestCase {
    private func taskRecord(_ directory: String, _ id: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/tasks/\(id).json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Starts a sync generation on its own thread; the response lands in the returned box.
    private func generateInBackground(_ client: RawClient, prompt: String) -> (Locked<RawResponse?>, DispatchGroup) {
        let box = Locked<RawResponse?>(nil)
        let group = DispatchGroup()
        group.enter()
        Thread.detachNewThread {
            let response = try? client.postJSON("/v1/images/generations", ["prompt": prompt, "steps": 8])
            box.mutate { $0 = response }
            group.leave()
        }
        return (box, group)
    }

    private func waitUntil(_ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(5)
        while !condition() && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }

    func testStopCancelsTheRunningGenerationAndAnswersEveryone() throws {
        let generator = FakeGenerator(stepSeconds: 0.1)
        let test = try TestServer(generator: generator)
        let (running, runningDone) = generateInBackground(test.client, prompt: "running")
        waitUntil { generator.requests.count == 1 }
        let queuedTask = try test.client.postJSON("/v1/images/generations", ["prompt": "queued async", "async": true])
        XCTAssertEqual(queuedTask.status, 202)
        let taskID = try XCTUnwrap(queuedTask.json["id"] as? String)
        let (waiting, waitingDone) = generateInBackground(test.client, prompt: "queued sync")
        waitUntil { (try? test.client.get("/health").json["queue_depth"] as? Int) == 2 }

        let started = Date()
        XCTAssertTrue(test.server.stop(), "the worker was joined")
        // The running job stops at its next step (0.1 s apart).
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5)
        XCTAssertEqual(runningDone.wait(timeout: .now() + 2), .success)
        XCTAssertEqual(waitingDone.wait(timeout: .now() + 2), .success)
        assertError(try XCTUnwrap(running.value), status: 503, code: "server_shutting_down")
        assertError(try XCTUnwrap(waiting.value), status: 503, code: "server_shutting_down")
        let record = try taskRecord(test.outputDirectory, taskID)
        XCTAssertEqual(record["status"] as? String, "failed")
        XCTAssertEqual((record["error"] as? [String: Any])?["code"] as? String, "server_shutting_down")
        XCTAssertEqual(generator.requests.map(\.prompt), ["running"], "queued jobs never start after a stop")
        XCTAssertThrowsError(try test.client.get("/health"), "the listening socket is closed")
    }

    func testAGenerationThatIgnoresCancellationIsAbandonedAfterTheTimeout() throws {
        let test = try TestServer(generator: UncancellableGenerator(seconds: 4)) { $0.shutdownTimeoutSeconds = 1 }
        let (running, runningDone) = generateInBackground(test.client, prompt: "stuck")
        let runningTask = try test.client.postJSON("/v1/images/generations", ["prompt": "queued", "async": true])
        let taskID = try XCTUnwrap(runningTask.json["id"] as? String)
        Thread.sleep(forTimeInterval: 0.3)
        let started = Date()
        XCTAssertFalse(test.server.stop(), "the worker is still inside the model")
        let seconds = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(seconds, 0.9)
        XCTAssertLessThan(seconds, 2.5)
        XCTAssertEqual(runningDone.wait(timeout: .now() + 1), .success)
        assertError(try XCTUnwrap(running.value), status: 503, code: "server_shutting_down")
        XCTAssertEqual(try taskRecord(test.outputDirectory, taskID)["status"] as? String, "failed")
    }
}
