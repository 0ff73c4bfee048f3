import Foundation
import Schnell
import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class ConcurrencyTests: XCTestCase {
    func testManyClientsGetAnswersAndGenerationsNeverOverlap() throws {
        let generator = FakeGenerator(stepSeconds: 0.02)
        let test = try TestServer(generator: generator) { $0.maxQueue = 8 }
        let client = test.client
        let statuses = Locked<[Int]>([])
        let started = Date()
        DispatchQueue.concurrentPerform(iterations: 40) { index in
            let status = (try? client.postJSON("/v1/images/generations", ["prompt": "fox \(index)"]).status) ?? -1
            statuses.mutate { $0.append(status) }
        }
        let answered = statuses.value
        XCTAssertEqual(answered.count, 40)
        XCTAssertTrue(answered.allSatisfy { $0 == 200 || $0 == 429 }, "\(answered)")
        XCTAssertGreaterThanOrEqual(answered.filter { $0 == 200 }.count, 1)
        XCTAssertEqual(answered.filter { $0 == 200 }.count, generator.requests.count)
        XCTAssertEqual(generator.maxConcurrent, 1)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
        let health = try client.get("/health")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.json["cpu_tier"] as? String, CPUTier.current.description, "the kernels' tier is named")
    }

    func testQueueFullIsRateLimited() throws {
        let generator = FakeGenerator(stepSeconds: 0.1)
        let test = try TestServer(generator: generator) { $0.maxQueue = 1 }
        let client = test.client
        let first = try client.postJSON("/v1/images/generations", ["prompt": "a", "async": true])
        XCTAssertEqual(first.status, 202)
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(try client.postJSON("/v1/images/generations", ["prompt": "b", "async": true]).status, 202)
        let rejected = try client.postJSON("/v1/images/generations", ["prompt": "c"])
        assertError(rejected, status: 429, code: "rate_limit_exceeded")
        XCTAssertEqual(rejected.error["type"] as? String, "rate_limit_error")
    }

    func testLongGenerationDoesNotBlockHealthOrPolling() throws {
        let generator = FakeGenerator(stepSeconds: 0.4)
        let test = try TestServer(generator: generator)
        let client = test.client
        let created = try client.postJSON("/v1/images/generations", ["prompt": "slow", "async": true])
        let pollURL = try XCTUnwrap(created.json["poll_url"] as? String)
        let syncDone = expectation(description: "sync request answered")
        DispatchQueue.global().async {
            XCTAssertEqual(try? client.postJSON("/v1/images/generations", ["prompt": "queued"]).status, 200)
            syncDone.fulfill()
        }
        Thread.sleep(forTimeInterval: 0.6)
        let started = Date()
        XCTAssertEqual(try client.get("/health").status, 200)
        let task = try client.get(pollURL).json
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.5)
        XCTAssertEqual(task["status"] as? String, "running")
        let progress = try XCTUnwrap(task["progress"] as? [String: Int])
        XCTAssertEqual(progress["total_steps"], 4)
        XCTAssertGreaterThanOrEqual(progress["step"] ?? 0, 1)
        XCTAssertEqual(try client.get("/metrics").status, 200)
        wait(for: [syncDone], timeout: 10)
    }

    func testClientThatLeavesTheQueueIsDropped() throws {
        let generator = FakeGenerator(stepSeconds: 0.2)
        let test = try TestServer(generator: generator)
        let client = test.client
        XCTAssertEqual(try client.postJSON("/v1/images/generations", ["prompt": "first", "async": true]).status, 202)
        let fd = try client.connect()
        let body = Array(#"{"prompt": "gone"}"#.utf8)
        RawClient.send(fd, Array("POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
        Thread.sleep(forTimeInterval: 0.2)
        close(fd)
        XCTAssertEqual(try client.postJSON("/v1/images/generations", ["prompt": "last"]).status, 200)
        XCTAssertEqual(generator.requests.map(\.prompt), ["first", "last"])
        XCTAssertEqual(try client.get("/metrics").status, 200)
    }

    func testConnectionFloodBeyondTheLimitLeavesTheServerServing() throws {
        let test = try TestServer { options in
            options.maxConnections = 8
            options.connectionTimeoutSeconds = 1
        }
        // Idle connections fill the limit; those over it are closed by the server at once.
        let sockets = try (0..<20).map { _ in try test.client.connect(timeoutSeconds: 5) }
        Thread.sleep(forTimeInterval: 0.2)
        var closedByServer = 0
        for fd in sockets {
            var byte: UInt8 = 0
            if recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 { closedByServer += 1 }
        }
        XCTAssertGreaterThanOrEqual(closedByServer, 12)
        sockets.forEach { close($0) }
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(try test.client.get("/health").status, 200)
    }
}
