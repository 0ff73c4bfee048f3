import Foundation

/// A store of async tasks and `url` images that several `schnell serve` replicas share
/// (`--task-store postgres://…`, `PostgresTaskStore`): any replica inserts a task, any replica
/// with a free device claims it under a lease it renews, and polling, listing, cancelling and
/// image downloads work from every replica. Without one, tasks and images live in
/// `--output-dir` (`OutputStore`) and run where they were created.
///
/// Every method may throw `TaskStoreError.unavailable` when the store cannot be reached; callers
/// answer 503 and try again on the next call (implementations reconnect by themselves).
protocol SharedTaskStore: AnyObject, Sendable {
    /// A new pending task: its response record (`data: []`, `status: pending`), and the request
    /// as received (body and media type), which the claiming replica parses again.
    func insert(id: String, created: Int, record: JSONValue, body: [UInt8], contentType: String) throws

    /// The oldest task no replica holds: a pending one, or a running one whose lease ran out (its
    /// replica died). It becomes `running`, held by `replica` until now + `leaseSeconds`, its
    /// attempts counted. A task whose lease ran out after `maxAttempts` claims is failed instead
    /// (code `task_abandoned`, the attempts named) and the next one is looked at.
    func claim(replica: String, leaseSeconds: Int, maxAttempts: Int) throws -> ClaimedTask?

    /// Extends `replica`'s lease on a running task and records its progress. `.cancelRequested`
    /// when a client asked to cancel it (the lease is extended still, so the replica can stop
    /// and record it), `.lost` when the replica no longer holds it (its lease ran out and
    /// another replica claimed it, or it was finished): the replica then stops and records nothing.
    func renew(id: String, replica: String, leaseSeconds: Int, step: Int, totalSteps: Int) throws -> LeaseState

    /// Writes a held task's final record (`completed`, `failed` or `cancelled`, with
    /// `completed_at`); false when `replica` no longer holds it (nothing written).
    func finish(id: String, replica: String, record: JSONValue) throws -> Bool

    /// The task's record as clients see it: the stored record with `status` and, while running,
    /// `progress` ({step, total_steps, percent}) and the `replica` running it from the store; nil
    /// when there is no such task.
    func record(id: String) throws -> JSONValue?

    /// Records newest first (ids sort by creation), optionally one status, ids below `after`.
    func list(limit: Int, status: String?, after: String?) throws -> (records: [JSONValue], hasMore: Bool)

    /// Cancels a pending task at once, or asks the replica running it to stop (`cancelling`).
    func cancel(id: String) throws -> StoreCancelOutcome

    /// Pending tasks, for `/metrics` and `/health` (which take an answer as the store being reachable).
    func queueDepth() throws -> Int

    /// An image file for `url` responses, served by every replica until `expiresAt` (Unix seconds).
    func storeImage(name: String, bytes: [UInt8], contentType: String, expiresAt: Int) throws
    func image(name: String) throws -> (bytes: [UInt8], contentType: String)?

    /// Deletes images past their expiry and finished tasks whose `completed_at` is older than
    /// `ttlSeconds`.
    func removeExpired(now: Int, ttlSeconds: Int) throws
}

/// A task a replica claimed: its record as inserted, the request to parse and run, and how many
/// claims it has had.
struct ClaimedTask: Sendable {
    var id: String
    var created: Int
    var record: JSONValue
    var body: [UInt8]
    var contentType: String
    var attempt: Int
}

enum LeaseState: Sendable, Equatable {
    case held, cancelRequested, lost
}

enum StoreCancelOutcome: Sendable {
    /// Pending: now `cancelled`, with its record.
    case cancelled(JSONValue)
    /// Running: `cancelling` until its replica stops it.
    case cancelling(JSONValue)
    /// Already `completed`, `failed` or `cancelled` (the status).
    case finished(String, JSONValue)
    case notFound
}

enum TaskStoreError: Error, CustomStringConvertible {
    /// The store cannot be reached now (connection refused, lost, timed out).
    case unavailable(String)
    /// The store answered with an error (a bug or a schema from another version).
    case failed(String)

    var description: String {
        switch self {
        case .unavailable(let reason): return "the task store is unavailable: \(reason)"
        case .failed(let reason): return "the task store failed: \(reason)"
        }
    }
}
