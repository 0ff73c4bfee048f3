import Foundation
import Schnell
@testable import SchnellServer
import XCTest

/// A model that fails every generation, for tasks that end `failed`.
private final class FailingGenerator: ImageGenerating, @unchecked Sendable {
    struct Broken: Error {}

    let model = FakeGenerator.schnell

    func validate(_ request: GenerationRequest) throws {}

    func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult {
        throw Broken()
    }
}

/// Async tasks: progress, cancel (queued, running, finished, unknown), listing, and their final
/// records on disk, also across a stop.
final class TaskControlTests: XCTestCase {
    private func createTask(_ client: RawClient, prompt: String, steps: Int = 4) throws -> String {
        let created = try client.postJSON("/v1/images/generations", ["prompt": prompt, "async": true, "steps": steps])
        XCTAssertEqual(created.status, 202, String(decoding: created.body, as: UTF8.self))
        return try XCTUnwrap(created.json["id"] as? String)
    }

    private func poll(_ client: RawClient, _ id: String, until statuses: Set<String>,
                      file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            let json = try client.get("/v1/tasks/\(id)").json
            if let status = json["status"] as? String, statuses.contains(status) { return json }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("task \(id) never reached \(statuses)", file: file, line: line)
        return [:]
    }

    private func record(_ directory: String, _ id: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/tasks/\(id).json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func progress(_ task: [String: Any]) -> [String: Int] {
        task["progress"] as? [String: Int] ?? [:]
    }

    private func ids(_ response: RawResponse) -> [String] {
        (response.json["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
    }

    func testProgressAndQueuePositionWhileWaitingAndRunning() throws {
        let test = try TestServer(generator: FakeGenerator(stepSeconds: 0.3))
        let running = try createTask(test.client, prompt: "running", steps: 4)
        let second = try createTask(test.client, prompt: "second", steps: 2)
        let third = try createTask(test.client, prompt: "third", steps: 3)
        let fourth = try test.client.postJSON("/v1/images/generations", ["prompt": "fourth", "async": true, "steps": 1])
        XCTAssertEqual(fourth.json["status"] as? String, "pending")
        XCTAssertEqual(fourth.json["queue_position"] as? Int, 3, "the 202 answer says where it waits")

        let waiting = try test.client.get("/v1/tasks/\(third)").json
        XCTAssertEqual(waiting["status"] as? String, "pending")
        XCTAssertEqual(waiting["queue_position"] as? Int, 2, "one job waits ahead of it")
        XCTAssertEqual((waiting["data"] as? [Any])?.count, 0)
        XCTAssertEqual(progress(waiting), ["step": 0, "total_steps": 3, "percent": 0])
        XCTAssertEqual(try test.client.get("/v1/tasks/\(second)").json["queue_position"] as? Int, 1)

        // FakeGenerator reports step n as it starts it, so step 1 means one of four is done.
        let underway = try poll(test.client, running, until: ["running"])
        XCTAssertNil(underway["queue_position"])
        XCTAssertEqual((underway["data"] as? [Any])?.count, 0)
        let started = progress(underway)
        XCTAssertEqual(started["total_steps"], 4)
        XCTAssertEqual(started["percent"], (started["step"] ?? -1) * 25)
        var later = started
        while (later["step"] ?? 0) < 1 {
            later = progress(try test.client.get("/v1/tasks/\(running)").json)
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTAssertEqual(later["percent"], (later["step"] ?? -1) * 25)

        let done = try poll(test.client, third, until: ["completed", "failed"])
        XCTAssertEqual(done["status"] as? String, "completed")
        XCTAssertEqual(progress(done), ["step": 3, "total_steps": 3, "percent": 100])
        XCTAssertEqual((done["data"] as? [Any])?.count, 1)
        XCTAssertNotNil(done["completed_at"] as? Int)
    }

    func testCancellingAQueuedTaskRemovesItAndTheQueueMovesOn() throws {
        let generator = FakeGenerator(stepSeconds: 0.2)
        let test = try TestServer(generator: generator)
        let running = try createTask(test.client, prompt: "running", steps: 4)
        let queued = try createTask(test.client, prompt: "queued")
        let next = try createTask(test.client, prompt: "next")

        let cancelled = try test.client.request("DELETE", "/v1/tasks/\(queued)")
        XCTAssertEqual(cancelled.status, 200, String(decoding: cancelled.body, as: UTF8.self))
        XCTAssertEqual(cancelled.json["status"] as? String, "cancelled")
        XCTAssertEqual((cancelled.json["data"] as? [Any])?.count, 0)
        XCTAssertNil(cancelled.json["error"])
        let onDisk = try record(test.outputDirectory, queued)
        XCTAssertEqual(onDisk["status"] as? String, "cancelled")
        XCTAssertNotNil(onDisk["completed_at"] as? Int)
        XCTAssertEqual(progress(onDisk), ["step": 0, "total_steps": 4, "percent": 0])
        XCTAssertEqual(try test.client.get("/v1/tasks/\(next)").json["queue_position"] as? Int, 1, "the cancelled job left the queue")

        // Cancelling again answers the same record, by either route.
        let again = try test.client.request("POST", "/v1/tasks/\(queued)/cancel")
        XCTAssertEqual(again.status, 200)
        XCTAssertEqual(again.json["status"] as? String, "cancelled")
        XCTAssertEqual(again.json["completed_at"] as? Int, onDisk["completed_at"] as? Int)

        XCTAssertEqual(try poll(test.client, running, until: ["completed", "failed"])["status"] as? String, "completed")
        XCTAssertEqual(try poll(test.client, next, until: ["completed", "failed"])["status"] as? String, "completed")
        XCTAssertEqual(generator.requests.map(\.prompt), ["running", "next"], "the cancelled job never ran")
        XCTAssertEqual(try test.client.get("/v1/tasks/\(queued)").json["status"] as? String, "cancelled")
    }

    func testCancellingARunningTaskStopsItAtTheNextStep() throws {
        let generator = FakeGenerator(stepSeconds: 0.5)
        let test = try TestServer(generator: generator)
        let running = try createTask(test.client, prompt: "running", steps: 8)
        let next = try createTask(test.client, prompt: "next", steps: 1)
        _ = try poll(test.client, running, until: ["running"])

        let started = Date()
        let cancelling = try test.client.request("POST", "/v1/tasks/\(running)/cancel")
        XCTAssertEqual(cancelling.status, 200, String(decoding: cancelling.body, as: UTF8.self))
        XCTAssertEqual(cancelling.json["status"] as? String, "cancelling", "the model is inside a 0.5 s step")
        let final = try poll(test.client, running, until: ["cancelled", "completed", "failed"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "it stopped at the next step, not after all 8")
        XCTAssertEqual(final["status"] as? String, "cancelled")
        XCTAssertEqual((final["data"] as? [Any])?.count, 0)
        XCTAssertLessThan(progress(final)["step"] ?? 8, 8)
        XCTAssertEqual(progress(final)["total_steps"], 8)
        XCTAssertEqual(try record(test.outputDirectory, running)["status"] as? String, "cancelled")
        XCTAssertNotNil(try record(test.outputDirectory, running)["completed_at"] as? Int)

        XCTAssertEqual(try poll(test.client, next, until: ["completed", "failed"])["status"] as? String, "completed")
        XCTAssertEqual(generator.requests.map(\.prompt), ["running", "next"])
    }

    func testACancelThatArrivesAfterTheLastStepStillEndsCancelled() throws {
        // One 1 s step: the cancel lands while the model is past its only progress call.
        let test = try TestServer(generator: FakeGenerator(stepSeconds: 1))
        let id = try createTask(test.client, prompt: "one step", steps: 1)
        _ = try poll(test.client, id, until: ["running"])
        XCTAssertEqual(try test.client.request("DELETE", "/v1/tasks/\(id)").json["status"] as? String, "cancelling")
        let final = try poll(test.client, id, until: ["cancelled", "completed", "failed"])
        XCTAssertEqual(final["status"] as? String, "cancelled")
        XCTAssertEqual((final["data"] as? [Any])?.count, 0, "the finished images are dropped")
        let images = try FileManager.default.contentsOfDirectory(atPath: test.outputDirectory + "/images")
        XCTAssertEqual(images, [])
    }

    func testFinishedAndUnknownTasksCannotBeCancelled() throws {
        let test = try TestServer()
        let completed = try createTask(test.client, prompt: "done")
        _ = try poll(test.client, completed, until: ["completed"])
        let conflict = try test.client.request("DELETE", "/v1/tasks/\(completed)")
        assertError(conflict, status: 409, code: "task_not_cancellable", param: .some(nil))
        XCTAssertEqual(conflict.error["message"] as? String,
                       "The task '\(completed)' is already completed; only pending or running tasks can be cancelled")
        XCTAssertEqual(try test.client.get("/v1/tasks/\(completed)").json["status"] as? String, "completed", "the record is unchanged")

        let failing = try TestServer(generator: FailingGenerator())
        let failed = try createTask(failing.client, prompt: "broken")
        _ = try poll(failing.client, failed, until: ["failed"])
        let failedConflict = try failing.client.request("POST", "/v1/tasks/\(failed)/cancel")
        assertError(failedConflict, status: 409, code: "task_not_cancellable")
        XCTAssertEqual(failedConflict.error["message"] as? String,
                       "The task '\(failed)' is already failed; only pending or running tasks can be cancelled")

        assertError(try test.client.request("DELETE", "/v1/tasks/task_0123456789abcdef0123456789abcdef"), status: 404, code: "not_found")
        assertError(try test.client.request("POST", "/v1/tasks/nope/cancel"), status: 404, code: "not_found")
        assertError(try test.client.request("PUT", "/v1/tasks/\(completed)"), status: 405, code: "method_not_allowed")
        assertError(try test.client.get("/v1/tasks/\(completed)/cancel"), status: 405, code: "method_not_allowed")
    }

    func testListingIsNewestFirstWithLimitStatusAndPages() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-list-\(UUID().uuidString)").path
        var order: [String] = []
        do {
            let test = try TestServer(generator: FakeGenerator(stepSeconds: 0.3), outputDirectory: directory)
            let running = try createTask(test.client, prompt: "a", steps: 8)
            let pending = try createTask(test.client, prompt: "b")
            let cancelled = try createTask(test.client, prompt: "c")
            order = [cancelled, pending, running]
            XCTAssertEqual(try test.client.request("DELETE", "/v1/tasks/\(cancelled)").json["status"] as? String, "cancelled")
            _ = try poll(test.client, running, until: ["running"])

            let all = try test.client.get("/v1/tasks")
            XCTAssertEqual(all.status, 200)
            XCTAssertEqual(all.json["object"] as? String, "list")
            XCTAssertEqual(all.json["has_more"] as? Bool, false)
            XCTAssertEqual(ids(all), order)
            XCTAssertEqual((all.json["data"] as? [[String: Any]])?.compactMap { $0["status"] as? String },
                           ["cancelled", "pending", "running"])
            XCTAssertEqual(ids(try test.client.get("/v1/tasks?status=pending")), [pending])
            XCTAssertEqual(ids(try test.client.get("/v1/tasks?status=running")), [running])
            XCTAssertEqual(ids(try test.client.get("/v1/tasks?status=completed")), [])
            let first = try test.client.get("/v1/tasks?limit=1")
            XCTAssertEqual(ids(first), [cancelled])
            XCTAssertEqual(first.json["has_more"] as? Bool, true)
            let rest = try test.client.get("/v1/tasks?limit=1&after=\(cancelled)")
            XCTAssertEqual(ids(rest), [pending])
            XCTAssertEqual(rest.json["has_more"] as? Bool, true)
            let last = try test.client.get("/v1/tasks?limit=5&after=\(pending)")
            XCTAssertEqual(ids(last), [running])
            XCTAssertEqual(last.json["has_more"] as? Bool, false)

            for (query, param) in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("limit=", "limit"),
                                   ("status=done", "status"), ("status=", "status"), ("after=task_x", "after"),
                                   ("limit=1&limit=2", "limit"), ("status=%zz", "status")] {
                assertError(try test.client.get("/v1/tasks?" + query), status: 400, code: "invalid_request", param: param)
            }
            XCTAssertEqual(try poll(test.client, pending, until: ["completed", "failed"])["status"] as? String, "completed")
        }
        // After a restart the same tasks come from their records, in the same order.
        let restarted = try TestServer(outputDirectory: directory)
        let stored = try restarted.client.get("/v1/tasks?limit=100")
        XCTAssertEqual(ids(stored), order)
        XCTAssertEqual((stored.json["data"] as? [[String: Any]])?.compactMap { $0["status"] as? String },
                       ["cancelled", "completed", "completed"])
        XCTAssertEqual(ids(try restarted.client.get("/v1/tasks?status=cancelled")), [order[0]])
    }

    func testAStopRecordsTheRunningTaskAsFailed() throws {
        let test = try TestServer(generator: FakeGenerator(stepSeconds: 0.2))
        let running = try createTask(test.client, prompt: "running", steps: 8)
        _ = try poll(test.client, running, until: ["running"])
        XCTAssertTrue(test.server.stop())
        let stopped = try record(test.outputDirectory, running)
        XCTAssertEqual(stopped["status"] as? String, "failed")
        XCTAssertEqual((stopped["error"] as? [String: Any])?["code"] as? String, "server_shutting_down")
        XCTAssertNotNil(stopped["completed_at"] as? Int)
        XCTAssertEqual(progress(stopped)["total_steps"], 8)
        XCTAssertLessThan(progress(stopped)["step"] ?? 8, 8)
    }

    func testAStopKeepsCancelledTasksCancelled() throws {
        // The model ignores the cancel for its single 3 s step and the shutdown gives up after
        // 1 s: the abandoned task is still recorded as the cancel its client asked for.
        let test = try TestServer(generator: FakeGenerator(stepSeconds: 3)) { $0.shutdownTimeoutSeconds = 1 }
        let running = try createTask(test.client, prompt: "running", steps: 1)
        let queued = try createTask(test.client, prompt: "queued", steps: 1)
        _ = try poll(test.client, running, until: ["running"])
        XCTAssertEqual(try test.client.request("DELETE", "/v1/tasks/\(running)").json["status"] as? String, "cancelling")
        XCTAssertFalse(test.server.stop(), "the model was still inside its step")
        let stopped = try record(test.outputDirectory, running)
        XCTAssertEqual(stopped["status"] as? String, "cancelled")
        XCTAssertNil(stopped["error"])
        let dropped = try record(test.outputDirectory, queued)
        XCTAssertEqual(dropped["status"] as? String, "failed")
        XCTAssertEqual((dropped["error"] as? [String: Any])?["code"] as? String, "server_shutting_down")
    }
}
