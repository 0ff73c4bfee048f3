import Foundation

/// The shared task store in PostgreSQL (`--task-store postgres://…`): tasks and images in two
/// tables, leases on the database's clock (`now()`), so replicas' clocks never decide who holds a
/// task. The engine creates and migrates the schema itself (`schnell_schema`).
///
/// A task's life: `pending` (inserted) → `running` (claimed: `replica`, `lease_until`,
/// `attempts` + 1; `renew` moves the lease and records the step) → `completed`, `failed` or
/// `cancelled` (`finish`, by the replica holding it). A running task whose lease ran out is
/// claimed again, or failed with `task_abandoned` once it has had `maxAttempts` claims, or
/// cancelled when a client had asked to cancel it. `cancelling` is not stored: it is `running`
/// with `cancel_requested`.
///
/// One connection behind a lock (`PostgresConnection`); every method is one statement or one
/// short transaction.
final class PostgresTaskStore: SharedTaskStore {
    private let connection: PostgresConnection

    /// Connects (`.unavailable` when the server cannot be reached) and brings the schema to
    /// `schemaVersion` (`.failed` when the database has a newer one).
    init(url: String) throws {
        connection = try PostgresConnection(url: url)
        try migrate()
    }

    // MARK: Schema

    /// Migration n (1-based) takes the schema from version n - 1 to n. Ids compare bytewise
    /// (`COLLATE "C"`): they sort by creation, and `list` pages by them.
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE schnell_tasks (
                id text COLLATE "C" PRIMARY KEY,
                created bigint NOT NULL,
                status text NOT NULL,
                record text NOT NULL,
                body bytea NOT NULL,
                content_type text NOT NULL,
                replica text,
                lease_until timestamptz,
                attempts int NOT NULL DEFAULT 0,
                step int NOT NULL DEFAULT 0,
                total_steps int NOT NULL DEFAULT 0,
                cancel_requested boolean NOT NULL DEFAULT false,
                completed_at bigint
            )
            """,
            "CREATE INDEX schnell_tasks_by_status ON schnell_tasks (status, created, id)",
            """
            CREATE TABLE schnell_images (
                name text PRIMARY KEY,
                bytes bytea NOT NULL,
                content_type text NOT NULL,
                expires_at bigint NOT NULL
            )
            """,
            "CREATE INDEX schnell_images_by_expiry ON schnell_images (expires_at)",
        ],
    ]
    static var schemaVersion: Int { migrations.count }

    /// Serializes migrations of replicas starting at once ("SCHNELL" in ASCII).
    private static let migrationLockKey = 0x53_43_48_4E_45_4C_4C

    private func migrate() throws {
        try connection.transaction { session in
            try session.query("SELECT pg_advisory_xact_lock($1::bigint)", [.integer(Self.migrationLockKey)])
            try session.query("CREATE TABLE IF NOT EXISTS schnell_schema (version int NOT NULL)")
            let version = try session.query("SELECT coalesce(max(version), 0) FROM schnell_schema").rows[0].integer(0)
            guard version <= Self.schemaVersion else {
                throw TaskStoreError.failed("the database's Schnell schema is version \(version), newer than this engine's "
                    + "\(Self.schemaVersion); run a newer schnell, or point --task-store at another database")
            }
            for next in version..<Self.schemaVersion {
                for statement in Self.migrations[next] { try session.query(statement) }
                try session.query("INSERT INTO schnell_schema (version) VALUES ($1::int)", [.integer(next + 1)])
            }
        }
    }

    // MARK: Tasks

    func insert(id: String, created: Int, record: JSONValue, body: [UInt8], contentType: String) throws {
        try connection.query("""
            INSERT INTO schnell_tasks (id, created, status, record, body, content_type)
            VALUES ($1, $2::bigint, 'pending', $3, $4::bytea, $5)
            """, [.text(id), .integer(created), .text(Self.text(record)), .bytes(body), .text(contentType)])
    }

    /// Oldest first (`created`, then `id`); rows another replica is claiming are skipped, not
    /// waited for. A task that cannot run again is settled in its own transaction and the loop
    /// goes on.
    func claim(replica: String, leaseSeconds: Int, maxAttempts: Int) throws -> ClaimedTask? {
        while true {
            switch try claimOldest(replica: replica, leaseSeconds: leaseSeconds, maxAttempts: maxAttempts) {
            case .claimed(let task): return task
            case .noTask: return nil
            case .settled: continue
            }
        }
    }

    private enum ClaimStep {
        case claimed(ClaimedTask), noTask, settled
    }

    private func claimOldest(replica: String, leaseSeconds: Int, maxAttempts: Int) throws -> ClaimStep {
        try connection.transaction { session in
            let rows = try session.query("""
                SELECT id, created::text, status, attempts::text, cancel_requested::text, record,
                       step::text, total_steps::text, body, content_type,
                       floor(extract(epoch FROM now()))::bigint::text
                FROM schnell_tasks
                WHERE status = 'pending' OR (status = 'running' AND lease_until < now())
                ORDER BY created, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
                """, binaryResults: true).rows
            guard let row = rows.first else { return .noTask }
            let id = try row.string(0)
            let attempts = try row.integer(3)
            let cancelRequested = try row.bool(4)
            if try row.string(2) == "running" && (cancelRequested || attempts >= maxAttempts) {
                // Its replica stopped renewing: a cancel asked for is granted, a task out of attempts failed.
                let status = cancelRequested ? "cancelled" : "failed"
                let now = try row.integer(10)
                var record = try Self.object(try row.string(5))
                record["status"] = .string(status)
                record["queue_position"] = nil
                record["progress"] = ImageServer.progress(step: try row.integer(6), totalSteps: try row.integer(7))
                record["completed_at"] = .integer(Int64(now))
                if !cancelRequested {
                    record["error"] = APIError.server(
                        "The task was abandoned after \(attempts) attempts: each replica that claimed it stopped renewing "
                            + "its lease (it died, hung, or lost the task store)", code: "task_abandoned").json["error"]
                }
                try session.query("""
                    UPDATE schnell_tasks SET status = $2, record = $3, completed_at = $4::bigint, lease_until = NULL
                    WHERE id = $1
                    """, [.text(id), .text(status), .text(Self.text(.object(record))), .integer(now)])
                return .settled
            }
            let attempt = try session.query("""
                UPDATE schnell_tasks
                SET status = 'running', replica = $2, lease_until = now() + $3::int * interval '1 second',
                    attempts = attempts + 1, step = 0, total_steps = 0
                WHERE id = $1
                RETURNING attempts
                """, [.text(id), .text(replica), .integer(leaseSeconds)]).rows[0].integer(0)
            return .claimed(ClaimedTask(id: id, created: try row.integer(1), record: .object(try Self.object(try row.string(5))),
                                        body: try row.bytes(8), contentType: try row.string(9), attempt: attempt))
        }
    }

    func renew(id: String, replica: String, leaseSeconds: Int, step: Int, totalSteps: Int) throws -> LeaseState {
        let rows = try connection.query("""
            UPDATE schnell_tasks
            SET lease_until = now() + $3::int * interval '1 second', step = $4::int, total_steps = $5::int
            WHERE id = $1 AND replica = $2 AND status = 'running'
            RETURNING cancel_requested
            """, [.text(id), .text(replica), .integer(leaseSeconds), .integer(step), .integer(totalSteps)]).rows
        guard let row = rows.first else { return .lost }
        return try row.bool(0) ? .cancelRequested : .held
    }

    func finish(id: String, replica: String, record: JSONValue) throws -> Bool {
        guard let status = record["status"]?.stringValue, Self.finalStatuses.contains(status) else {
            throw TaskStoreError.failed("a finished task's record needs a status of \(Self.finalStatuses.joined(separator: ", ")), "
                + "not \(record["status"].map { String(decoding: $0.serialized(), as: UTF8.self) } ?? "none")")
        }
        var completedAt = PostgresParameter.null
        if case .integer(let seconds) = record["completed_at"] { completedAt = .integer(Int(seconds)) }
        let result = try connection.query("""
            UPDATE schnell_tasks
            SET status = $3, record = $4, completed_at = coalesce($5::bigint, floor(extract(epoch FROM now()))::bigint),
                lease_until = NULL
            WHERE id = $1 AND replica = $2 AND status = 'running'
            """, [.text(id), .text(replica), .text(status), .text(Self.text(record)), completedAt])
        return result.affectedRows == 1
    }

    func record(id: String) throws -> JSONValue? {
        let rows = try connection.query("SELECT \(Self.recordColumns) FROM schnell_tasks AS t WHERE id = $1", [.text(id)]).rows
        return try rows.first.map(Self.clientRecord)
    }

    func list(limit: Int, status: String?, after: String?) throws -> (records: [JSONValue], hasMore: Bool) {
        let rows = try connection.query("""
            SELECT \(Self.recordColumns) FROM schnell_tasks AS t
            WHERE ($1::text IS NULL OR id < $1)
              AND ($2::text IS NULL OR (CASE WHEN status = 'running' AND cancel_requested THEN 'cancelling' ELSE status END) = $2)
            ORDER BY id DESC
            LIMIT $3::int
            """, [after.map(PostgresParameter.text) ?? .null, status.map(PostgresParameter.text) ?? .null,
                  .integer(limit + 1)]).rows
        return (try rows.prefix(limit).map(Self.clientRecord), rows.count > limit)
    }

    func cancel(id: String) throws -> StoreCancelOutcome {
        try connection.transaction { session in
            let rows = try session.query("""
                SELECT status, record, step, total_steps, cancel_requested, floor(extract(epoch FROM now()))::bigint, replica
                FROM schnell_tasks WHERE id = $1 FOR UPDATE
                """, [.text(id)]).rows
            guard let row = rows.first else { return .notFound }
            let stored = try row.string(1)
            switch try row.string(0) {
            case "pending":
                let now = try row.integer(5)
                var record = try Self.object(stored)
                record["status"] = "cancelled"
                record["queue_position"] = nil
                record["completed_at"] = .integer(Int64(now))
                try session.query("""
                    UPDATE schnell_tasks SET status = 'cancelled', record = $2, completed_at = $3::bigint WHERE id = $1
                    """, [.text(id), .text(Self.text(.object(record))), .integer(now)])
                return .cancelled(.object(record))
            case "running":
                try session.query("UPDATE schnell_tasks SET cancel_requested = true WHERE id = $1", [.text(id)])
                return .cancelling(try Self.clientRecord(stored: stored, status: "running", step: try row.integer(2),
                                                         totalSteps: try row.integer(3), cancelRequested: true,
                                                         replica: row.isNull(6) ? nil : try row.string(6)))
            case let status:
                return .finished(status, try Self.clientRecord(stored: stored, status: status, step: 0, totalSteps: 0,
                                                               cancelRequested: false))
            }
        }
    }

    func queueDepth() throws -> Int {
        try connection.query("SELECT count(*) FROM schnell_tasks WHERE status = 'pending'").rows[0].integer(0)
    }

    // MARK: Images

    func storeImage(name: String, bytes: [UInt8], contentType: String, expiresAt: Int) throws {
        try connection.query("""
            INSERT INTO schnell_images (name, bytes, content_type, expires_at) VALUES ($1, $2::bytea, $3, $4::bigint)
            ON CONFLICT (name) DO UPDATE
            SET bytes = excluded.bytes, content_type = excluded.content_type, expires_at = excluded.expires_at
            """, [.text(name), .bytes(bytes), .text(contentType), .integer(expiresAt)])
    }

    /// nil when there is no such image or it expired (on the database's clock), even before
    /// `removeExpired` deletes it.
    func image(name: String) throws -> (bytes: [UInt8], contentType: String)? {
        let rows = try connection.query("""
            SELECT bytes, content_type FROM schnell_images
            WHERE name = $1 AND expires_at > floor(extract(epoch FROM now()))
            """, [.text(name)], binaryResults: true).rows
        guard let row = rows.first else { return nil }
        return (try row.bytes(0), try row.string(1))
    }

    func removeExpired(now: Int, ttlSeconds: Int) throws {
        try connection.withSession { session in
            try session.query("DELETE FROM schnell_images WHERE expires_at <= $1::bigint", [.integer(now)])
            try session.query("""
                DELETE FROM schnell_tasks
                WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < $1::bigint - $2::bigint
                """, [.integer(now), .integer(ttlSeconds)])
        }
    }

    // MARK: Records

    static let finalStatuses = ["completed", "failed", "cancelled"]

    /// What `clientRecord` reads: status, record, step, total_steps, cancel_requested, the
    /// queue position of a pending task (1: claimed next, in claim order), and the replica.
    private static let recordColumns = """
        status, record, step, total_steps, cancel_requested,
        CASE WHEN status = 'pending' THEN
            (SELECT count(*) FROM schnell_tasks AS earlier
             WHERE earlier.status = 'pending' AND (earlier.created, earlier.id) <= (t.created, t.id))
        END,
        replica
        """

    private static func clientRecord(_ row: PostgresRow) throws -> JSONValue {
        try clientRecord(stored: try row.string(1), status: try row.string(0), step: try row.integer(2),
                         totalSteps: try row.integer(3), cancelRequested: try row.bool(4),
                         queuePosition: row.isNull(5) ? nil : try row.integer(5), replica: row.isNull(6) ? nil : try row.string(6))
    }

    /// The stored record as clients see it: `status` from the row (`cancelling` for a running
    /// task asked to stop), `progress` and the `replica` running it from the row while running,
    /// `queue_position` while pending.
    private static func clientRecord(stored: String, status: String, step: Int, totalSteps: Int, cancelRequested: Bool,
                                     queuePosition: Int? = nil, replica: String? = nil) throws -> JSONValue {
        var record = try object(stored)
        record["status"] = .string(status == "running" && cancelRequested ? "cancelling" : status)
        if status == "running" {
            record["progress"] = ImageServer.progress(step: step, totalSteps: totalSteps)
            record["replica"] = replica.map { .string($0) }
        }
        record["queue_position"] = status == "pending" ? queuePosition.map { .integer(Int64($0)) } : nil
        return .object(record)
    }

    private static func object(_ text: String) throws -> [String: JSONValue] {
        guard case .object(let members) = try? JSONValue.parse(Array(text.utf8)) else {
            throw TaskStoreError.failed("a stored task record is not a JSON object")
        }
        return members
    }

    private static func text(_ record: JSONValue) -> String {
        String(decoding: record.serialized(), as: UTF8.self)
    }
}
