import CLibPQ
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One libpq connection to PostgreSQL, shared by the server's threads behind a lock (each call
/// is one short statement or transaction), that reconnects by itself: before every call it
/// checks the connection, and a connection the server closed (a restart, `pg_terminate_backend`)
/// or one that failed is replaced by a fresh one, so a restarted PostgreSQL is picked up
/// without restarting the engine.
///
/// Errors: `TaskStoreError.unavailable` when the server cannot be reached or the connection was
/// lost during the call (whether that call's statement ran is then unknown), `.failed` when the
/// server answered with an SQL error.
final class PostgresConnection: @unchecked Sendable {
    /// Added to the connection string unless it sets them: a bounded connect, and TCP
    /// keepalives so a query whose server vanished without closing the socket fails in about
    /// 25 s instead of holding the lock for good.
    static let defaultParameters = [("connect_timeout", "5"), ("keepalives_idle", "10"),
                                    ("keepalives_interval", "5"), ("keepalives_count", "3")]
    /// After a failed connect, calls within this many seconds answer `.unavailable` at once
    /// instead of each waiting up to `connect_timeout` behind the lock.
    static let reconnectIntervalSeconds = 1.0

    private let connectionString: String
    private let lock = NSLock()
    // Guarded by `lock`.
    private var connection: OpaquePointer?
    private var lastFailedConnect: (at: Date, reason: String)?

    /// `url`: `postgres://user:password@host:port/database?parameter=value`, or libpq's
    /// `key=value` form. Throws `.unavailable` when the first connect fails.
    init(url: String) throws {
        connectionString = PostgresConnection.addingDefaults(to: url)
        _ = try lock.withLock { try openConnection() }
    }

    deinit {
        if let connection { PQfinish(connection) }
    }

    /// Runs `body` on the connection, alone (other threads wait).
    func withSession<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        try lock.withLock { try body(PostgresSession(connection: try openConnection())) }
    }

    /// Runs `body` between BEGIN and COMMIT; a thrown error rolls back and is rethrown.
    func transaction<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        try withSession { session in
            try session.query("BEGIN")
            do {
                let value = try body(session)
                try session.query("COMMIT")
                return value
            } catch {
                session.rollbackIfOpen()
                throw error
            }
        }
    }

    /// One statement on its own (autocommitted).
    @discardableResult
    func query(_ sql: String, _ parameters: [PostgresParameter] = [], binaryResults: Bool = false) throws -> PostgresResult {
        try withSession { try $0.query(sql, parameters, binaryResults: binaryResults) }
    }

    /// The open connection, or a fresh one when there is none, it failed, or the server closed it.
    private func openConnection() throws -> OpaquePointer {
        if let connection {
            if PQstatus(connection) == CONNECTION_OK && !PostgresConnection.hasUnaskedInput(connection) {
                return connection
            }
            PQfinish(connection)
            self.connection = nil
        }
        if let failed = lastFailedConnect, Date().timeIntervalSince(failed.at) < PostgresConnection.reconnectIntervalSeconds {
            throw TaskStoreError.unavailable(failed.reason)
        }
        guard let fresh = PQconnectdb(connectionString) else {
            throw TaskStoreError.unavailable("libpq could not allocate a connection")
        }
        guard PQstatus(fresh) == CONNECTION_OK else {
            let reason = PostgresConnection.message(PQerrorMessage(fresh), otherwise: "the connection failed")
            PQfinish(fresh)
            lastFailedConnect = (Date(), reason)
            throw TaskStoreError.unavailable(reason)
        }
        // Notices (e.g. CREATE TABLE IF NOT EXISTS skipping) would go to stderr.
        PQsetNoticeProcessor(fresh, { _, _ in }, nil)
        lastFailedConnect = nil
        connection = fresh
        return fresh
    }

    /// Between calls the server has nothing to say; input waiting on an idle connection means it
    /// closed it (a FATAL message and end of file: restart, shutdown, `pg_terminate_backend`).
    private static func hasUnaskedInput(_ connection: OpaquePointer) -> Bool {
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { return true }
        return poll(&descriptor, 1, 0) > 0
    }

    static func addingDefaults(to url: String) -> String {
        var result = url
        let isURI = url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")
        for (key, value) in defaultParameters {
            if isURI {
                guard !url.contains("?\(key)=") && !url.contains("&\(key)=") else { continue }
                result += (result.contains("?") ? "&" : "?") + "\(key)=\(value)"
            } else {
                guard !url.split(separator: " ").contains(where: { $0.hasPrefix("\(key)=") }) else { continue }
                result += " \(key)=\(value)"
            }
        }
        return result
    }

    static func message(_ text: UnsafePointer<CChar>?, otherwise fallback: String) -> String {
        let message = text.map { String(cString: $0) }?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return message.isEmpty ? fallback : message
    }
}

/// A query parameter: text (the server converts it to the parameter's type, so write `$1::int`
/// where the type is not clear from the statement), raw bytes for a bytea, or NULL.
enum PostgresParameter {
    case text(String)
    case bytes([UInt8])
    case null

    static func integer(_ value: Int) -> PostgresParameter { .text(String(value)) }
}

/// A statement's rows (values as the server sent them) and the rows it inserted, updated or deleted.
struct PostgresResult {
    var rows: [PostgresRow]
    var affectedRows: Int
}

/// One row. In text results every value is its text form (bytea as `\x` and hex digits); in
/// binary results (`binaryResults: true`) each value is the type's binary form, which for text
/// and bytea is the bytes themselves: such queries cast other columns to text.
struct PostgresRow {
    let values: [[UInt8]?]
    let isBinary: Bool

    func isNull(_ column: Int) -> Bool { values[column] == nil }

    func string(_ column: Int) throws -> String {
        String(decoding: try value(column), as: UTF8.self)
    }

    func integer(_ column: Int) throws -> Int {
        let text = try string(column)
        guard let integer = Int(text) else { throw TaskStoreError.failed("column \(column) is '\(text)', not an integer") }
        return integer
    }

    /// `t` in a boolean column's text form, `true` once cast to text.
    func bool(_ column: Int) throws -> Bool {
        let text = try string(column)
        return text == "t" || text == "true"
    }

    func bytes(_ column: Int) throws -> [UInt8] {
        let raw = try value(column)
        if isBinary { return raw }
        guard let decoded = PostgresRow.decodeHex(raw) else {
            throw TaskStoreError.failed("column \(column) is not bytea in hex form")
        }
        return decoded
    }

    private func value(_ column: Int) throws -> [UInt8] {
        guard let value = values[column] else { throw TaskStoreError.failed("column \(column) is NULL") }
        return value
    }

    /// bytea's text output (`bytea_output = hex`, the default since PostgreSQL 9.0): `\x` then two
    /// hex digits per byte.
    static func decodeHex(_ text: [UInt8]) -> [UInt8]? {
        guard text.count >= 2, text[0] == UInt8(ascii: "\\"), text[1] == UInt8(ascii: "x"), text.count % 2 == 0 else { return nil }
        func nibble(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity((text.count - 2) / 2)
        var index = 2
        while index < text.count {
            guard let high = nibble(text[index]), let low = nibble(text[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }
}

/// The connection while one caller holds it (inside `withSession` or `transaction`).
struct PostgresSession {
    let connection: OpaquePointer

    /// Runs one statement with `$1, $2, …` bound to `parameters` (text, or binary for bytes).
    @discardableResult
    func query(_ sql: String, _ parameters: [PostgresParameter] = [], binaryResults: Bool = false) throws -> PostgresResult {
        // C copies of the values, alive until PQexecParams returns.
        var values: [UnsafePointer<CChar>?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        defer { for value in values { free(UnsafeMutableRawPointer(mutating: value)) } }
        for parameter in parameters {
            switch parameter {
            case .null:
                values.append(nil)
                lengths.append(0)
                formats.append(0)
            case .text(let text):
                values.append(UnsafePointer(strdup(text)))
                lengths.append(0)
                formats.append(0)
            case .bytes(let bytes):
                guard let copy = malloc(max(bytes.count, 1)) else { throw TaskStoreError.failed("out of memory for \(bytes.count) bytes") }
                bytes.withUnsafeBytes { source in
                    if let base = source.baseAddress { copy.copyMemory(from: base, byteCount: bytes.count) }
                }
                values.append(UnsafePointer(copy.assumingMemoryBound(to: CChar.self)))
                lengths.append(Int32(bytes.count))
                formats.append(1)
            }
        }
        let result = PQexecParams(connection, sql, Int32(parameters.count), nil, values, lengths, formats, binaryResults ? 1 : 0)
        guard let result else { throw failure(PostgresConnection.message(PQerrorMessage(connection), otherwise: "no result")) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            throw failure(PostgresConnection.message(PQresultErrorMessage(result), otherwise: "the statement failed"))
        }
        var rows: [PostgresRow] = []
        let columnCount = PQnfields(result)
        for row in 0..<PQntuples(result) {
            var rowValues: [[UInt8]?] = []
            for column in 0..<columnCount {
                guard PQgetisnull(result, row, column) == 0, let value = PQgetvalue(result, row, column) else {
                    rowValues.append(nil)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                rowValues.append(Array(UnsafeRawBufferPointer(start: value, count: length)))
            }
            rows.append(PostgresRow(values: rowValues, isBinary: binaryResults))
        }
        let affectedRows = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
        return PostgresResult(rows: rows, affectedRows: affectedRows)
    }

    /// A failed call: the server's SQL error while the connection is fine, otherwise a lost connection.
    private func failure(_ message: String) -> TaskStoreError {
        PQstatus(connection) == CONNECTION_OK ? .failed(message) : .unavailable(message)
    }

    /// Ends a transaction a failed statement left open; a lost connection has none to end.
    func rollbackIfOpen() {
        guard PQstatus(connection) == CONNECTION_OK, PQtransactionStatus(connection) != PQTRANS_IDLE,
              let result = PQexec(connection, "ROLLBACK") else { return }
        PQclear(result)
    }
}
