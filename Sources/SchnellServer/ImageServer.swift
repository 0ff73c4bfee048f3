import Foundation
import SchnellImageIO

/// The OpenAI-compatible HTTP front over one loaded model.
///
/// Routes: `POST /v1/images/generations`, `POST /v1/images/edits`, `GET /v1/models`,
/// `GET /v1/models/{id}`, `GET /v1/tasks/{id}`, `GET /v1/images/files/{id}.{ext}`,
/// `GET /health` (never needs a key) and `GET /metrics`.
/// The server may start before its model is ready: `/health` answers 503 and generations
/// 503 `model_loading` until `setGenerator(_:)` is called.
public final class ImageServer: @unchecked Sendable {
    let options: ServerOptions
    let store: OutputStore
    let metrics = Metrics()
    let queue: GenerationQueue
    // Guarded by `lock`: the generator, the task tables and the daemon/timer handles.
    let lock = NSLock()
    private var generatorStorage: (any ImageGenerating)?
    var liveTasks: [String: LiveTask] = [:]
    /// Finished tasks live on disk (`OutputStore`); only those whose record could not be written
    /// stay here, as a failure without images, until they expire.
    var unsavedTasks: [String: (record: JSONValue, finished: Date)] = [:]
    private var daemon: HTTPDaemon?
    private var cleanupTimer: DispatchSourceTimer?

    struct LiveTask {
        var ticket: GenerationTicket
        var created: Int
    }

    public init(options: ServerOptions, generator: (any ImageGenerating)? = nil) throws {
        self.options = options
        store = try OutputStore(root: options.outputDirectory, ttlSeconds: options.imageTTLSeconds)
        queue = GenerationQueue(capacity: options.maxQueue, metrics: metrics)
        generatorStorage = generator
        // Tasks that were still waiting or running when the last process ended cannot resume.
        for (id, record) in store.unfinishedTasks() {
            guard case .object(var members) = record else { continue }
            members["status"] = "failed"
            members["error"] = APIError.server("The server restarted before the task finished").json["error"]
            do {
                try store.saveTask(id: id, record: .object(members))
            } catch {
                log("error: the record of unfinished task \(id) could not be marked failed: \(error)")
            }
        }
    }

    deinit { stop() }

    /// The port the server listens on (the chosen one when `options.port` is 0); 0 before `start()`.
    public var boundPort: Int {
        lock.withLock { daemon?.boundPort ?? 0 }
    }

    /// Makes the model available; until then the server reports that it is loading.
    public func setGenerator(_ generator: any ImageGenerating) {
        lock.withLock { generatorStorage = generator }
    }

    var generator: (any ImageGenerating)? {
        lock.withLock { generatorStorage }
    }

    /// A model as this server offers it: its limits narrowed by the server's (`ServerOptions.limits`).
    func served(_ model: ModelDescription) -> ModelDescription {
        var served = model
        served.limits = model.limits.narrowed(to: options.limits)
        return served
    }

    public func start() throws {
        guard lock.withLock({ daemon == nil }) else { return }
        queue.start()
        let started = try HTTPDaemon(options: options, handler: { [weak self] request in self?.handle(request) ?? .error(.shuttingDown) },
                                     observeStatus: { [metrics] status in metrics.countRequest(status: status) })
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        let interval = min(60, max(0.5, Double(options.imageTTLSeconds) / 2))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in self?.removeExpired() }
        timer.resume()
        lock.withLock {
            daemon = started
            cleanupTimer = timer
        }
        if options.apiKeys.isEmpty && !options.isLoopback {
            log("warning: listening on \(options.host) without an API key; anyone who can reach this address can generate images (use --api-key)")
        }
        log("listening on http://\(options.host.contains(":") ? "[\(options.host)]" : options.host):\(started.boundPort)")
        let limits = options.limits
        log("request limits: sides \(limits.minSide)...\(limits.maxSide) pixels (--max-side), steps 1...\(limits.maxSteps) (--max-steps), images 1...\(limits.maxImages) (--max-images)")
    }

    /// Stops accepting requests, fails waiting generations with 503 and waits for open
    /// connections to finish.
    public func stop() {
        let (running, timer) = lock.withLock {
            let handles = (daemon, cleanupTimer)
            daemon = nil
            cleanupTimer = nil
            return handles
        }
        timer?.cancel()
        queue.shutdown()
        running?.stop()
    }

    /// Starts the server and blocks until SIGINT or SIGTERM, then stops it.
    public func run() throws {
        try start()
        let stopSignal = DispatchSemaphore(value: 0)
        let sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: DispatchQueue.global())
            source.setEventHandler { stopSignal.signal() }
            source.resume()
            return source
        }
        stopSignal.wait()
        log("stopping")
        stop()
        sources.forEach { $0.cancel() }
    }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("schnell serve: \(message)\n".utf8))
    }

    private func removeExpired() {
        store.removeExpired()
        let ttl = Double(options.imageTTLSeconds)
        lock.withLock { unsavedTasks = unsavedTasks.filter { Date().timeIntervalSince($0.value.finished) <= ttl } }
    }

    // MARK: - Routing

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        if request.path == "/health" {
            guard request.method == "GET" || request.method == "HEAD" else {
                return .error(.methodNotAllowed(request.method, path: request.path, allowed: ["GET"]))
            }
            return health()
        }
        guard isAuthorized(request) else { return .error(.unauthorized) }
        do {
            return try route(request)
        } catch let error as APIError {
            return .error(error)
        } catch {
            return .error(.server("\(error)"))
        }
    }

    private func route(_ request: HTTPRequest) throws -> HTTPResponse {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        func only(_ method: String) throws {
            guard request.method == method || (method == "GET" && request.method == "HEAD") else {
                throw APIError.methodNotAllowed(request.method, path: request.path, allowed: [method])
            }
        }
        switch segments {
        case ["metrics"]:
            try only("GET")
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")],
                                body: Array(metrics.render(modelLoaded: generator != nil).utf8))
        case ["v1", "models"]:
            try only("GET")
            return .json(["object": "list", "data": .array(generator.map { [modelObject(served($0.model))] } ?? [])])
        case let path where path.count >= 3 && path[0] == "v1" && path[1] == "models":
            try only("GET")
            // Ids may contain slashes (`black-forest-labs/FLUX.1-schnell`).
            let name = path[2...].joined(separator: "/")
            guard let model = generator?.model, model.answers(to: name) else { throw APIError.modelNotFound(name) }
            return .json(modelObject(served(model)))
        case ["v1", "images", "generations"]:
            try only("POST")
            return try generate(request)
        case ["v1", "images", "edits"]:
            try only("POST")
            return try edit(request)
        case let path where path.count == 3 && path[0] == "v1" && path[1] == "tasks":
            try only("GET")
            return try task(id: path[2])
        case let path where path.count == 4 && path[0] == "v1" && path[1] == "images" && path[2] == "files":
            try only("GET")
            guard let file = store.image(named: path[3]) else { throw APIError.notFound("No image file '\(path[3])' (it may have expired)") }
            // For HEAD libmicrohttpd sends the headers alone, with this body's length.
            return HTTPResponse(status: 200, headers: [("Content-Type", file.contentType), ("Cache-Control", "private, max-age=3600")],
                                body: file.bytes)
        default:
            throw APIError.notFound("No route for \(request.method) \(request.path)")
        }
    }

    private func health() -> HTTPResponse {
        guard let model = generator?.model else { return .json(["status": "loading"], status: 503) }
        return .json(["status": "ok", "model": .string(model.id), "queue_depth": .integer(Int64(queue.depth))])
    }

    /// Keys are compared in constant time over the longer of the two lengths.
    private func isAuthorized(_ request: HTTPRequest) -> Bool {
        guard !options.apiKeys.isEmpty else { return true }
        var presented = request.header("x-api-key")
        if let authorization = request.header("authorization"), authorization.lowercased().hasPrefix("bearer ") {
            presented = String(authorization.dropFirst("bearer ".count)).trimmingCharacters(in: .whitespaces)
        }
        guard let presented else { return false }
        let given = Array(presented.utf8)
        var matched = false
        for key in options.apiKeys {
            let expected = Array(key.utf8)
            var difference = UInt8(given.count == expected.count ? 0 : 1)
            for index in 0..<max(given.count, expected.count) {
                difference |= (index < given.count ? given[index] : 0) ^ (index < expected.count ? expected[index] : 0)
            }
            matched = matched || difference == 0
        }
        return matched
    }

    /// `model` as served (see `served(_:)`).
    private func modelObject(_ model: ModelDescription) -> JSONValue {
        let limits = model.limits
        let sizes: [JSONValue] = ["256x256", "512x512", "768x768", "1024x1024", "1024x768", "768x1024", "1536x1024",
                                  "1024x1536", "1792x1024", "1024x1792", "2048x2048"]
            .filter { size in
                let sides = size.split(separator: "x").compactMap { Int($0) }
                return sides.count == 2 && sides.allSatisfy { $0 >= limits.minSide && $0 <= limits.maxSide && $0 % model.sizeMultiple == 0 }
            }
            .map { .string($0) }
        return [
            "id": .string(model.id), "object": "model", "created": .integer(Int64(model.created)), "owned_by": "schnell",
            "modality": "image", "aliases": .array(model.aliases.map { .string($0) }),
            "allowed_params": [
                "supported_sizes": .array(sizes),
                "size_multiple": .integer(Int64(model.sizeMultiple)),
                "min_side": .integer(Int64(limits.minSide)), "max_side": .integer(Int64(limits.maxSide)),
                "default_size": .string("\(model.defaultWidth)x\(model.defaultHeight)"),
                "steps": ["default": .integer(Int64(model.defaultSteps)), "min": 1, "max": .integer(Int64(limits.maxSteps))],
                "guidance": .bool(model.supportsGuidance),
                "default_guidance": model.defaultGuidance.map { .number(Double($0)) } ?? .null,
                "max_guidance": model.supportsGuidance ? .number(Double(limits.maxGuidance)) : .null,
                "edits": .bool(model.supportsEdits),
                "max_images": .integer(Int64(limits.maxImages)),
                "output_formats": ["png", "jpeg", "webp"],
                "response_formats": ["b64_json", "url"],
            ],
        ]
    }
}
