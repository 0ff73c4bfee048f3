import Foundation
@testable import SchnellServer
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `PostgresTaskStore` against a real PostgreSQL (`SCHNELL_TEST_POSTGRES_URL`, a superuser's URL;
/// `.ci/run` starts one with Tests/server/postgres.sh). Each test gets a database of its own,
/// dropped after it. With `SCHNELL_TEST_POSTGRES_DIR` (the folder given to postgres.sh) the
/// server is also stopped and started again under a store.
final class PostgresTaskStoreTests: XCTestCase {
    private var adminURL = ""
    private var databaseName: String?
    private var databaseURL = ""

    override func setUpWithError() throws {
        guard let url = ProcessInfo.processInfo.environment["SCHNELL_TEST_POSTGRES_URL"], !url.isEmpty else {
            throw XCTSkip("set SCHNELL_TEST_POSTGRES_URL (a superuser's postgres:// URL, e.g. the one "
                + "`bash Tests/server/postgres.sh start DIR PORT` prints) to run the PostgreSQL store tests; .ci/run does")
        }
        adminURL = url
        let name = "schnell_test_" + (0..<8).map { _ in String(UInt8.random(in: 0...15), radix: 16) }.joined()
        try PostgresConnection(url: url).query("CREATE DATABASE \(name)")
        databaseName = name
        var components = try XCTUnwrap(URLComponents(string: url), "SCHNELL_TEST_POSTGRES_URL must be a postgres:// URL")
        components.path = "/" + name
        databaseURL = try XCTUnwrap(components.string)
    }

    override func tearDownWithError() throws {
        guard let databaseName else { return }
        try PostgresConnection(url: adminURL).query("DROP DATABASE IF EXISTS \(databaseName) WITH (FORCE)")
    }

    // MARK: Schema

    func testMigrationCreatesVersionOneOnceAndIsIdempotent() throws {
        _ = try PostgresTaskStore(url: databaseURL)
        _ = try PostgresTaskStore(url: databaseURL)
        let sql = try PostgresConnection(url: databaseURL)
        XCTAssertEqual(try sql.query("SELECT version FROM schnell_schema").rows.map { try $0.integer(0) }, [1])
        let tables = try sql.query("SELECT tablename FROM pg_tables WHERE tablename LIKE 'schnell_%' ORDER BY 1").rows
        XCTAssertEqual(try tables.map { try $0.string(0) }, ["schnell_images", "schnell_schema", "schnell_tasks"])
    }

    func testNewerSchemaIsRefused() throws {
        _ = try PostgresTaskStore(url: databaseURL)
        try PostgresConnection(url: databaseURL).query("INSERT INTO schnell_schema (version) VALUES (2)")
        XCTAssertThrowsError(try PostgresTaskStore(url: databaseURL)) { error in
            guard case TaskStoreError.failed(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("version 2, newer than this engine's 1"), reason)
        }
    }

    // MARK: Tasks

    func testInsertClaimRenewFinishRoundTrip() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        let id = Self.taskID(1)
        let body = Array(0...255) + Array("{\"prompt\":\"a fox\"}".utf8)
        try store.insert(id: id, created: 1_700_000_000, record: .object(Self.pendingRecord(id: id, created: 1_700_000_000)),
                         body: body, contentType: "application/json")
        XCTAssertEqual(try store.queueDepth(), 1)
        var expected = Self.pendingRecord(id: id, created: 1_700_000_000)
        expected["queue_position"] = 1
        XCTAssertEqual(try store.record(id: id), .object(expected))

        let claimed = try XCTUnwrap(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3))
        XCTAssertEqual(claimed.id, id)
        XCTAssertEqual(claimed.created, 1_700_000_000)
        XCTAssertEqual(claimed.record, .object(Self.pendingRecord(id: id, created: 1_700_000_000)), "the record as inserted")
        XCTAssertEqual(claimed.body, body)
        XCTAssertEqual(claimed.contentType, "application/json")
        XCTAssertEqual(claimed.attempt, 1)
        XCTAssertEqual(try store.queueDepth(), 0)
        XCTAssertNil(try store.claim(replica: "b", leaseSeconds: 30, maxAttempts: 3))

        XCTAssertEqual(try store.renew(id: id, replica: "a", leaseSeconds: 30, step: 3, totalSteps: 4), .held)
        expected["queue_position"] = nil
        expected["status"] = "running"
        expected["progress"] = ["step": 3, "total_steps": 4, "percent": 75]
        expected["replica"] = "a"
        XCTAssertEqual(try store.record(id: id), .object(expected))
        expected["replica"] = nil
        XCTAssertEqual(try store.renew(id: id, replica: "b", leaseSeconds: 30, step: 1, totalSteps: 4), .lost)

        var finished = Self.pendingRecord(id: id, created: 1_700_000_000)
        finished["status"] = "completed"
        finished["data"] = [["url": "http://a/v1/files/img_1.png"]]
        finished["progress"] = ["step": 4, "total_steps": 4, "percent": 100]
        finished["completed_at"] = 1_700_000_009
        XCTAssertTrue(try store.finish(id: id, replica: "a", record: .object(finished)))
        XCTAssertEqual(try store.record(id: id), .object(finished))
        XCTAssertEqual(try store.renew(id: id, replica: "a", leaseSeconds: 30, step: 4, totalSteps: 4), .lost)
        XCTAssertFalse(try store.finish(id: id, replica: "a", record: .object(finished)), "finished twice")
        let page = try store.list(limit: 20, status: nil, after: nil)
        XCTAssertEqual(page.records, [.object(finished)])
        XCTAssertFalse(page.hasMore)
        XCTAssertNil(try store.record(id: Self.taskID(2)))
        XCTAssertThrowsError(try store.finish(id: id, replica: "a", record: ["status": "running"]))
    }

    func testClaimTakesTheOldestAndListPagesNewestFirst() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        for number in 1...5 {
            try insertTask(store, number: number)
        }
        XCTAssertEqual(try store.record(id: Self.taskID(4))?["queue_position"], 4)
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(1))
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(2))
        XCTAssertEqual(try store.record(id: Self.taskID(4))?["queue_position"], 2)
        guard case .cancelling = try store.cancel(id: Self.taskID(1)) else { return XCTFail("not cancelling") }
        XCTAssertEqual(try store.queueDepth(), 3)

        func ids(_ page: (records: [JSONValue], hasMore: Bool)) -> ([String], Bool) {
            (page.records.map { $0["id"]?.stringValue ?? "?" }, page.hasMore)
        }
        XCTAssertTrue(ids(try store.list(limit: 2, status: nil, after: nil)) == ([Self.taskID(5), Self.taskID(4)], true))
        XCTAssertTrue(ids(try store.list(limit: 2, status: nil, after: Self.taskID(4))) == ([Self.taskID(3), Self.taskID(2)], true))
        XCTAssertTrue(ids(try store.list(limit: 2, status: nil, after: Self.taskID(2))) == ([Self.taskID(1)], false))
        XCTAssertTrue(ids(try store.list(limit: 3, status: "pending", after: nil)) == ([5, 4, 3].map(Self.taskID), false))
        XCTAssertTrue(ids(try store.list(limit: 20, status: "running", after: nil)) == ([Self.taskID(2)], false))
        XCTAssertTrue(ids(try store.list(limit: 20, status: "cancelling", after: nil)) == ([Self.taskID(1)], false))
        XCTAssertEqual(try store.list(limit: 20, status: "cancelling", after: nil).records.first?["status"], "cancelling")
        XCTAssertTrue(ids(try store.list(limit: 20, status: "completed", after: nil)) == ([], false))
    }

    /// Two stores (two connections) claim 20 tasks from two threads at once: each task exactly once.
    func testTwoClaimersNeverGetTheSameTask() throws {
        let stores = [try PostgresTaskStore(url: databaseURL), try PostgresTaskStore(url: databaseURL)]
        for number in 1...20 {
            try insertTask(stores[0], number: number)
        }
        let log = ClaimLog()
        DispatchQueue.concurrentPerform(iterations: 2) { replica in
            do {
                while let task = try stores[replica].claim(replica: "replica-\(replica)", leaseSeconds: 30, maxAttempts: 3) {
                    log.record(replica: replica, task: task)
                }
            } catch {
                log.record(error: error)
            }
        }
        let (claimed, errors) = log.entries
        XCTAssertTrue(errors.isEmpty, "\(errors)")
        XCTAssertEqual(claimed.map(\.task.id).sorted(), (1...20).map(Self.taskID))
        XCTAssertEqual(Set(claimed.map(\.task.attempt)), [1])
        for (replica, task) in claimed {
            XCTAssertEqual(try stores[0].renew(id: task.id, replica: "replica-\(replica)", leaseSeconds: 30, step: 0, totalSteps: 1),
                           .held, task.id)
        }
    }

    /// A 1 s lease on the database's clock: held until it runs out, then claimed again (attempt 2);
    /// the first replica has lost it and writes nothing.
    func testExpiredLeaseIsClaimedAgainAndTheOldHolderLosesIt() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        try insertTask(store, number: 1)
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 1, maxAttempts: 3)?.attempt, 1)
        XCTAssertNil(try store.claim(replica: "b", leaseSeconds: 30, maxAttempts: 3))
        Thread.sleep(forTimeInterval: 1.5)
        let again = try XCTUnwrap(try store.claim(replica: "b", leaseSeconds: 30, maxAttempts: 3))
        XCTAssertEqual(again.id, Self.taskID(1))
        XCTAssertEqual(again.attempt, 2)

        XCTAssertEqual(try store.renew(id: again.id, replica: "a", leaseSeconds: 30, step: 2, totalSteps: 4), .lost)
        var stale = Self.pendingRecord(id: again.id, created: 1_700_000_001)
        stale["status"] = "completed"
        stale["completed_at"] = 1_700_000_100
        XCTAssertFalse(try store.finish(id: again.id, replica: "a", record: .object(stale)))
        let record = try XCTUnwrap(try store.record(id: again.id))
        XCTAssertEqual(record["status"], "running")
        XCTAssertEqual(record["progress"], ["step": 0, "total_steps": 0, "percent": 0])
        XCTAssertNil(record["completed_at"])
        XCTAssertEqual(try store.renew(id: again.id, replica: "b", leaseSeconds: 30, step: 1, totalSteps: 4), .held)
    }

    /// Leases that ended a second ago (`leaseSeconds: -1`): after `maxAttempts` claims the task
    /// is failed with `task_abandoned`, and the same claim goes on to the next task.
    func testTaskOutOfAttemptsIsFailedAndTheNextOneClaimed() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        try insertTask(store, number: 1)
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: -1, maxAttempts: 2)?.attempt, 1)
        XCTAssertEqual(try store.claim(replica: "b", leaseSeconds: -1, maxAttempts: 2)?.attempt, 2)
        try insertTask(store, number: 2)
        let next = try XCTUnwrap(try store.claim(replica: "c", leaseSeconds: 30, maxAttempts: 2))
        XCTAssertEqual(next.id, Self.taskID(2))
        XCTAssertEqual(next.attempt, 1)

        let failed = try XCTUnwrap(try store.record(id: Self.taskID(1)))
        XCTAssertEqual(failed["status"], "failed")
        XCTAssertEqual(failed["error"]?["code"], "task_abandoned")
        XCTAssertEqual(failed["error"]?["type"], "server_error")
        let message = try XCTUnwrap(failed["error"]?["message"]?.stringValue)
        XCTAssertTrue(message.contains("abandoned after 2 attempts"), message)
        guard case .integer = failed["completed_at"] else { return XCTFail("no completed_at: \(failed)") }
        XCTAssertEqual(failed["data"], [])
        XCTAssertEqual(try store.renew(id: Self.taskID(1), replica: "b", leaseSeconds: 30, step: 1, totalSteps: 4), .lost)
        XCTAssertNil(try store.claim(replica: "c", leaseSeconds: 30, maxAttempts: 2))
    }

    /// A task asked to cancel whose replica died is not run again: it ends cancelled.
    func testExpiredLeaseOfACancellingTaskEndsCancelled() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        try insertTask(store, number: 1)
        XCTAssertNotNil(try store.claim(replica: "a", leaseSeconds: -1, maxAttempts: 3))
        guard case .cancelling = try store.cancel(id: Self.taskID(1)) else { return XCTFail("not cancelling") }
        XCTAssertNil(try store.claim(replica: "b", leaseSeconds: 30, maxAttempts: 3))
        let record = try XCTUnwrap(try store.record(id: Self.taskID(1)))
        XCTAssertEqual(record["status"], "cancelled")
        XCTAssertNil(record["error"])
    }

    func testCancelPendingRunningFinishedAndMissing() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        try insertTask(store, number: 1)
        try insertTask(store, number: 2)
        try insertTask(store, number: 3)

        // Pending: cancelled at once, never claimed.
        guard case .cancelled(let cancelled) = try store.cancel(id: Self.taskID(1)) else { return XCTFail("not cancelled") }
        var expected = Self.pendingRecord(id: Self.taskID(1), created: 1_700_000_001)
        expected["status"] = "cancelled"
        expected["completed_at"] = try XCTUnwrap(cancelled["completed_at"])
        XCTAssertEqual(cancelled, .object(expected))
        XCTAssertEqual(try store.record(id: Self.taskID(1)), cancelled)

        // Running: cancelling until its replica records the end.
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(2))
        XCTAssertEqual(try store.renew(id: Self.taskID(2), replica: "a", leaseSeconds: 30, step: 1, totalSteps: 4), .held)
        guard case .cancelling(let cancelling) = try store.cancel(id: Self.taskID(2)) else { return XCTFail("not cancelling") }
        XCTAssertEqual(cancelling["status"], "cancelling")
        XCTAssertEqual(cancelling["progress"], ["step": 1, "total_steps": 4, "percent": 25])
        XCTAssertEqual(try store.record(id: Self.taskID(2)), cancelling)
        guard case .cancelling = try store.cancel(id: Self.taskID(2)) else { return XCTFail("a second cancel") }
        XCTAssertEqual(try store.renew(id: Self.taskID(2), replica: "a", leaseSeconds: 30, step: 2, totalSteps: 4), .cancelRequested)
        var stopped = Self.pendingRecord(id: Self.taskID(2), created: 1_700_000_002)
        stopped["status"] = "cancelled"
        stopped["completed_at"] = 1_700_000_050
        XCTAssertTrue(try store.finish(id: Self.taskID(2), replica: "a", record: .object(stopped)))

        // Finished: answered with its status and record.
        guard case .finished("cancelled", let record) = try store.cancel(id: Self.taskID(2)) else { return XCTFail("not finished") }
        XCTAssertEqual(record, .object(stopped))
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(3))
        var completed = Self.pendingRecord(id: Self.taskID(3), created: 1_700_000_003)
        completed["status"] = "completed"
        XCTAssertTrue(try store.finish(id: Self.taskID(3), replica: "a", record: .object(completed)))
        guard case .finished("completed", .object(completed)) = try store.cancel(id: Self.taskID(3)) else {
            return XCTFail("completed")
        }

        guard case .notFound = try store.cancel(id: Self.taskID(9)) else { return XCTFail("found a missing task") }
    }

    // MARK: Images

    func testImagesRoundTripAndExpire() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        let now = Int(Date().timeIntervalSince1970)
        var generator = SystemRandomNumberGenerator()
        let large = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try store.storeImage(name: "img_1.png", bytes: Array(0...255), contentType: "image/png", expiresAt: now + 60)
        try store.storeImage(name: "img_2.webp", bytes: large, contentType: "image/webp", expiresAt: now + 60)
        try store.storeImage(name: "img_3.png", bytes: [1, 2, 3], contentType: "image/png", expiresAt: now - 5)
        let first = try XCTUnwrap(try store.image(name: "img_1.png"))
        XCTAssertEqual(first.bytes, Array(0...255))
        XCTAssertEqual(first.contentType, "image/png")
        XCTAssertEqual(try store.image(name: "img_2.webp")?.bytes, large)
        XCTAssertNil(try store.image(name: "img_3.png"), "expired")
        XCTAssertNil(try store.image(name: "img_4.png"), "missing")
        try store.storeImage(name: "img_1.png", bytes: [9], contentType: "image/jpeg", expiresAt: now + 60)
        XCTAssertEqual(try store.image(name: "img_1.png")?.bytes, [9])
        XCTAssertEqual(try store.image(name: "img_1.png")?.contentType, "image/jpeg")
    }

    func testRemoveExpiredDeletesOldImagesAndFinishedTasks() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        let now = 1_800_000_000
        try store.storeImage(name: "old.png", bytes: [1], contentType: "image/png", expiresAt: now - 1)
        try store.storeImage(name: "new.png", bytes: [2], contentType: "image/png", expiresAt: now + 3600)
        for number in 1...4 {
            try insertTask(store, number: number)
        }
        for (number, completedAt) in [(1, now - 7200), (2, now - 60)] {
            XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(number))
            var record = Self.pendingRecord(id: Self.taskID(number), created: 1_700_000_000 + number)
            record["status"] = "completed"
            record["completed_at"] = .integer(Int64(completedAt))
            XCTAssertTrue(try store.finish(id: Self.taskID(number), replica: "a", record: .object(record)))
        }
        XCTAssertNotNil(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3))  // task 3 running, task 4 pending

        try store.removeExpired(now: now, ttlSeconds: 3600)
        let sql = try PostgresConnection(url: databaseURL)
        XCTAssertEqual(try sql.query("SELECT name FROM schnell_images").rows.map { try $0.string(0) }, ["new.png"])
        XCTAssertNil(try store.record(id: Self.taskID(1)))
        XCTAssertEqual(try store.record(id: Self.taskID(2))?["status"], "completed")
        XCTAssertEqual(try store.record(id: Self.taskID(3))?["status"], "running")
        XCTAssertEqual(try store.record(id: Self.taskID(4))?["status"], "pending")
    }

    // MARK: Reachability

    /// A refused port answers at once; a server that accepts and never speaks is bounded by
    /// connect_timeout (2 s here). Neither crashes or hangs.
    func testUnreachableServerIsUnavailable() throws {
        let closedPort = try Self.withListener { port, _ in port }
        var started = Date()
        XCTAssertThrowsError(try PostgresTaskStore(url: "postgres://postgres@127.0.0.1:\(closedPort)/postgres?connect_timeout=2")) { error in
            guard case TaskStoreError.unavailable = error else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 2.5)

        try Self.withListener { port, _ in
            started = Date()
            XCTAssertThrowsError(try PostgresTaskStore(url: "postgres://postgres@127.0.0.1:\(port)/postgres?connect_timeout=2")) { error in
                guard case TaskStoreError.unavailable = error else { return XCTFail("\(error)") }
            }
            let elapsed = Date().timeIntervalSince(started)
            XCTAssertTrue((1.5...6).contains(elapsed), "gave up after \(elapsed) s")
        }
    }

    /// The server closes the store's connection (`pg_terminate_backend`); the next call
    /// reconnects and works.
    func testReconnectsAfterTheServerClosesTheConnection() throws {
        let store = try PostgresTaskStore(url: databaseURL)
        try insertTask(store, number: 1)
        let admin = try PostgresConnection(url: adminURL)
        let terminated = try admin.query("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
            """, [.text(try XCTUnwrap(databaseName))]).rows
        XCTAssertEqual(terminated.count, 1, "the store's one connection")
        // The backend sends its FATAL message before it exits.
        let deadline = Date().addingTimeInterval(5)
        while try admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = $1", [.text(try XCTUnwrap(databaseName))]).rows.count > 0,
              Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertEqual(try store.record(id: Self.taskID(1))?["status"], "pending")
        XCTAssertNoThrow(try store.queueDepth())
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(1))
    }

    /// PostgreSQL stopped: calls answer `.unavailable`; started again: the same store works
    /// without being made again. Needs `SCHNELL_TEST_POSTGRES_DIR`.
    func testSurvivesAServerRestart() throws {
        guard let directory = ProcessInfo.processInfo.environment["SCHNELL_TEST_POSTGRES_DIR"], !directory.isEmpty else {
            throw XCTSkip("set SCHNELL_TEST_POSTGRES_DIR (the DIR given to Tests/server/postgres.sh) to restart the server; .ci/run does")
        }
        let port = try XCTUnwrap(URLComponents(string: adminURL)?.port)
        let store = try PostgresTaskStore(url: databaseURL)
        try insertTask(store, number: 1)
        try Self.postgresScript(["stop", directory])
        var restarted = false
        defer { if !restarted { _ = try? Self.postgresScript(["start", directory, String(port)]) } }
        XCTAssertThrowsError(try store.queueDepth()) { error in
            guard case TaskStoreError.unavailable = error else { return XCTFail("\(error)") }
        }
        try Self.postgresScript(["start", directory, String(port)])
        restarted = true
        // A failed connect is retried after `reconnectIntervalSeconds`.
        let deadline = Date().addingTimeInterval(10)
        while (try? store.queueDepth()) == nil && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTAssertEqual(try store.queueDepth(), 1)
        XCTAssertEqual(try store.claim(replica: "a", leaseSeconds: 30, maxAttempts: 3)?.id, Self.taskID(1))
    }

    // MARK: Helpers

    /// `task_` and 32 hex digits, sorting by `number` like the server's ids sort by creation.
    static func taskID(_ number: Int) -> String {
        let hex = String(number, radix: 16)
        return "task_" + String(repeating: "0", count: 32 - hex.count) + hex
    }

    /// A pending task's record as the server makes it.
    static func pendingRecord(id: String, created: Int) -> [String: JSONValue] {
        ["id": .string(id), "task_id": .string(id), "object": "image.generation.task", "status": "pending",
         "created": .integer(Int64(created)), "poll_url": .string("/v1/tasks/\(id)"), "data": [],
         "progress": ["step": 0, "total_steps": 0, "percent": 0]]
    }

    /// Task `number`, created at 1_700_000_000 + `number`.
    private func insertTask(_ store: PostgresTaskStore, number: Int) throws {
        let id = Self.taskID(number)
        try store.insert(id: id, created: 1_700_000_000 + number, record: .object(Self.pendingRecord(id: id, created: 1_700_000_000 + number)),
                         body: Array("{\"prompt\":\"task \(number)\"}".utf8), contentType: "application/json")
    }

    /// A TCP socket on 127.0.0.1 that listens and never accepts (the kernel still completes
    /// connections); closed when `body` returns, so its port is then refused.
    private static func withListener<T>(_ body: (Int, Int32) throws -> T) throws -> T {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EIO) }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(descriptor, generic, length) == 0 && listen(descriptor, 4) == 0
                    && getsockname(descriptor, generic, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return try body(Int(UInt16(bigEndian: address.sin_port)), descriptor)
    }

    private static func postgresScript(_ arguments: [String]) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("server/postgres.sh")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script.path] + arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "postgres.sh \(arguments.joined(separator: " "))")
    }
}

/// What concurrent claimers got.
private final class ClaimLog: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var claimed: [(replica: Int, task: ClaimedTask)] = []
    private var errors: [String] = []

    func record(replica: Int, task: ClaimedTask) { lock.withLock { claimed.append((replica, task)) } }
    func record(error: Error) { lock.withLock { errors.append("\(error)") } }
    var entries: ([(replica: Int, task: ClaimedTask)], [String]) { lock.withLock { (claimed, errors) } }
}

/// The parts of `PostgresConnection` that need no server.
final class PostgresConnectionStringTests: XCTestCase {
    func testDefaultsAreAddedUnlessSet() {
        XCTAssertEqual(PostgresConnection.addingDefaults(to: "postgres://u@h:5432/db"),
                       "postgres://u@h:5432/db?connect_timeout=5&keepalives_idle=10&keepalives_interval=5&keepalives_count=3")
        XCTAssertEqual(PostgresConnection.addingDefaults(to: "postgresql://h/db?sslmode=disable&connect_timeout=2&keepalives_idle=1"),
                       "postgresql://h/db?sslmode=disable&connect_timeout=2&keepalives_idle=1&keepalives_interval=5&keepalives_count=3")
        XCTAssertEqual(PostgresConnection.addingDefaults(to: "host=h dbname=d connect_timeout=1"),
                       "host=h dbname=d connect_timeout=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3")
    }

    func testByteaHexForm() {
        XCTAssertEqual(PostgresRow.decodeHex(Array("\\x00ff7Fa0".utf8)), [0, 255, 127, 160])
        XCTAssertEqual(PostgresRow.decodeHex(Array("\\x".utf8)), [])
        XCTAssertNil(PostgresRow.decodeHex(Array("\\x0".utf8)))
        XCTAssertNil(PostgresRow.decodeHex(Array("\\x0g".utf8)))
        XCTAssertNil(PostgresRow.decodeHex(Array("00".utf8)))
    }
}
