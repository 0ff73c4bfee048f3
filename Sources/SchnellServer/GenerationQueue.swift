import Foundation
import Schnell

/// What a finished generation hands back to whoever waits for it.
struct GenerationOutput: Sendable {
    /// The images, the settings used and the model's own per-stage seconds.
    var result: GenerationResult
    /// Seconds between submission and the start of generation.
    var queueSeconds: Double
    /// Seconds inside `generate`.
    var generationSeconds: Double
}

/// One submitted job. Its mutable fields are guarded by the owning queue's condition lock.
final class GenerationTicket: @unchecked Sendable {
    enum State {
        case queued, running, finished(Result<GenerationOutput, APIError>)
    }

    let request: GenerationRequest
    /// Completes `request` on the worker just before it runs (edits decode their uploads here, so
    /// only an admitted job decodes, one at a time); an `APIError` it throws fails the job.
    let prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)?
    let generator: any ImageGenerating
    let submitted = Date()
    /// Receives the model's previews on the worker thread (streaming requests).
    let preview: (@Sendable (PreviewImage) -> Void)?
    /// Called once the ticket has finished, on the worker thread or on the thread that cancelled
    /// or shut down the queue (async tasks persist here).
    let onFinish: (@Sendable (Result<GenerationOutput, APIError>) -> Void)?
    fileprivate(set) var state = State.queued
    fileprivate(set) var step = 0
    fileprivate(set) var totalSteps: Int
    /// Asks the model to stop at its next step (a cancel, a shutdown or a client that left).
    fileprivate var stopRequested = false
    /// Set by `cancel(_:)`: the job ends `.cancelled` whatever else happens to it.
    fileprivate(set) var cancelled = false

    init(request: GenerationRequest, prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)?,
         generator: any ImageGenerating, preview: (@Sendable (PreviewImage) -> Void)?,
         onFinish: (@Sendable (Result<GenerationOutput, APIError>) -> Void)?) {
        self.request = request
        self.prepare = prepare
        self.generator = generator
        self.preview = preview
        self.onFinish = onFinish
        // Until the model reports its own count (edits run fewer steps).
        self.totalSteps = (request.steps ?? 0) * request.count
    }
}

/// The single FIFO generation queue: one worker thread runs jobs one at a time, so two
/// generations never share the device. At most `capacity` jobs wait behind the running one.
final class GenerationQueue: @unchecked Sendable {
    /// A ticket as a task reports it: `status` is pending, running, cancelling (asked to stop,
    /// not yet stopped), completed, failed or cancelled; `position` is 1 for the next job to run.
    struct Snapshot {
        var status: String
        var step: Int
        var total: Int
        var position: Int?
    }

    /// What `cancel(_:)` did.
    enum CancelOutcome: Equatable {
        /// The job was waiting and is gone; it finished `.cancelled` before `cancel` returned.
        case removed
        /// The job is running and stops at its next step.
        case stopping
        /// The job had already finished; nothing changed.
        case alreadyFinished
    }

    private let condition = NSCondition()
    private let capacity: Int
    private let metrics: Metrics
    // Guarded by `condition`.
    private var waiting: [GenerationTicket] = []
    private var running: GenerationTicket?
    private var stopping = false
    private var worker: Thread?
    /// Set by the worker thread as its last act.
    private var workerExited = false

    init(capacity: Int, metrics: Metrics) {
        self.capacity = capacity
        self.metrics = metrics
    }

    func start() {
        condition.lock()
        defer { condition.unlock() }
        guard worker == nil, !stopping else { return }
        let thread = Thread { [self] in self.work() }
        thread.name = "schnell-generation"
        worker = thread
        thread.start()
    }

    /// Refuses new jobs, fails every waiting one with 503, asks the running one to cancel at its
    /// next step and waits up to `timeoutSeconds` for the worker thread to exit. A job that
    /// outlives the wait is failed with 503 here (its client answered, its task recorded) and
    /// false is returned: the worker is still inside the model. Later calls only report that.
    @discardableResult
    func shutdown(timeoutSeconds: Double) -> Bool {
        condition.lock()
        if stopping {
            defer { condition.unlock() }
            return worker == nil || workerExited
        }
        stopping = true
        let dropped = waiting
        waiting.removeAll()
        running?.stopRequested = true
        for ticket in dropped { ticket.state = .finished(.failure(.shuttingDown)) }
        metrics.setQueueDepth(0)
        condition.broadcast()
        condition.unlock()
        for ticket in dropped { ticket.onFinish?(.failure(.shuttingDown)) }

        condition.lock()
        let deadline = Date(timeIntervalSinceNow: timeoutSeconds)
        while worker != nil && !workerExited && condition.wait(until: deadline) {}
        let exited = worker == nil || workerExited
        let abandoned = exited ? nil : running
        let abandonedResult = Result<GenerationOutput, APIError>.failure(abandoned?.cancelled == true ? .cancelled : .shuttingDown)
        abandoned?.state = .finished(abandonedResult)
        condition.broadcast()
        condition.unlock()
        abandoned?.onFinish?(abandonedResult)
        return exited
    }

    func submit(_ request: GenerationRequest, prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)? = nil,
                generator: any ImageGenerating, onFinish: (@Sendable (Result<GenerationOutput, APIError>) -> Void)? = nil,
                preview: (@Sendable (PreviewImage) -> Void)? = nil) throws -> GenerationTicket {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { throw APIError.shuttingDown }
        // A free worker takes the job at once, so only jobs behind a busy one count as waiting.
        let busy = running != nil || !waiting.isEmpty
        if busy && waiting.count >= capacity { throw APIError.queueFull(waiting.count) }
        let ticket = GenerationTicket(request: request, prepare: prepare, generator: generator, preview: preview, onFinish: onFinish)
        waiting.append(ticket)
        metrics.setQueueDepth(waiting.count)
        condition.broadcast()
        return ticket
    }

    /// Blocks until the ticket finishes; returns nil when `clientConnected` turns false first,
    /// after dropping the job from the queue (or cancelling it if it already runs).
    func wait(for ticket: GenerationTicket, clientConnected: () -> Bool) -> Result<GenerationOutput, APIError>? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if case .finished(let result) = ticket.state { return result }
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.1))
            if case .finished(let result) = ticket.state { return result }
            if !clientConnected() {
                if let index = waiting.firstIndex(where: { $0 === ticket }) {
                    waiting.remove(at: index)
                    metrics.setQueueDepth(waiting.count)
                    ticket.state = .finished(.failure(.server("client disconnected", code: "client_disconnected")))
                } else {
                    ticket.stopRequested = true
                }
                return nil
            }
        }
    }

    /// The ticket's result once it finishes, or nil after `seconds` without one.
    func wait(for ticket: GenerationTicket, seconds: Double) -> Result<GenerationOutput, APIError>? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while true {
            if case .finished(let result) = ticket.state { return result }
            guard condition.wait(until: deadline) else {
                if case .finished(let result) = ticket.state { return result }
                return nil
            }
        }
    }

    /// Cancels a job for its client: a waiting one leaves the queue and finishes `.cancelled`
    /// here (its `onFinish` runs on this thread before the return); a running one is asked to
    /// stop at its next step and finishes `.cancelled` on the worker, even if the model
    /// completes first (its images are dropped).
    func cancel(_ ticket: GenerationTicket) -> CancelOutcome {
        condition.lock()
        switch ticket.state {
        case .finished:
            condition.unlock()
            return .alreadyFinished
        case .running:
            ticket.cancelled = true
            ticket.stopRequested = true
            condition.broadcast()
            condition.unlock()
            return .stopping
        case .queued:
            ticket.cancelled = true
            waiting.removeAll { $0 === ticket }
            metrics.setQueueDepth(waiting.count)
            ticket.state = .finished(.failure(.cancelled))
            condition.broadcast()
            condition.unlock()
            ticket.onFinish?(.failure(.cancelled))
            return .removed
        }
    }

    func snapshot(_ ticket: GenerationTicket) -> Snapshot {
        condition.lock()
        defer { condition.unlock() }
        switch ticket.state {
        case .queued:
            return Snapshot(status: "pending", step: 0, total: ticket.totalSteps,
                            position: waiting.firstIndex(where: { $0 === ticket }).map { $0 + 1 })
        case .running:
            return Snapshot(status: ticket.cancelled ? "cancelling" : "running", step: ticket.step, total: ticket.totalSteps,
                            position: nil)
        case .finished(let result):
            let status = switch result {
            case .success: "completed"
            case .failure(let error): error == .cancelled ? "cancelled" : "failed"
            }
            return Snapshot(status: status, step: ticket.step, total: ticket.totalSteps, position: nil)
        }
    }

    /// Nothing waits and nothing runs.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return waiting.isEmpty && running == nil
    }

    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting.count
    }

    private func work() {
        while let ticket = next() {
            let started = Date()
            var result: Result<GenerationOutput, APIError>
            do {
                let request = try ticket.prepare.map { try $0(ticket.request) } ?? ticket.request
                let output = try ticket.generator.generate(request, progress: { [self] progress in
                    condition.lock()
                    defer { condition.unlock() }
                    ticket.step = progress.stepsDone
                    ticket.totalSteps = progress.totalSteps
                    condition.broadcast()
                    return !ticket.stopRequested
                }, preview: { image in ticket.preview?(image) })
                if output.images.isEmpty {
                    result = .failure(.server("The model returned no image", code: "no_image_generated"))
                } else {
                    result = .success(GenerationOutput(result: output, queueSeconds: started.timeIntervalSince(ticket.submitted),
                                                       generationSeconds: Date().timeIntervalSince(started)))
                }
            } catch PipelineError.cancelled where isStopping {
                result = .failure(.shuttingDown)
            } catch let error as APIError {
                result = .failure(error)
            } catch let error as PipelineError {
                result = .failure(.rejected(error, fieldNames: ImageRequest.defaultFieldNames))
            } catch {
                result = .failure(.server("Generation failed: \(error)"))
            }
            // A cancelled job ends cancelled, also when the model finished or failed first.
            if isCancelled(ticket) { result = .failure(.cancelled) }
            let seconds = Date().timeIntervalSince(started)
            metrics.observeGeneration(seconds: seconds, images: (try? result.get().result.images.count) ?? 0)
            condition.lock()
            // A shutdown that gave up waiting has already failed and reported this ticket.
            let abandoned = if case .finished = ticket.state { true } else { false }
            if !abandoned { ticket.state = .finished(result) }
            running = nil
            condition.broadcast()
            condition.unlock()
            if !abandoned { ticket.onFinish?(result) }
        }
        condition.lock()
        workerExited = true
        condition.broadcast()
        condition.unlock()
    }

    private func isCancelled(_ ticket: GenerationTicket) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return ticket.cancelled
    }

    private var isStopping: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopping
    }

    private func next() -> GenerationTicket? {
        condition.lock()
        defer { condition.unlock() }
        while waiting.isEmpty && !stopping { condition.wait() }
        guard !stopping else { return nil }
        let ticket = waiting.removeFirst()
        ticket.state = .running
        running = ticket
        metrics.setQueueDepth(waiting.count)
        return ticket
    }
}

extension APIError {
    /// How a cancelled job finishes; a task records it as the status `cancelled`, not as an error.
    static let cancelled = APIError(status: 409, message: "The generation was cancelled at its client's request",
                                    type: "invalid_request_error", param: nil, code: "cancelled")
}
