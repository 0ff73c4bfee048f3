import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Absolute deadlines that libmicrohttpd lacks: its timeout is an idle timeout, reset by every
/// byte, so a client trickling one header byte a second (slowloris) would hold its connection
/// forever. Each connection is here from libmicrohttpd's start notice to its close notice, with
/// a deadline while it sends a request head or body; a connection past its deadline has its
/// socket shut down, which its own thread sees as the peer leaving.
///
/// Invariant: an entry is removed (under `lock`) before libmicrohttpd closes its socket, so a
/// shut-down descriptor is never one that was closed and reused.
final class ConnectionWatchdog: @unchecked Sendable {
    private struct Entry {
        var socket: Int32
        /// When the connection is cut; nil while the server itself holds it (handling, answering).
        var deadline: DispatchTime?
    }

    private let headTimeoutSeconds: Int
    private let minBodyBytesPerSecond: Int
    private let lock = NSLock()
    // Guarded by `lock`, keyed by libmicrohttpd's connection pointer.
    private var entries: [OpaquePointer: Entry] = [:]
    private let timer: DispatchSourceTimer

    init(headTimeoutSeconds: Int, minBodyBytesPerSecond: Int) {
        self.headTimeoutSeconds = headTimeoutSeconds
        self.minBodyBytesPerSecond = minBodyBytesPerSecond
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .userInitiated))
        timer.schedule(deadline: .now() + 0.25, repeating: 0.25)
        timer.setEventHandler { [weak self] in self?.cutExpired() }
        timer.resume()
    }

    deinit { timer.cancel() }

    func stop() { timer.cancel() }

    /// A new connection (or one that finished a request and may send the next): its head is due.
    func awaitHead(_ connection: OpaquePointer, socket: Int32? = nil) {
        lock.withLock {
            guard let socket = socket ?? entries[connection]?.socket else { return }
            entries[connection] = Entry(socket: socket, deadline: .now() + .seconds(headTimeoutSeconds))
        }
    }

    /// The head arrived and announced `bodyBytes`: the body is due at the minimum rate, after the
    /// same grace period a head gets.
    func awaitBody(_ connection: OpaquePointer, bodyBytes: Int) {
        let seconds = Double(headTimeoutSeconds) + Double(bodyBytes) / Double(minBodyBytesPerSecond)
        lock.withLock { entries[connection]?.deadline = .now() + seconds }
    }

    /// The request is complete: the server now holds the connection until it has answered.
    func holding(_ connection: OpaquePointer) {
        lock.withLock { entries[connection]?.deadline = nil }
    }

    func closed(_ connection: OpaquePointer) {
        lock.withLock { entries[connection] = nil }
    }

    private func cutExpired() {
        let now = DispatchTime.now()
        lock.withLock {
            for (connection, entry) in entries {
                guard let deadline = entry.deadline, deadline < now else { continue }
                shutdown(entry.socket, Int32(SHUT_RDWR))
                entries[connection]?.deadline = nil
            }
        }
    }
}

/// The request body bytes all connections hold at once, reserved from each body's announced
/// length before any of it is read.
final class BodyMemoryBudget: @unchecked Sendable {
    let limitBytes: Int
    private let lock = NSLock()
    // Guarded by `lock`.
    private var reservedBytes = 0

    init(limitBytes: Int) { self.limitBytes = limitBytes }

    func reserve(_ bytes: Int) -> Bool {
        lock.withLock {
            guard bytes <= limitBytes - reservedBytes else { return false }
            reservedBytes += bytes
            return true
        }
    }

    func release(_ bytes: Int) {
        lock.withLock { reservedBytes -= bytes }
    }
}
