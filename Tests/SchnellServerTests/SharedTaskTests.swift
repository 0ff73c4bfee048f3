import Foundation
import Schnell
@testable import SchnellServer
import XCTest

/// A `SharedTaskStore` in memory with the PostgreSQL store's rules (leases on a clock, attempts,
/// cancel requests), so replicas in one process can share it; `reachable` false makes every call
/// throw `.unavailable`, as a stopped database does.
final class MemoryTaskStore: SharedTaskStore, @unchecked Sendable {
    struct Row {
        var created: Int
        var status: String
        var record: [String: JSONValue]
        var body: [UInt8]
        var contentType: String
        var replica: String?
        var leaseUntil = Date.distantPast
        var attempts = 0
        var step = 0
        var total = 0
        var cancelRequested = false
    }

    private let lock = NSLock()
    private var rows: [String: Row] = [:]
    private var images: [String: (bytes: [UInt8], contentType: String, expiresAt: Int)] = [:]
    private var up = true

    var reachable: Bool {
        get { lock.withLock { up } }
        set { lock.withLock { up = newValue } }
    }

    private func available() throws {
        guard up else { throw TaskStoreError.unavailable("connection refused") }
    }

    func insert(id: String, created: Int, record: JSONValue, body: [UInt8], contentType: String) throws {
        try lock.withLock {
            try available()
            guard case .object(let members) = record else { throw TaskStoreError.failed("record is not an object") }
            rows[id] = Row(created: created, status: "pending", record: members, body: body, contentType: contentType)
        }
    }

    func claim(replica: String, leaseSeconds: Int, maxAttempts: Int) throws -> ClaimedTask? {
        try lock.withLock {
            try available()
            for id in rows.keys.sorted() {
                guard var row = rows[id] else { continue }
                let expired = row.status == "running" && row.leaseUntil < Date()
                guard row.status == "pending" || expired else { continue }
                if expired && row.attempts >= maxAttempts {
                    row.status = "failed"
                    row.record["status"] = "failed"
                    row.record["error"] = APIError.server("abandoned after \(row.attempts) attempts", code: "task_abandoned").json["error"]
                    rows[id] = row
                    continue
                }
                row.status = "running"
                row.replica = replica
                row.leaseUntil = Date(timeIntervalSinceNow: Double(leaseSeconds))
                row.attempts += 1
                rows[id] = row
                return ClaimedTask(id: id, created: row.created, record: .object(row.record), body: row.body, contentType: row.contentType,
                                   attempt: row.attempts)
            }
            return nil
        }
    }

    func renew(id: String, replica: String, leaseSeconds: Int, step: Int, totalSteps: Int) throws -> LeaseState {
        try lock.withLock {
            try available()
            guard var row = rows[id], row.status == "running", row.replica == replica else { return .lost }
            row.leaseUntil = Date(timeIntervalSinceNow: Double(leaseSeconds))
            row.step = step
            row.total = totalSteps
            rows[id] = row
            return row.cancelRequested ? .cancelRequested : .held
        }
    }

    func finish(id: String, replica: String, record: JSONValue) throws -> Bool {
        try lock.withLock {
            try available()
            guard var row = rows[id], row.status == "running", row.replica == replica, case .object(let members) = record else { return false }
            row.record = members
            row.status = members["status"]?.stringValue ?? "failed"
            rows[id] = row
            return true
        }
    }

    func record(id: String) throws -> JSONValue? {
        try lock.withLock {
            try available()
            return rows[id].map(Self.visible)
        }
    }

    private static func visible(_ row: Row) -> JSONValue {
        var record = row.record
        record["status"] = .string(row.status == "running" && row.cancelRequested ? "cancelling" : row.status)
        if row.status == "running" {
            record["replica"] = row.replica.map { .string($0) }
            record["progress"] = ImageServer.progress(step: row.step, totalSteps: row.total)
        }
        return .object(record)
    }

    func list(limit: Int, status: String?, after: String?) throws -> (records: [JSONValue], hasMore: Bool) {
        try lock.withLock {
            try available()
            let ids = rows.keys.filter { id in after.map { id < $0 } ?? true }.sorted(by: >)
                .filter { status == nil || rows[$0]?.status == status }
            return (ids.prefix(limit).compactMap { rows[$0].map(Self.visible) }, ids.count > limit)
        }
    }

    func cancel(id: String) throws -> StoreCancelOutcome {
        try lock.withLock {
            try available()
            guard var row = rows[id] else { return .notFound }
            switch row.status {
            case "pending":
                row.status = "cancelled"
                row.record["status"] = "cancelled"
                row.record["completed_at"] = .integer(Int64(Date().timeIntervalSince1970))
                rows[id] = row
                return .cancelled(Self.visible(row))
            case "running":
                row.cancelRequested = true
                rows[id] = row
                return .cancelling(Self.visible(row))
            default:
                return .finished(row.status, Self.visible(row))
            }
        }
    }

    func queueDepth() throws -> Int {
        try lock.withLock {
            try available()
            return rows.values.filter { $0.status == "pending" }.count
        }
    }

    func storeImage(name: String, bytes: [UInt8], contentType: String, expiresAt: Int) throws {
        try lock.withLock {
            try available()
            images[name] = (bytes, contentType, expiresAt)
        }
    }

    func image(name: String) throws -> (bytes: [UInt8], contentType: String)? {
        try lock.withLock {
            try available()
            guard let image = images[name], image.expiresAt > Int(Date().timeIntervalSince1970) else { return nil }
            return (image.bytes, image.contentType)
        }
    }

    func removeExpired(now: Int, ttlSeconds: Int) throws {
        try lock.withLock {
            try available()
            images = images.filter { $0.value.expiresAt > now }
        }
    }

    /// A replica that claimed `id` and died: its lease runs out now.
    func expireLease(_ id: String) {
        lock.withLock { rows[id]?.leaseUntil = .distantPast }
    }

    func row(_ id: String) -> Row? { lock.withLock { rows[id] } }
}

/// Two replicas in one process sharing one store: tasks created on one are polled, listed and
/// cancelled on the other, run on whichever is free, survive a replica that dies, and a store
/// that goes away answers 503 while synchronous requests go on.
final class SharedTaskTests: XCTestCase {
    private func replicas(_ store: MemoryTaskStore, stepSeconds: Double = 0, lease: Int = 30) throws -> (TestServer, TestServer) {
        let configure: (String) -> (inout ServerOptions) -> Void = { name in
            { options in
                options.replicaName = name
                options.taskLeaseSeconds = lease
                options.taskAttempts = 2
            }
        }
        return (try TestServer(generator: FakeGenerator(stepSeconds: stepSeconds), shared: store, configure: configure("a")),
                try TestServer(generator: FakeGenerator(stepSeconds: stepSeconds), shared: store, configure: configure("b")))
    }

    private func poll(_ client: RawClient, _ id: String, until statuses: Set<String>) throws -> [String: Any] {
        let deadline = Date(timeIntervalSinceNow: 20)
        var task: [String: Any] = [:]
        while Date() < deadline {
            task = try client.get("/v1/tasks/\(id)").json
            if let status = task["status"] as? String, statuses.contains(status) { return task }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("task \(id) stayed \(task["status"] ?? "absent")")
        return task
    }

    func testATaskCreatedOnOneReplicaIsReadAndItsImageServedByTheOther() throws {
        let store = MemoryTaskStore()
        let (a, b) = try replicas(store)
        let created = try a.client.postJSON("/v1/images/generations", ["prompt": "a fox", "size": "64x64", "async": true, "seed": 4])
        XCTAssertEqual(created.status, 202, String(decoding: created.body, as: UTF8.self))
        XCTAssertEqual(created.json["status"] as? String, "pending")
        XCTAssertEqual((created.json["data"] as? [Any])?.count, 0)
        let id = try XCTUnwrap(created.json["id"] as? String)
        let done = try poll(b.client, id, until: ["completed", "failed"])
        XCTAssertEqual(done["status"] as? String, "completed", "\(done)")
        XCTAssertTrue(["a", "b"].contains(done["replica"] as? String ?? ""))
        let link = try XCTUnwrap((done["data"] as? [[String: Any]])?.first?["url"] as? String)
        for replica in [a, b] {
            let file = try replica.client.get(try XCTUnwrap(URLComponents(string: link)?.path))
            XCTAssertEqual(file.status, 200)
            XCTAssertEqual(Array(file.body.prefix(8)), pngSignature)
        }
        let listed = try b.client.get("/v1/tasks?limit=5").json
        XCTAssertEqual((listed["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [id])
    }

    func testTasksSpreadOverBothReplicasAndAllComplete() throws {
        let store = MemoryTaskStore()
        let (a, b) = try replicas(store, stepSeconds: 0.05)
        let ids = try (0..<10).map { index in
            let client = index % 2 == 0 ? a.client : b.client
            return try XCTUnwrap(client.postJSON("/v1/images/generations", ["prompt": "t\(index)", "size": "64x64", "async": true,
                                                                            "steps": 2]).json["id"] as? String)
        }
        let finished = try ids.map { try poll(a.client, $0, until: ["completed", "failed"]) }
        XCTAssertEqual(finished.compactMap { $0["status"] as? String }, Array(repeating: "completed", count: 10))
        XCTAssertEqual(Set(finished.compactMap { $0["replica"] as? String }), ["a", "b"], "both replicas ran tasks")
        XCTAssertEqual(ids.compactMap { store.row($0)?.attempts }, Array(repeating: 1, count: 10), "each task ran once")
    }

    func testCancellingFromTheOtherReplica() throws {
        let store = MemoryTaskStore()
        let (a, b) = try replicas(store, stepSeconds: 0.2)
        let running = try XCTUnwrap(a.client.postJSON("/v1/images/generations", ["prompt": "r", "size": "64x64", "async": true, "steps": 8])
            .json["id"] as? String)
        _ = try poll(b.client, running, until: ["running"])
        let cancelled = try b.client.request("DELETE", "/v1/tasks/\(running)")
        XCTAssertEqual(cancelled.status, 200, String(decoding: cancelled.body, as: UTF8.self))
        XCTAssertEqual(cancelled.json["status"] as? String, "cancelling")
        let final = try poll(a.client, running, until: ["cancelled", "completed", "failed"])
        XCTAssertEqual(final["status"] as? String, "cancelled")
        XCTAssertEqual(try b.client.request("POST", "/v1/tasks/\(running)/cancel").status, 200, "cancelling a cancelled task again")
        assertError(try b.client.request("DELETE", "/v1/tasks/task_00000000000000000000000000000000"), status: 404, code: "not_found")
    }

    func testATaskWhoseReplicaDiedIsClaimedAgainOrAbandoned() throws {
        let store = MemoryTaskStore()
        let once = "task_00000000000000000000000000000001", twice = "task_00000000000000000000000000000002"
        for id in [once, twice] {
            try store.insert(id: id, created: 1, record: ["id": .string(id), "status": "pending", "data": []],
                             body: Array(#"{"prompt": "x", "size": "64x64", "async": true}"#.utf8), contentType: "application/json")
        }
        // Replicas that claimed them and died: `once` after one claim, `twice` after two (the limit).
        XCTAssertEqual(try store.claim(replica: "dead", leaseSeconds: 60, maxAttempts: 2)?.id, once)
        XCTAssertEqual(try store.claim(replica: "dead", leaseSeconds: 60, maxAttempts: 2)?.id, twice)
        store.expireLease(twice)
        XCTAssertEqual(try store.claim(replica: "dead", leaseSeconds: 60, maxAttempts: 2)?.id, twice)
        store.expireLease(once)
        store.expireLease(twice)
        let a = try TestServer(generator: FakeGenerator(), shared: store) { options in
            options.replicaName = "a"
            options.taskAttempts = 2
        }
        let reclaimed = try poll(a.client, once, until: ["completed", "failed"])
        XCTAssertEqual(reclaimed["status"] as? String, "completed", "\(reclaimed)")
        XCTAssertEqual(reclaimed["attempt"] as? Int, 2)
        XCTAssertEqual(reclaimed["replica"] as? String, "a")
        let abandoned = try poll(a.client, twice, until: ["completed", "failed"])
        XCTAssertEqual(abandoned["status"] as? String, "failed")
        XCTAssertEqual((abandoned["error"] as? [String: Any])?["code"] as? String, "task_abandoned")
    }

    func testAStoreThatGoesAwayIsA503ForAsyncWhileSyncGoesOn() throws {
        let store = MemoryTaskStore()
        let (a, _) = try replicas(store)
        store.reachable = false
        assertError(try a.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "async": true]),
                    status: 503, code: "task_store_unavailable")
        assertError(try a.client.get("/v1/tasks/task_00000000000000000000000000000001"), status: 503, code: "task_store_unavailable")
        XCTAssertEqual(try a.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64"]).status, 200)
        XCTAssertEqual(try a.client.get("/health").json["task_store"] as? String, "unreachable")
        XCTAssertTrue(String(decoding: try a.client.get("/metrics").body, as: UTF8.self).contains("\nschnell_task_store_up 0\n"))
        store.reachable = true
        let created = try a.client.postJSON("/v1/images/generations", ["prompt": "x", "size": "64x64", "async": true])
        XCTAssertEqual(created.status, 202)
        XCTAssertEqual(try poll(a.client, try XCTUnwrap(created.json["id"] as? String), until: ["completed", "failed"])["status"] as? String,
                       "completed")
        XCTAssertEqual(try a.client.get("/health").json["task_store"] as? String, "reachable")
        let metrics = String(decoding: try a.client.get("/metrics").body, as: UTF8.self)
        XCTAssertTrue(metrics.contains("\nschnell_task_store_up 1\n") && metrics.contains("\nschnell_task_store_pending 0\n"), metrics)
    }

    func testTaskStoreFlags() throws {
        let (options, rest) = try ServerOptions.parse(["--task-store", "postgres://u:p@db:5432/schnell", "--replica", "gpu-1",
                                                       "--task-lease=10", "--task-attempts", "5", "--port", "0", "--other"])
        XCTAssertEqual(options.taskStoreURL, "postgres://u:p@db:5432/schnell")
        XCTAssertEqual(options.replicaName, "gpu-1")
        XCTAssertEqual(options.taskLeaseSeconds, 10)
        XCTAssertEqual(options.taskAttempts, 5)
        XCTAssertEqual(rest, ["--other"])
        for (bad, message) in [(["--task-store", "mysql://x"], "--task-store must be a PostgreSQL URL"),
                               (["--replica", "a b"], "--replica must be"), (["--task-lease", "1"], "--task-lease must be"),
                               (["--task-attempts", "0"], "--task-attempts must be")] {
            XCTAssertThrowsError(try ServerOptions.parse(bad)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(bad): \(error)")
            }
        }
        // A store that cannot be reached at start stops the start with the reason, bounded by the connect timeout.
        var unreachable = ServerOptions()
        unreachable.port = 0
        unreachable.outputDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-\(UUID().uuidString)").path
        unreachable.taskStoreURL = "postgres://postgres@127.0.0.1:1/schnell"
        XCTAssertThrowsError(try ImageServer(options: unreachable)) { error in
            XCTAssertTrue("\(error)".contains("unavailable"), "\(error)")
        }
    }

    func testAReplicaStillLoadingItsModelClaimsNothing() throws {
        let store = MemoryTaskStore()
        let loading = try TestServer(generator: nil, shared: store) { $0.replicaName = "loading" }
        try store.insert(id: "task_00000000000000000000000000000001", created: 1,
                         record: ["id": "task_00000000000000000000000000000001", "status": "pending", "data": []],
                         body: Array(#"{"prompt": "x", "size": "64x64", "async": true}"#.utf8), contentType: "application/json")
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(store.row("task_00000000000000000000000000000001")?.status, "pending")
        loading.server.setGenerator(FakeGenerator())
        XCTAssertEqual(try poll(loading.client, "task_00000000000000000000000000000001", until: ["completed", "failed"])["status"] as? String,
                       "completed")
    }
}
