import Foundation

/// A response body written while it is being sent (server-sent events): the producer `send`s
/// chunks from any thread and `finish`es; the connection's thread takes them with `next` and
/// writes them out. When the client goes away first, `abandon` ends the stream and runs
/// `onAbandon` once, so the producer can stop its work.
final class ResponseStream: @unchecked Sendable {
    enum Chunk: Equatable {
        case bytes([UInt8])
        case end
        /// Nothing arrived within the wait.
        case idle
    }

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var pending: [[UInt8]] = []
    private var finished = false
    private var abandoned = false
    private var abandonHandler: (@Sendable () -> Void)?

    /// Queues `bytes` for the client; false once the client has gone.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        condition.withLock {
            guard !abandoned, !finished else { return false }
            pending.append(bytes)
            condition.broadcast()
            return true
        }
    }

    /// Ends the body after what was sent.
    func finish() {
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }

    /// Runs `handler` when the client leaves before `finish`; at once if it already has.
    func onAbandon(_ handler: @escaping @Sendable () -> Void) {
        let gone = condition.withLock {
            if abandoned { return true }
            abandonHandler = handler
            return false
        }
        if gone { handler() }
    }

    var isAbandoned: Bool { condition.withLock { abandoned } }

    /// The next chunk, waiting up to `timeout` seconds for one.
    func next(timeout: Double) -> Chunk {
        condition.withLock {
            let deadline = Date(timeIntervalSinceNow: timeout)
            while pending.isEmpty && !finished && !abandoned {
                if !condition.wait(until: deadline) { break }
            }
            if !pending.isEmpty { return .bytes(pending.removeFirst()) }
            return finished || abandoned ? .end : .idle
        }
    }

    /// The client is gone (or the connection ended before `finish`): later sends are dropped.
    func abandon() {
        let handler: (@Sendable () -> Void)? = condition.withLock {
            guard !abandoned, !finished else { return nil }
            abandoned = true
            pending.removeAll()
            condition.broadcast()
            defer { abandonHandler = nil }
            return abandonHandler
        }
        handler?()
    }
}

/// Server-sent events: `event: NAME` and one `data:` line of JSON, then a blank line.
enum ServerSentEvent {
    static func encode(_ name: String, _ data: JSONValue) -> [UInt8] {
        Array("event: \(name)\ndata: ".utf8) + data.serialized() + Array("\n\n".utf8)
    }

    /// A comment line: keeps proxies and clients from timing out between events.
    static let keepAlive = Array(": keep-alive\n\n".utf8)
}
