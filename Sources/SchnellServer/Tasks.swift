import Foundation

/// Async tasks (`"async": true`): read (`GET /v1/tasks/{id}`), listed (`GET /v1/tasks`) and
/// cancelled (`DELETE /v1/tasks/{id}`, `POST /v1/tasks/{id}/cancel`).
///
/// A task object: `id` and `task_id`, `object` (`image.generation.task`), `status`, `created`,
/// `poll_url`, `data` (`[]` until completed), `progress` (`step`, `total_steps`, `percent`; 100
/// once completed), `queue_position` while pending (1: runs next), `completed_at` once finished,
/// `error` when failed, and `loras` in every state when the request applied any. Statuses:
/// pending, running, cancelling (a cancel was asked; the model stops at its next step), and the
/// final completed, failed and cancelled.
///
/// A live task is read from its queue ticket; a finished one from its record on disk, which is
/// written before the live entry goes, so every read sees one or the other.
extension ImageServer {
    static let taskStatuses = ["pending", "running", "cancelling", "completed", "failed", "cancelled"]

    /// `task_` and 32 hex digits: 14 of a microsecond clock that never repeats or goes back within
    /// the process, so ids sort by creation, then 72 random bits.
    func newTaskID() -> String {
        let microseconds = lock.withLock {
            lastTaskMicroseconds = max(lastTaskMicroseconds + 1, UInt64(Date().timeIntervalSince1970 * 1_000_000))
            return lastTaskMicroseconds
        }
        let clock = String(microseconds, radix: 16)
        return "task_" + String(repeating: "0", count: max(0, 14 - clock.count)) + clock + randomHex(bytes: 9)
    }

    func task(id: String) throws -> HTTPResponse {
        if let shared { return try sharedTask(id: id, store: shared) }
        guard let task = taskObject(id: id) else { throw APIError.taskNotFound(id) }
        return .json(task)
    }

    /// The task as a client sees it now; nil for an unknown or expired id.
    func taskObject(id: String) -> JSONValue? {
        guard let live = lock.withLock({ liveTasks[id] }) else { return storedTask(id: id) }
        let snapshot = queue.snapshot(live.ticket)
        var status = snapshot.status
        if ["completed", "failed", "cancelled"].contains(status) {
            // The final record is stored before the task leaves `liveTasks`; until it is, the task
            // reads as still running (or cancelling).
            if let stored = storedTask(id: id), let storedStatus = stored["status"]?.stringValue,
               ["completed", "failed", "cancelled"].contains(storedStatus) {
                return stored
            }
            status = status == "cancelled" ? "cancelling" : "running"
        }
        var record = taskRecord(id: id, created: live.created, status: status, step: snapshot.step, totalSteps: snapshot.total)
        record["loras"] = live.loras
        if let position = snapshot.position { record["queue_position"] = .integer(Int64(position)) }
        return .object(record)
    }

    func storedTask(id: String) -> JSONValue? {
        lock.withLock { unsavedTasks[id]?.record } ?? store.task(id: id)
    }

    /// Answers the task object (200): a pending task is `cancelled` at once, a running one
    /// `cancelling` until the model reaches its next step, a cancelled one as it is. A completed
    /// or failed task is a 409 naming its state; an unknown id a 404.
    func cancelTask(id: String) throws -> HTTPResponse {
        if let shared { return try sharedCancel(id: id, store: shared) }
        if let live = lock.withLock({ liveTasks[id] }) {
            // A removed job's final record is written before `cancel` returns.
            if queue.cancel(live.ticket) == .alreadyFinished {
                let status = queue.snapshot(live.ticket).status
                if status != "cancelled" { throw APIError.taskNotCancellable(id, status: status) }
            }
            return try task(id: id)
        }
        guard let stored = storedTask(id: id) else { throw APIError.taskNotFound(id) }
        let status = stored["status"]?.stringValue ?? "unknown"
        guard status == "cancelled" else { throw APIError.taskNotCancellable(id, status: status) }
        return .json(stored)
    }

    /// `GET /v1/tasks`: live and stored tasks, newest first, as `{"object": "list", "data": [...],
    /// "has_more": bool}`. Query: `limit` (1...100, default 20), `status` (one of
    /// `taskStatuses`), `after` (a task id: only older tasks, for the next page).
    /// Records are read newest first only until the page is full; the folder holds only
    /// unexpired tasks (`--image-ttl`).
    func listTasks(query: String?) throws -> HTTPResponse {
        let parameters = try QueryParameters(query).values
        var limit = 20
        if let text = parameters["limit"] {
            guard let value = Int(text), (1...100).contains(value) else {
                throw APIError.invalid("'limit' must be an integer from 1 to 100, not '\(text)'", param: "limit")
            }
            limit = value
        }
        let status = parameters["status"]
        if let status, !ImageServer.taskStatuses.contains(status) {
            throw APIError.invalid("'status' must be one of \(ImageServer.taskStatuses.joined(separator: ", ")), not '\(status)'",
                                   param: "status")
        }
        let after = parameters["after"]
        if let after, !OutputStore.isTaskID(after) {
            throw APIError.invalid("'after' must be a task id (task_ and 32 hex digits), not '\(after)'", param: "after")
        }
        if let shared { return try sharedList(limit: limit, status: status, after: after, store: shared) }
        let (live, unsaved) = lock.withLock { (Array(liveTasks.keys), Array(unsavedTasks.keys)) }
        let ids = Set(store.taskIDs() + live + unsaved).filter { id in after.map { id < $0 } ?? true }.sorted(by: >)
        var page: [JSONValue] = []
        var hasMore = false
        for id in ids {
            guard let task = taskObject(id: id), status == nil || task["status"]?.stringValue == status else { continue }
            guard page.count < limit else {
                hasMore = true
                break
            }
            page.append(task)
        }
        return .json(["object": "list", "data": .array(page), "has_more": .bool(hasMore)])
    }

    func taskRecord(id: String, created: Int, status: String, step: Int, totalSteps: Int) -> [String: JSONValue] {
        ["id": .string(id), "task_id": .string(id), "object": "image.generation.task", "status": .string(status),
         "created": .integer(Int64(created)), "poll_url": .string("/v1/tasks/\(id)"), "data": [],
         "progress": ImageServer.progress(step: step, totalSteps: totalSteps)]
    }

    /// A new task's record: `pending`, no step done of the request's steps, and its `loras` if any.
    func pendingRecord(id: String, created: Int, request: ImageRequest) -> [String: JSONValue] {
        var record = taskRecord(id: id, created: created, status: "pending", step: 0,
                                totalSteps: (request.generation.steps ?? 0) * request.generation.count)
        if !request.loras.isEmpty { record["loras"] = request.lorasJSON }
        return record
    }

    /// A task's `progress`: steps done, of all, and the whole percent (0...100).
    static func progress(step: Int, totalSteps: Int) -> JSONValue {
        let percent = totalSteps > 0 ? min(100, max(0, step * 100 / totalSteps)) : 0
        return ["step": .integer(Int64(step)), "total_steps": .integer(Int64(totalSteps)), "percent": .integer(Int64(percent))]
    }

    /// A finished task's record: `completed` with the response's fields (images stored for `url`),
    /// or `failed` with the error, or `cancelled`; `completed_at` now.
    func finalTaskRecord(id: String, created: Int, result: Result<GenerationOutput, APIError>, request: ImageRequest,
                         modelID: String, baseURL: String, submitted: Date, step: Int, total: Int) -> [String: JSONValue] {
        var record: [String: JSONValue]
        do {
            let output = try result.get()
            let body = try responseBody(output, request: request, modelID: modelID, baseURL: baseURL, submitted: submitted)
            record = taskRecord(id: id, created: created, status: "completed", step: total, totalSteps: total)
            record.merge(body) { current, _ in current }
            record["data"] = body["data"]
        } catch {
            let apiError = (error as? APIError) ?? .server("\(error)")
            record = taskRecord(id: id, created: created, status: apiError == .cancelled ? "cancelled" : "failed",
                                step: step, totalSteps: total)
            if apiError != .cancelled { record["error"] = apiError.json["error"] }
            if !request.loras.isEmpty { record["loras"] = request.lorasJSON }
        }
        record["completed_at"] = .integer(Int64(Date().timeIntervalSince1970))
        return record
    }

    /// Runs when an async task ends (on the generation thread, or on the thread that cancelled or
    /// stopped it): the record goes to disk first, then the live entry goes. A record that cannot
    /// be written is logged and replaced, in memory, by a failure that says so.
    func finishTask(id: String, created: Int, result: Result<GenerationOutput, APIError>, request: ImageRequest,
                    modelID: String, baseURL: String, submitted: Date) {
        let snapshot = lock.withLock { liveTasks[id]?.ticket }.map { queue.snapshot($0) }
        let total = snapshot?.total ?? 0
        let record = finalTaskRecord(id: id, created: created, result: result, request: request, modelID: modelID, baseURL: baseURL,
                                     submitted: submitted, step: snapshot?.step ?? 0, total: total)
        do {
            try store.saveTask(id: id, record: .object(record))
            lock.withLock { liveTasks[id] = nil }
        } catch {
            log("error: the record of task \(id) could not be written: \(error)")
            var failed = taskRecord(id: id, created: created, status: "failed", step: snapshot?.step ?? 0, totalSteps: total)
            failed["error"] = APIError.server("The task finished but its record could not be written to the output folder: \(error)",
                                              code: "task_record_unwritable").json["error"]
            failed["completed_at"] = record["completed_at"]
            lock.withLock {
                unsavedTasks[id] = (.object(failed), Date())
                liveTasks[id] = nil
            }
        }
    }
}

extension APIError {
    static func taskNotFound(_ id: String) -> APIError {
        .notFound("No task '\(id)' (it may have expired)")
    }

    static func taskNotCancellable(_ id: String, status: String) -> APIError {
        APIError(status: 409, message: "The task '\(id)' is already \(status); only pending or running tasks can be cancelled",
                 type: "invalid_request_error", param: nil, code: "task_not_cancellable")
    }
}
