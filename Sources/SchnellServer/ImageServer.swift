import Foundation
import Schnell
import SchnellImageIO

/// The OpenAI-compatible HTTP front over one loaded model.
///
/// Routes: `POST /v1/images/generations`, `POST /v1/images/edits`, `POST /v1/images/variations`
/// (refused: FLUX does not make variations), `GET /v1/models[?modality=]`, `GET /v1/models/{id}`,
/// the tasks (`Tasks.swift`), `GET /v1/images/files/{id}.{ext}`, `GET /metrics`, and without a
/// key `GET /health`, the image files and the page (`/`, `/playground`).
/// The server may start before its model is ready: `/health` answers 503 and generations
/// 503 `model_loading` until `setGenerator(_:)` is called.
public final class ImageServer: @unchecked Sendable {
    let options: ServerOptions
    let store: OutputStore
    /// Tasks and `url` images shared with other replicas (`--task-store`); nil: `store` holds them
    /// and tasks run where they were created.
    let shared: (any SharedTaskStore)?
    /// This replica's name in the shared store's leases.
    let replica: String
    private var claimer: Thread?
    let metrics = Metrics()
    let queue: GenerationQueue
    // Guarded by `lock`: the generator, the task tables, the task id clock and the daemon/timer handles.
    let lock = NSLock()
    private var generatorStorage: (any ImageGenerating)?
    var liveTasks: [String: LiveTask] = [:]
    /// Finished tasks live on disk (`OutputStore`); only those whose record could not be written
    /// stay here, as a failure without images, until they expire.
    var unsavedTasks: [String: (record: JSONValue, finished: Date)] = [:]
    /// The clock part of the last task id (`newTaskID()`).
    var lastTaskMicroseconds: UInt64 = 0
    private var daemon: HTTPDaemon?
    private var cleanupTimer: DispatchSourceTimer?
    private var stopping = false

    struct LiveTask {
        var ticket: GenerationTicket
        var created: Int
        /// The request's `loras` as records echo them; nil without any.
        var loras: JSONValue?
    }

    public convenience init(options: ServerOptions, generator: (any ImageGenerating)? = nil) throws {
        try self.init(options: options, generator: generator, shared: try options.taskStoreURL.map { try PostgresTaskStore(url: $0) })
    }

    init(options: ServerOptions, generator: (any ImageGenerating)?, shared: (any SharedTaskStore)?) throws {
        self.options = options
        self.shared = shared
        replica = options.replicaName ?? "\(ProcessInfo.processInfo.hostName):\(getpid()):\(randomHex(bytes: 4))"
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
        let started = try HTTPDaemon(options: options,
                                     admit: { [weak self] head in self?.admit(head) ?? .answer(.error(.shuttingDown)) },
                                     handler: { [weak self] request in self?.handle(request) ?? .error(.shuttingDown) },
                                     observeStatus: { [metrics] status in metrics.countRequest(status: status) })
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        let interval = min(60, max(0.5, Double(options.imageTTLSeconds) / 2))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [weak self] in self?.removeExpired() }
        timer.resume()
        let claimer = shared.map { _ in
            let thread = Thread { [weak self] in self?.claimTasks() }
            thread.name = "schnell-claimer"
            return thread
        }
        lock.withLock {
            daemon = started
            cleanupTimer = timer
            self.claimer = claimer
        }
        claimer?.start()
        if options.apiKeys.isEmpty && !options.isLoopback {
            log("warning: listening on \(options.host) without an API key; anyone who can reach this address can generate images (use --api-key)")
        }
        log("listening on \(boundURL)")
        if options.publicURL == nil && ["0.0.0.0", "::"].contains(options.host) {
            log("warning: image URLs name \(boundURL), which clients cannot reach; set --public-url to the address they use")
        }
        let limits = options.limits
        log("request limits: sides \(limits.minSide)...\(limits.maxSide) pixels (--max-side), steps 1...\(limits.maxSteps) (--max-steps), images 1...\(limits.maxImages) (--max-images)")
    }

    /// `http://host:port` as bound; image URLs use it when there is no `--public-url`.
    var boundURL: String {
        "http://\(options.host.contains(":") ? "[\(options.host)]" : options.host):\(boundPort)"
    }

    /// Stops the server, answering everyone: new connections are refused at once; requests that
    /// arrive on open connections, and generations waiting in the queue, are answered 503; the
    /// running generation is cancelled at its next step and its client answered 503; every async
    /// task's final state is written to disk; then open connections are closed.
    ///
    /// Returns false when the running generation did not stop within `shutdownTimeoutSeconds`:
    /// its thread may still be inside the model, so the process must leave without running exit
    /// handlers (`_exit`), which would free memory that thread still uses.
    @discardableResult
    public func stop() -> Bool {
        let (running, timer) = lock.withLock {
            let handles = (daemon, cleanupTimer)
            stopping = true
            daemon = nil
            cleanupTimer = nil
            return handles
        }
        running?.stopAccepting()
        timer?.cancel()
        let workerStopped = queue.shutdown(timeoutSeconds: Double(options.shutdownTimeoutSeconds))
        running?.stop()
        return workerStopped
    }

    /// Starts the server and blocks until SIGINT or SIGTERM, then stops it; returns `stop()`'s answer.
    public func run() throws -> Bool {
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
        let workerStopped = stop()
        sources.forEach { $0.cancel() }
        if !workerStopped {
            log("the running generation did not stop within \(options.shutdownTimeoutSeconds) s (--shutdown-timeout); leaving without it")
        }
        return workerStopped
    }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("schnell serve: \(message)\n".utf8))
    }

    var isStopping: Bool { lock.withLock { stopping } }

    private func removeExpired() {
        store.removeExpired()
        do {
            try shared?.removeExpired(now: Int(Date().timeIntervalSince1970), ttlSeconds: options.imageTTLSeconds)
        } catch {
            log("warning: expired tasks and images could not be removed from the task store: \(error)")
        }
        let ttl = Double(options.imageTTLSeconds)
        lock.withLock { unsavedTasks = unsavedTasks.filter { Date().timeIntervalSince($0.value.finished) <= ttl } }
    }

    // MARK: - Routing

    /// Decides on a request from its head alone, before its body is read: origin, key, route,
    /// method and content type (`Route.needsKey` says which routes need no key).
    ///
    /// A request with an `Origin` is served when that origin is a `--cors-origin` or the server
    /// itself (`isOwnOrigin`); browsers send `Origin` on same-origin POSTs too. Preflights of
    /// allowed origins are answered for every method the routes use, with the headers asked for.
    func admit(_ head: HTTPRequestHead) -> Admission {
        let origin = head.header("origin")
        let cors = origin.map { [("Access-Control-Allow-Origin", $0), ("Vary", "Origin")] } ?? []
        if let origin, !options.corsOrigins.contains(origin.lowercased()), !isOwnOrigin(origin) {
            return .answer(.error(.crossOrigin(origin)))
        }
        if lock.withLock({ stopping }) { return .answer(.error(.shuttingDown)) }
        if head.method == "OPTIONS", origin != nil, head.header("access-control-request-method") != nil {
            // The origin is trusted; the headers it asks for are allowed as long as they are plain
            // header names (the OpenAI SDKs send their own `X-Stainless-*` headers).
            let asked = head.header("access-control-request-headers") ?? ""
            let askedIsPlain = asked.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_, ".contains($0)) }
            return .answer(HTTPResponse(status: 204, headers: cors + [
                ("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE"),
                ("Access-Control-Allow-Headers", !asked.isEmpty && askedIsPlain ? asked : "Authorization, Content-Type, X-API-Key"),
                ("Access-Control-Max-Age", "600"),
            ], body: []))
        }
        guard let route = Route(path: head.path) else {
            guard isAuthorized(head) else { return .answer(.error(.unauthorized).adding(cors)) }
            return .answer(.error(.notFound("No route for \(head.method) \(head.path)")).adding(cors))
        }
        if route.needsKey, !isAuthorized(head) { return .answer(.error(.unauthorized).adding(cors)) }
        guard route.allows(head.method) else {
            return .answer(.error(.methodNotAllowed(head.method, path: head.path, allowed: route.methods)).adding(cors))
        }
        if let body = route.bodyType {
            let mediaType = (head.header("content-type") ?? "").split(separator: ";").first
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            guard body.accepts(mediaType) else { return .answer(.error(.unsupportedMediaType(expected: body.expected)).adding(cors)) }
        }
        return .proceed(headers: cors)
    }

    /// A request whose head `admit` accepted, with its body read.
    func handle(_ request: HTTPRequest) -> HTTPResponse {
        guard let route = Route(path: request.path) else { return .error(.notFound("No route for \(request.method) \(request.path)")) }
        do {
            return try respond(route, to: request)
        } catch let error as APIError {
            return .error(error)
        } catch {
            return .error(.server("\(error)"))
        }
    }

    /// An `Origin` that is this server itself: `--public-url`'s origin, or plain http on the bound
    /// port at the bound address or a loopback name. Any other host name on the bound port is
    /// refused: that is what a DNS-rebinding page sends.
    func isOwnOrigin(_ origin: String) -> Bool {
        guard let parts = OriginParts(origin) else { return false }
        if let publicURL = options.publicURL, let own = OriginParts(publicURL), own == parts { return true }
        let boundHost = options.host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return parts.scheme == "http" && parts.port == boundPort && ["localhost", "127.0.0.1", "::1", boundHost].contains(parts.host)
    }

    private func respond(_ route: Route, to request: HTTPRequest) throws -> HTTPResponse {
        switch route {
        case .health:
            return health()
        case .metrics:
            var text = metrics.render(modelLoaded: generator != nil)
            if let shared {
                let depth = try? shared.queueDepth()
                text += "# HELP schnell_task_store_up Whether the shared task store answers (1) or not (0).\n# TYPE schnell_task_store_up gauge\n"
                text += "schnell_task_store_up \(depth == nil ? 0 : 1)\n"
                if let depth {
                    text += "# HELP schnell_task_store_pending Async tasks waiting in the shared store, for every replica.\n"
                    text += "# TYPE schnell_task_store_pending gauge\nschnell_task_store_pending \(depth)\n"
                }
            }
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(text.utf8))
        case .models:
            return try models(query: request.query)
        case .model(let name):
            guard let generator, generator.model.answers(to: name) else { throw APIError.modelNotFound(name) }
            return .json(modelObject(served(generator.model), loras: generator.loras))
        case .generations:
            return try generate(request)
        case .edits:
            return try edit(request)
        case .variations:
            throw APIError(status: 400, message: "FLUX models do not make variations of an image; send the image with a prompt to /v1/images/edits instead",
                           type: "invalid_request_error", param: nil, code: "unsupported_operation")
        case .tasks:
            return try listTasks(query: request.query)
        case .task(let id):
            return try request.method == "DELETE" ? cancelTask(id: id) : task(id: id)
        case .cancelTask(let id):
            return try cancelTask(id: id)
        case .page(let path):
            return playgroundResponse(path: path) ?? .error(.notFound("No page at \(path)"))
        case .file(let name):
            guard let file = try imageFile(named: name) else { throw APIError.notFound("No image file '\(name)' (it may have expired)") }
            // For HEAD libmicrohttpd sends the headers alone, with this body's length.
            return HTTPResponse(status: 200, headers: [("Content-Type", file.contentType), ("Cache-Control", "private, max-age=3600")],
                                body: file.bytes)
        }
    }

    /// `GET /v1/models`: the loaded model, if any. `modality` (compared case-insensitively) keeps
    /// the models of that modality: `image` lists the model, any other value an empty list; an
    /// empty value is a 400.
    private func models(query: String?) throws -> HTTPResponse {
        var models = generator.map { [(model: served($0.model), loras: $0.loras)] } ?? []
        if let modality = try QueryParameters(query).values["modality"] {
            guard !modality.isEmpty else {
                throw APIError.invalid("'modality' must name a modality, e.g. image or text", param: "modality")
            }
            // Every model served here makes images.
            if modality.lowercased() != "image" { models = [] }
        }
        return .json(["object": "list", "data": .array(models.map { modelObject($0.model, loras: $0.loras) })])
    }

    private func health() -> HTTPResponse {
        guard let model = generator?.model else { return .json(["status": "loading"], status: 503) }
        var answer: [String: JSONValue] = ["status": "ok", "model": .string(model.id), "queue_depth": .integer(Int64(queue.depth)),
                                           "cpu_tier": .string(CPUTier.current.description)]
        if let shared {
            // Synchronous generation works without the store, so the replica stays healthy.
            // One query answers both: whether the store is there, and how many tasks wait in it.
            let depth = try? shared.queueDepth()
            answer["task_store"] = depth == nil ? "unreachable" : "reachable"
            answer["replica"] = .string(replica)
            if let depth { answer["shared_queue_depth"] = .integer(Int64(depth)) }
        }
        return .json(.object(answer))
    }

    /// Keys are compared in constant time over the longer of the two lengths.
    private func isAuthorized(_ head: HTTPRequestHead) -> Bool {
        guard !options.apiKeys.isEmpty else { return true }
        var presented = head.header("x-api-key")
        if let authorization = head.header("authorization"), authorization.lowercased().hasPrefix("bearer ") {
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

    /// `model` as served (see `served(_:)`), with the LoRA adapters requests may name
    /// (`loras`: name, format, layers updated; `allowedParams.max_loras` is 0 without any).
    private func modelObject(_ model: ModelDescription, loras: [String: LoRAAdapter]) -> JSONValue {
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
            "loras": .array(loras.keys.sorted().compactMap { loras[$0] }.map { adapter in
                ["name": .string(adapter.name), "format": .string(adapter.format.rawValue),
                 "layers": .integer(Int64(adapter.transformerDeltas.count + adapter.clipDeltas.count))]
            }),
            "allowedParams": [
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
                "max_loras": .integer(Int64(loras.isEmpty ? 0 : LoRACatalog.maxPerRequest)),
                "lora_scale": ["min": .number(LoRACatalog.scaleRange.lowerBound), "max": .number(LoRACatalog.scaleRange.upperBound),
                               "default": 1],
            ],
        ]
    }
}

/// An origin's scheme, host and port, lowercased, with the scheme's default port filled in.
struct OriginParts: Equatable {
    var scheme: String
    var host: String
    var port: Int

    init?(_ text: String) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              let host = components.host?.lowercased(), !host.isEmpty, ["http", "https"].contains(scheme) else { return nil }
        self.scheme = scheme
        self.host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        port = components.port ?? (scheme == "https" ? 443 : 80)
    }
}

/// A request's query string (`a=1&b=two`), percent-decoded, with `+` as a space. A parameter
/// sent twice, or one whose name or value is not valid percent-encoding, is a 400 naming it.
struct QueryParameters {
    var values: [String: String] = [:]

    init(_ query: String?) throws {
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                .map { String($0).replacingOccurrences(of: "+", with: " ") }
            guard let name = parts[0].removingPercentEncoding else {
                throw APIError.invalid("The query parameter name '\(parts[0])' is not valid percent-encoding", param: parts[0])
            }
            guard let value = (parts.count > 1 ? parts[1] : "").removingPercentEncoding else {
                throw APIError.invalid("The query parameter '\(name)' is not valid percent-encoding", param: name)
            }
            guard values.updateValue(value, forKey: name) == nil else {
                throw APIError.invalid("The query has the parameter '\(name)' more than once; send it once", param: name)
            }
        }
    }
}
