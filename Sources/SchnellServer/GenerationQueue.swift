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
    /// Called on the worker thread with each preview the generation makes.
    let preview: (@Sendable (PreviewImage) -> Void)?
    let submitted = Date()
    /// Called on the worker thread once the ticket has finished (async tasks persist here).
    let onFinish: (@Sendable (Result<GenerationOutput, APIError>) -> Void)?
    fileprivate(set) var state = State.queued
    fileprivate(set) var step = 0
    fileprivate(set) var totalSteps: Int
    fileprivate var cancelRequested = false

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
    struct Snapshot {
        var status: String
        var step: Int
        var total: Int
        var position: Int?
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
        running?.cancelRequested = true
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
        abandoned?.state = .finished(.failure(.shuttingDown))
        condition.broadcast()
        condition.unlock()
        abandoned?.onFinish?(.failure(.shuttingDown))
        return exited
    }

    func submit(_ request: GenerationRequest, prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)? = nil,
                generator: any ImageGenerating, preview: (@Sendable (PreviewImage) -> Void)? = nil,
                onFinish: (@Sendable (Result<GenerationOutput, APIError>) -> Void)? = nil) throws -> GenerationTicket {
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
                    ticket.cancelRequested = true
                }
                return nil
            }
        }
    }

    /// Drops a waiting ticket (finished as cancelled) or asks a running one to stop at its next step.
    func cancel(_ ticket: GenerationTicket) {
        condition.lock()
        let dropped: Bool
        if let index = waiting.firstIndex(where: { $0 === ticket }) {
            waiting.remove(at: index)
            metrics.setQueueDepth(waiting.count)
            ticket.state = .finished(.failure(.cancelled))
            dropped = true
        } else {
            ticket.cancelRequested = true
            dropped = false
        }
        condition.broadcast()
        condition.unlock()
        if dropped { ticket.onFinish?(.failure(.cancelled)) }
    }

    func snapshot(_ ticket: GenerationTicket) -> Snapshot {
        condition.lock()
        defer { condition.unlock() }
        switch ticket.state {
        case .queued:
            return Snapshot(status: "pending", step: 0, total: ticket.totalSteps,
                            position: waiting.firstIndex(where: { $0 === ticket }))
        case .running:
            return Snapshot(status: "running", step: ticket.step, total: ticket.totalSteps, position: nil)
        case .finished(let result):
            let failed = if case .failure = result { true } else { false }
            return Snapshot(status: failed ? "failed" : "completed", step: ticket.step, total: ticket.totalSteps, position: nil)
        }
    }

    var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting.count
    }

    private func work() {
        while let ticket = next() {
            let started = Date()
            let result: Result<GenerationOutput, APIError>
            do {
                let request = try ticket.prepare.map { try $0(ticket.request) } ?? ticket.request
                let output = try ticket.generator.generate(request, progress: { [self] progress in
                    condition.lock()
                    defer { condition.unlock() }
                    ticket.step = progress.stepsDone
                    ticket.totalSteps = progress.totalSteps
                    condition.broadcast()
                    return !ticket.cancelRequested
                }, preview: { preview in ticket.preview?(preview) })
                if output.images.isEmpty {
                    result = .failure(.server("The model returned no image", code: "no_image_generated"))
                } else {
                    result = .success(GenerationOutput(result: output, queueSeconds: started.timeIntervalSince(ticket.submitted),
                                                       generationSeconds: Date().timeIntervalSince(started)))
                }
            } catch PipelineError.cancelled where isStopping {
                result = .failure(.shuttingDown)
            } catch PipelineError.cancelled {
                result = .failure(.cancelled)
            } catch let error as APIError {
                result = .failure(error)
            } catch let error as PipelineError {
                result = .failure(.rejected(error, fieldNames: ImageRequest.defaultFieldNames))
            } catch {
                result = .failure(.server("Generation failed: \(error)"))
            }
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
