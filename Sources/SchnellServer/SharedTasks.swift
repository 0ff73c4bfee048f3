import Foundation
import Schnell

/// Async tasks through a shared store (`--task-store`): the replica that receives a request checks
/// it as always (a bad one is a 400 there), then stores it as received; whichever replica has
/// its device free claims it (`claimTasks`), parses it again with the same code, runs it, renews
/// its lease while it runs, and writes the final record and the images to the store. Polling,
/// listing, cancelling and image downloads read the store, so they work on every replica.
/// Synchronous and streamed requests stay on the replica that received them.
extension ImageServer {
    /// `POST …` with `async: true` on a replica with a shared store: the pending record and the
    /// request go to the store (503 `task_store_unavailable` when it cannot be reached).
    func insertShared(_ imageRequest: ImageRequest, kind: RequestKind, request: HTTPRequest, store shared: any SharedTaskStore) throws -> HTTPResponse {
        let id = newTaskID()
        let created = Int(Date().timeIntervalSince1970)
        var pending = pendingRecord(id: id, created: created, request: imageRequest)
        pending["endpoint"] = .string(kind.path)
        try storeCall { try shared.insert(id: id, created: created, record: .object(pending), body: request.body,
                                          contentType: request.header("content-type") ?? "application/json") }
        return .json(.object(pending), status: 202)
    }

    /// The claiming loop of a replica with a shared store: whenever its model is loaded and its
    /// queue is empty, claim the oldest waiting task and run it; poll every quarter second when
    /// there is none; back off a second when the store cannot be reached (said once in the log
    /// until it answers again).
    func claimTasks() {
        guard let shared else { return }
        var unreachable = false
        while !isStopping {
            // A replica still loading its model takes nothing: it would only fail the task.
            guard generator != nil, queue.isIdle else {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            do {
                let claimed = try shared.claim(replica: replica, leaseSeconds: options.taskLeaseSeconds, maxAttempts: options.taskAttempts)
                if unreachable { log("the task store answers again") }
                unreachable = false
                guard let claimed else {
                    Thread.sleep(forTimeInterval: 0.25)
                    continue
                }
                run(claimed, store: shared)
            } catch {
                if !unreachable { log("warning: cannot claim tasks: \(error); retrying every second") }
                unreachable = true
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    /// Parses a claimed task's request as its endpoint would and runs it here.
    private func run(_ claimed: ClaimedTask, store shared: any SharedTaskStore) {
        let endpoint = claimed.record["endpoint"]?.stringValue ?? RequestKind.generation.path
        let request = HTTPRequest(method: "POST", path: endpoint, query: nil, headers: ["content-type": claimed.contentType],
                                  body: claimed.body, requestID: claimed.id)
        do {
            _ = try endpoint == RequestKind.edit.path ? edit(request, claimed: claimed) : generate(request, claimed: claimed)
        } catch {
            // Stopping: the lease runs out and another replica claims the task again.
            if let failure = error as? APIError, failure == .shuttingDown { return }
            // The request no longer parses here (another model, or LoRAs this replica lacks).
            let failure = (error as? APIError) ?? .server("\(error)")
            var record = taskRecord(id: claimed.id, created: claimed.created, status: "failed", step: 0, totalSteps: 0)
            record["error"] = failure.json["error"]
            record["completed_at"] = .integer(Int64(Date().timeIntervalSince1970))
            record["replica"] = .string(replica)
            _ = try? shared.finish(id: claimed.id, replica: replica, record: .object(record))
        }
    }

    /// Runs a claimed task's parsed request on the local queue, renewing the lease every second
    /// (or three times per lease period, if shorter) with the progress; stops the generation when a client cancels it or
    /// the lease is lost. The final record goes to the store unless the lease was lost (another
    /// replica has the task) or the server is stopping (the lease runs out and another replica
    /// claims it again).
    func runClaimed(_ imageRequest: ImageRequest, kind: RequestKind, task: ClaimedTask, generator: any ImageGenerating,
                    prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)?) throws -> HTTPResponse {
        guard let shared else { throw APIError.server("no task store") }
        let submitted = Date()
        let ticket = try queue.submit(imageRequest.generation, prepare: prepare, generator: generator)
        // At least once a second, so a cancel from any replica stops the generation within about a second.
        let renewEvery = min(1, Double(options.taskLeaseSeconds) / 3)
        var lease = LeaseState.held
        var final: Result<GenerationOutput, APIError>
        while true {
            if let result = queue.wait(for: ticket, seconds: renewEvery) {
                final = result
                break
            }
            let snapshot = queue.snapshot(ticket)
            // A store out of reach keeps the lease as it was: it runs out only if the store stays away.
            guard let state = try? shared.renew(id: task.id, replica: replica, leaseSeconds: options.taskLeaseSeconds,
                                                step: snapshot.step, totalSteps: snapshot.total), state != lease else { continue }
            lease = state
            // Cancelled by a client, or lost to another replica: stop at the next step.
            _ = queue.cancel(ticket)
        }
        if lease == .lost { return .json(["status": "lost"]) }
        if lease == .cancelRequested { final = .failure(.cancelled) }
        if case .failure(let error) = final, error == .shuttingDown { return .json(["status": "released"]) }
        let snapshot = queue.snapshot(ticket)
        var record = finalTaskRecord(id: task.id, created: task.created, result: final, request: imageRequest,
                                     modelID: generator.model.id, baseURL: options.publicURL ?? boundURL, submitted: submitted,
                                     step: snapshot.step, total: snapshot.total)
        record["endpoint"] = .string(kind.path)
        record["replica"] = .string(replica)
        record["attempt"] = .integer(Int64(task.attempt))
        do {
            if try !shared.finish(id: task.id, replica: replica, record: .object(record)) {
                log("task \(task.id) finished here after its lease went to another replica; this result is dropped")
            }
        } catch {
            log("error: the record of task \(task.id) could not be written to the task store: \(error); another replica will run it again when the lease runs out")
        }
        return .json(.object(record))
    }

    // MARK: - Reading, listing and cancelling through the store

    func sharedTask(id: String, store shared: any SharedTaskStore) throws -> HTTPResponse {
        guard let record = try storeCall({ try shared.record(id: id) }) else { throw APIError.taskNotFound(id) }
        return .json(record)
    }

    func sharedCancel(id: String, store shared: any SharedTaskStore) throws -> HTTPResponse {
        switch try storeCall({ try shared.cancel(id: id) }) {
        case .cancelled(let record), .cancelling(let record):
            return .json(record)
        case .finished(let status, let record):
            guard status == "cancelled" else { throw APIError.taskNotCancellable(id, status: status) }
            return .json(record)
        case .notFound:
            throw APIError.taskNotFound(id)
        }
    }

    func sharedList(limit: Int, status: String?, after: String?, store shared: any SharedTaskStore) throws -> HTTPResponse {
        let (records, hasMore) = try storeCall { try shared.list(limit: limit, status: status, after: after) }
        return .json(["object": "list", "data": .array(records), "has_more": .bool(hasMore)])
    }

    /// A `url` image: into the shared store when there is one (served by every replica until
    /// `--image-ttl` passes), else into the output folder. Returns the file name.
    func storeImage(_ bytes: [UInt8], fileExtension: String) throws -> String {
        guard let shared else { return try store.storeImage(bytes, fileExtension: fileExtension) }
        let name = OutputStore.newImageName(fileExtension: fileExtension)
        try shared.storeImage(name: name, bytes: bytes, contentType: OutputStore.contentTypes[fileExtension] ?? "application/octet-stream",
                              expiresAt: Int(Date().timeIntervalSince1970) + options.imageTTLSeconds)
        return name
    }

    func imageFile(named name: String) throws -> (bytes: [UInt8], contentType: String)? {
        guard let shared else { return store.image(named: name).map { ($0.bytes, $0.contentType) } }
        guard OutputStore.imageContentType(name: name) != nil else { return nil }
        return try storeCall { try shared.image(name: name) }
    }

    /// A store call whose failure to reach the store is the client's 503, and any other store
    /// error a 500. The reason (database host, SQL) stays in the server's log, not in answers.
    func storeCall<T>(_ call: () throws -> T) throws -> T {
        do {
            return try call()
        } catch TaskStoreError.unavailable {
            throw APIError(status: 503, message: "The task store cannot be reached; synchronous requests still work, async ones can be retried",
                           type: "server_error", param: nil, code: "task_store_unavailable", headers: [("Retry-After", "5")])
        } catch let error as TaskStoreError {
            log("error: \(error)")
            throw APIError.server("The task store failed (the server log says why)", code: "task_store_failed")
        }
    }
}

extension RequestKind {
    var path: String { self == .generation ? "/v1/images/generations" : "/v1/images/edits" }
}
