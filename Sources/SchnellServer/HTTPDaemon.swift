import CMicroHTTPD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A request as the router sees it: fully read, headers keyed by lowercase name.
struct HTTPRequest: Sendable {
    var method: String
    var path: String
    var query: String?
    var headers: [String: String]
    var body: [UInt8]
    var requestID: String
    /// True until the client has closed its end; polled by handlers that wait on the queue.
    var clientConnected: @Sendable () -> Bool = { true }

    func header(_ name: String) -> String? { headers[name.lowercased()] }
}

struct HTTPResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    /// When set, the body is sent as it is produced (chunked) and `body` is unused.
    var stream: ResponseStream? = nil

    static func json(_ value: JSONValue, status: Int = 200, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: value.serialized())
    }

    static func error(_ error: APIError) -> HTTPResponse {
        .json(error.json, status: error.status, headers: error.headers)
    }

    func adding(_ extraHeaders: [(String, String)]) -> HTTPResponse {
        HTTPResponse(status: status, headers: headers + extraHeaders, body: body, stream: stream)
    }
}

struct ListenError: Error, CustomStringConvertible {
    let description: String
}

/// What the server decides on a request head, before any body byte is accepted.
enum Admission: Sendable {
    /// Answer now; the body, if any, is never read and the connection closes after the answer.
    case answer(HTTPResponse)
    /// Read the body and call the handler; `headers` go on whatever response the request gets.
    case proceed(headers: [(String, String)])
}

/// libmicrohttpd in thread-per-connection mode: each connection has its own thread, so a
/// request that waits for a generation blocks only itself, never `/health` or task polling.
/// The listening socket is bound here (not by libmicrohttpd) so that port 0 can report the
/// port it got and bind errors name the address.
///
/// A request is judged on its head first (framing and Host here, then `admit`: key, route, method,
/// content type, origin), and its body is read only if it passes, its length fits
/// `maxBodyBytes` and the bytes fit the shared `BodyMemoryBudget`. Connections are bounded in
/// number (in all and per client address), in idle time (libmicrohttpd) and in the absolute time
/// a head or body may take (`ConnectionWatchdog`).
final class HTTPDaemon: @unchecked Sendable {
    typealias Admitter = @Sendable (HTTPRequestHead) -> Admission
    typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse
    typealias StatusObserver = @Sendable (Int) -> Void

    let boundPort: Int
    private let admit: Admitter
    private let handler: Handler
    private let observeStatus: StatusObserver
    private let maxBodyBytes: Int
    private let logRequests: Bool
    private let watchdog: ConnectionWatchdog
    private let bodyBudget: BodyMemoryBudget
    // Invariant: set once in init, cleared once in stop() under `lock`; `listening` is cleared
    // by stopAccepting() or stop(), whichever comes first.
    private var daemon: OpaquePointer?
    private var listening = true
    private let lock = NSLock()
    /// Requests from their head to the end of their answer; stop() lets them finish.
    private let answering = NSCondition()
    // Guarded by `answering`.
    private var answersInFlight = 0

    init(options: ServerOptions, admit: @escaping Admitter, handler: @escaping Handler,
         observeStatus: @escaping StatusObserver) throws {
        self.admit = admit
        self.handler = handler
        self.observeStatus = observeStatus
        self.maxBodyBytes = options.maxBodyBytes
        self.logRequests = options.logRequests
        watchdog = ConnectionWatchdog(headTimeoutSeconds: options.headTimeoutSeconds, minBodyBytesPerSecond: options.minBodyBytesPerSecond)
        bodyBudget = BodyMemoryBudget(limitBytes: options.maxBodyMemoryBytes)
        let (socket, port) = try HTTPDaemon.listen(host: options.host, port: options.port)
        boundPort = port
        // ITC lets stopAccepting() take the listening socket back while connections finish.
        let flags = UInt32(MHD_USE_THREAD_PER_CONNECTION.rawValue | MHD_USE_INTERNAL_POLLING_THREAD.rawValue
            | MHD_USE_POLL.rawValue | MHD_USE_ITC.rawValue)
        let context = Unmanaged.passUnretained(self).toOpaque()
        let completed = OpaquePointer(unsafeBitCast(requestCompleted, to: UnsafeRawPointer.self))
        let connectionNotice = OpaquePointer(unsafeBitCast(connectionChanged, to: UnsafeRawPointer.self))
        let arguments: [CVarArg] = [
            MHD_OPTION.LISTEN_SOCKET.rawValue, socket,
            MHD_OPTION.CONNECTION_LIMIT.rawValue, UInt32(options.maxConnections),
            MHD_OPTION.PER_IP_CONNECTION_LIMIT.rawValue, UInt32(options.maxConnectionsPerIP),
            MHD_OPTION.CONNECTION_TIMEOUT.rawValue, UInt32(max(1, options.connectionTimeoutSeconds)),
            MHD_OPTION.NOTIFY_COMPLETED.rawValue, completed, OpaquePointer(context),
            MHD_OPTION.NOTIFY_CONNECTION.rawValue, connectionNotice, OpaquePointer(context),
            MHD_OPTION.END.rawValue,
        ]
        let started = withVaList(arguments) { list in
            MHD_start_daemon_va(flags, 0, nil, nil, accessHandler, context, list)
        }
        guard let started else {
            close(socket)
            watchdog.stop()
            throw ListenError(description: "libmicrohttpd could not start on \(options.host):\(port)")
        }
        daemon = started
    }

    /// Closes the listening socket, so new connections are refused, while open ones go on.
    func stopAccepting() {
        lock.lock()
        defer { lock.unlock() }
        guard listening, let daemon else { return }
        listening = false
        let socket = MHD_quiesce_daemon(daemon)
        if socket >= 0 { close(socket) }
    }

    /// Lets requests already begun finish (up to `drainSeconds`), then closes every
    /// connection and waits for its thread; callers must first wake handlers that wait on
    /// generations.
    func stop(drainSeconds: Double = 5) {
        answering.lock()
        let deadline = Date(timeIntervalSinceNow: drainSeconds)
        while answersInFlight > 0 && answering.wait(until: deadline) {}
        answering.unlock()
        lock.lock()
        let running = daemon
        daemon = nil
        listening = false
        lock.unlock()
        if let running { MHD_stop_daemon(running) }
        watchdog.stop()
    }

    deinit { stop() }

    private static func listen(host: String, port: Int) throws -> (Int32, Int) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var info: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &info)
        guard status == 0, let first = info else {
            throw ListenError(description: "--host '\(host)' could not be resolved: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw ListenError(description: "socket(): \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ListenError(description: "cannot listen on \(host):\(port): \(reason)")
        }
        guard Glibc.listen(fd, 128) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ListenError(description: "listen() on \(host):\(port): \(reason)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            close(fd)
            throw ListenError(description: "getsockname(): \(String(cString: strerror(errno)))")
        }
        let family = Int32(address.ss_family)
        let boundPort: UInt16 = withUnsafePointer(to: &address) { pointer in
            if family == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        return (fd, Int(boundPort))
    }

    // MARK: - Per-request state

    /// Lives from the first handler call to libmicrohttpd's completion notice; touched only
    /// by the connection's own thread.
    final class RequestState {
        let started = DispatchTime.now()
        let requestID = randomHex(bytes: 8)
        let socket: Int32
        let head: HTTPRequestHead
        var body: [UInt8] = []
        /// Bytes held in the shared body budget for this request; given back once.
        var reservedBytes = 0
        /// Added to every response this request gets (CORS).
        var extraHeaders: [(String, String)] = []
        var status = 0

        init(socket: Int32, head: HTTPRequestHead) {
            self.socket = socket
            self.head = head
        }
    }

    fileprivate func handle(connection: OpaquePointer, url: String, method: String, version: String, upload: UnsafePointer<CChar>?,
                            uploadSize: UnsafeMutablePointer<Int>, slot: UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> MHD_Result {
        guard let raw = slot.pointee else {
            let query = connectionValues(connection, kind: MHD_ValueKind.GET_ARGUMENT_KIND)
                .map { pair in [pair.name, pair.value].map { $0.addingPercentEncoding(withAllowedCharacters: .urlUnreservedCharacters) ?? "" }.joined(separator: "=") }
                .joined(separator: "&")
            let head = HTTPRequestHead(method: method, target: query.isEmpty ? url : url + "?" + query, version: version,
                                       fields: headerFields(connection))
            let state = RequestState(socket: connectionSocket(connection), head: head)
            slot.pointee = Unmanaged.passRetained(state).toOpaque()
            answering.withLock { answersInFlight += 1 }
            return begin(connection, state: state)
        }
        let state = Unmanaged<RequestState>.fromOpaque(raw).takeUnretainedValue()
        if uploadSize.pointee > 0 {
            // libmicrohttpd passes at most the announced Content-Length, which was reserved.
            if let upload {
                upload.withMemoryRebound(to: UInt8.self, capacity: uploadSize.pointee) {
                    state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: uploadSize.pointee))
                }
            }
            uploadSize.pointee = 0
            return MHD_Result.YES
        }
        watchdog.holding(connection)
        let head = state.head
        let socket = state.socket
        let request = HTTPRequest(method: head.method, path: head.path, query: head.query, headers: head.headers,
                                  body: state.body, requestID: state.requestID, clientConnected: { peerIsOpen(socket) })
        state.body = []
        let response = handler(request)
        releaseBody(state)
        return respond(connection, state: state, response: response)
    }

    /// The first call, with the head complete and no body byte accepted yet.
    private func begin(_ connection: OpaquePointer, state: RequestState) -> MHD_Result {
        let head = state.head
        let length: Int
        do {
            length = try head.validatedBodyLength()
        } catch {
            return respond(connection, state: state, response: .error((error as? APIError) ?? .badFraming("\(error)")))
        }
        switch admit(head) {
        case .answer(let response):
            return respond(connection, state: state, response: response)
        case .proceed(let headers):
            state.extraHeaders = headers
        }
        guard length <= maxBodyBytes else {
            return respond(connection, state: state, response: .error(.tooLarge(limit: maxBodyBytes)))
        }
        guard length > 0 else {
            watchdog.holding(connection)
            return MHD_Result.YES
        }
        guard bodyBudget.reserve(length) else {
            return respond(connection, state: state, response: .error(.bodyMemoryFull(limit: bodyBudget.limitBytes)))
        }
        state.reservedBytes = length
        // Address space only: pages are touched as the bytes arrive.
        state.body.reserveCapacity(length)
        watchdog.awaitBody(connection, bodyBytes: length)
        return MHD_Result.YES
    }

    private func releaseBody(_ state: RequestState) {
        state.body = []
        bodyBudget.release(state.reservedBytes)
        state.reservedBytes = 0
    }

    private func respond(_ connection: OpaquePointer, state: RequestState, response: HTTPResponse) -> MHD_Result {
        state.status = response.status
        observeStatus(response.status)
        let made: OpaquePointer?
        if let stream = response.stream {
            let reader = Unmanaged.passRetained(StreamReader(stream: stream, socket: state.socket)).toOpaque()
            made = MHD_create_response_from_callback(UInt64.max, 16 * 1024, streamRead, reader, streamReleased)
            if made == nil { streamReleased(reader) }
        } else {
            made = response.body.withUnsafeBytes { bytes in
                MHD_create_response_from_buffer(bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress),
                                                MHD_ResponseMemoryMode.RESPMEM_MUST_COPY)
            }
        }
        guard let made else { return MHD_Result.NO }
        defer { MHD_destroy_response(made) }
        for (name, value) in response.headers + state.extraHeaders { _ = MHD_add_response_header(made, name, value) }
        _ = MHD_add_response_header(made, "x-request-id", state.requestID)
        return MHD_queue_response(connection, UInt32(response.status), made)
    }

    fileprivate func finish(_ connection: OpaquePointer?, _ raw: UnsafeMutableRawPointer) {
        let state = Unmanaged<RequestState>.fromOpaque(raw).takeRetainedValue()
        releaseBody(state)
        answering.withLock {
            answersInFlight -= 1
            answering.broadcast()
        }
        if let connection { watchdog.awaitHead(connection) }
        guard logRequests else { return }
        let milliseconds = Double(DispatchTime.now().uptimeNanoseconds - state.started.uptimeNanoseconds) / 1e6
        let status = state.status == 0 ? "aborted" : String(state.status)
        let line = "\(state.head.method) \(state.head.path) \(status) \(String(format: "%.1f", milliseconds))ms \(state.requestID)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    fileprivate func connectionStarted(_ connection: OpaquePointer) {
        watchdog.awaitHead(connection, socket: connectionSocket(connection))
    }

    fileprivate func connectionClosed(_ connection: OpaquePointer) {
        watchdog.closed(connection)
    }
}

private let accessHandler: MHD_AccessHandlerCallback = { context, connection, url, method, version, upload, uploadSize, slot in
    guard let context, let connection, let url, let method, let uploadSize, let slot else { return MHD_Result.NO }
    let daemon = Unmanaged<HTTPDaemon>.fromOpaque(context).takeUnretainedValue()
    return daemon.handle(connection: connection, url: String(cString: url), method: String(cString: method),
                         version: version.map { String(cString: $0) } ?? "", upload: upload, uploadSize: uploadSize, slot: slot)
}

private let requestCompleted: MHD_RequestCompletedCallback = { context, connection, slot, _ in
    guard let context, let raw = slot?.pointee else { return }
    slot?.pointee = nil
    Unmanaged<HTTPDaemon>.fromOpaque(context).takeUnretainedValue().finish(connection, raw)
}

/// libmicrohttpd calls this before a connection's thread starts and again before its socket is closed.
private let connectionChanged: MHD_NotifyConnectionCallback = { context, connection, _, notice in
    guard let context, let connection else { return }
    let daemon = Unmanaged<HTTPDaemon>.fromOpaque(context).takeUnretainedValue()
    if notice == MHD_ConnectionNotificationCode.CONNECTION_NOTIFY_STARTED {
        daemon.connectionStarted(connection)
    } else {
        daemon.connectionClosed(connection)
    }
}

/// The connection thread's side of a `ResponseStream`: it blocks for the next chunk (this server
/// runs a thread per connection), checking between waits that the client is still there, and
/// sends a keep-alive comment after `keepAliveSeconds` of silence.
private final class StreamReader {
    let stream: ResponseStream
    let socket: Int32
    /// The chunk being sent and how much of it has gone: an event is megabytes of base64, sent
    /// in pieces of `capacity`, so it is read through an offset rather than shifted each time.
    var chunk: [UInt8] = []
    var sent = 0
    var quietSince = Date()
    static let keepAliveSeconds = 15.0

    init(stream: ResponseStream, socket: Int32) {
        self.stream = stream
        self.socket = socket
    }

    /// Bytes copied into `buffer`, or -1 at the end of the body, -2 when the client left.
    func read(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        while sent == chunk.count {
            switch stream.next(timeout: 0.2) {
            case .bytes(let bytes):
                (chunk, sent) = (bytes, 0)
            case .end:
                return stream.isAbandoned ? -2 : -1
            case .idle:
                guard peerIsOpen(socket) else {
                    stream.abandon()
                    return -2
                }
                if Date().timeIntervalSince(quietSince) >= StreamReader.keepAliveSeconds { (chunk, sent) = (ServerSentEvent.keepAlive, 0) }
            }
        }
        quietSince = Date()
        let count = min(capacity, chunk.count - sent)
        chunk.withUnsafeBytes { bytes in
            UnsafeMutableRawPointer(buffer).copyMemory(from: bytes.baseAddress! + sent, byteCount: count)
        }
        sent += count
        return count
    }
}

private let streamRead: MHD_ContentReaderCallback = { context, _, buffer, capacity in
    guard let context, let buffer else { return -2 }
    return Unmanaged<StreamReader>.fromOpaque(context).takeUnretainedValue().read(into: buffer, capacity: capacity)
}

/// libmicrohttpd is done with the body: sent, failed or cut off. A stream not finished by then
/// lost its client.
private let streamReleased: MHD_ContentReaderFreeCallback = { context in
    guard let context else { return }
    Unmanaged<StreamReader>.fromOpaque(context).takeRetainedValue().stream.abandon()
}

private final class HeaderCollector {
    var fields: [(name: String, value: String)] = []
}

/// Every header line of the request, in order, duplicates included.
private func headerFields(_ connection: OpaquePointer) -> [(name: String, value: String)] {
    connectionValues(connection, kind: MHD_ValueKind.HEADER_KIND)
}

/// The header fields, or the query arguments (decoded by libmicrohttpd, which reports the URL
/// without its query), in arrival order.
private func connectionValues(_ connection: OpaquePointer, kind: MHD_ValueKind) -> [(name: String, value: String)] {
    let collector = HeaderCollector()
    let iterator: MHD_KeyValueIterator = { raw, _, key, value in
        guard let raw, let key else { return MHD_Result.YES }
        let collector = Unmanaged<HeaderCollector>.fromOpaque(raw).takeUnretainedValue()
        collector.fields.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
        return MHD_Result.YES
    }
    withExtendedLifetime(collector) {
        _ = MHD_get_connection_values(connection, kind, iterator,
                                      Unmanaged.passUnretained(collector).toOpaque())
    }
    return collector.fields
}

/// `MHD_get_connection_info` is variadic, which Swift cannot call; its fixed arguments are
/// passed in registers exactly like a non-variadic call on the Linux ABIs (x86-64 SysV,
/// AAPCS64), so it is looked up once and called through a plain prototype. Without it, a
/// queued request cannot notice that its client left and simply waits for its turn.
private typealias ConnectionInfoFunction = @convention(c) (OpaquePointer?, MHD_ConnectionInfoType) -> UnsafePointer<MHD_ConnectionInfo>?

private let connectionInfo: ConnectionInfoFunction? = {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "MHD_get_connection_info") else { return nil }
    return unsafeBitCast(symbol, to: ConnectionInfoFunction.self)
}()

private func connectionSocket(_ connection: OpaquePointer) -> Int32 {
    guard let connectionInfo, let info = connectionInfo(connection, MHD_ConnectionInfoType.CONNECTION_INFO_CONNECTION_FD) else { return -1 }
    return info.pointee.connect_fd
}

/// Whether the peer still has its end open: a readable socket whose peek returns 0 bytes,
/// or a hang-up event, means it closed.
private func peerIsOpen(_ socket: Int32) -> Bool {
    guard socket >= 0 else { return true }
    let readHangUp: Int16 = 0x2000  // POLLRDHUP: Glibc exports it only under _GNU_SOURCE.
    var descriptor = pollfd(fd: socket, events: Int16(POLLIN) | readHangUp, revents: 0)
    guard poll(&descriptor, 1, 0) > 0 else { return true }
    if descriptor.revents & (Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL)) != 0 { return false }
    var byte: UInt8 = 0
    let peeked = recv(socket, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
    return peeked != 0
}

func randomHex(bytes count: Int) -> String {
    var generator = SystemRandomNumberGenerator()
    var text = ""
    for _ in 0..<count {
        let byte = UInt8.random(in: 0...255, using: &generator)
        text += String(byte >> 4, radix: 16) + String(byte & 15, radix: 16)
    }
    return text
}

extension CharacterSet {
    /// RFC 3986 unreserved characters: what a query name or value may hold unencoded.
    static let urlUnreservedCharacters = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}
