import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Files under the output directory: `images/<id>.<ext>` for `url` responses and
/// `tasks/<id>.json` for async tasks. Both expire `ttl` seconds after they were written,
/// judged by modification time, so expiry survives restarts. Image ids are 128-bit random hex;
/// task ids are `task_` and 32 hex digits (`ImageServer.newTaskID()`).
///
/// The folders must be this user's and writable by no one else (checked, and created 0700, at
/// start, where a probe file also proves they are writable). Files are opened without following
/// links and must be regular files: images are created exclusively (O_EXCL, 0600); a task record
/// is written to a new temporary file and renamed over the old one, so readers see whole records.
final class OutputStore: @unchecked Sendable {
    static let contentTypes = ["png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"]

    /// `$XDG_RUNTIME_DIR/schnell-server` when that is set, else `$XDG_CACHE_HOME/schnell/server`
    /// (`~/.cache/schnell/server`): private to the user, never a folder shared through /tmp.
    static var defaultRoot: String {
        let environment = ProcessInfo.processInfo.environment
        if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") {
            return URL(fileURLWithPath: runtime).appendingPathComponent("schnell-server").path
        }
        let cache = environment["XDG_CACHE_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? URL(fileURLWithPath: NSHomeDirectory()).appendingPathComponent(".cache").path
        return URL(fileURLWithPath: cache).appendingPathComponent("schnell/server").path
    }

    let imagesDirectory: URL
    let tasksDirectory: URL
    let ttlSeconds: Int

    /// Refusals name `--output-dir` and exit 2 from `schnell serve`, like a bad flag.
    init(root: String, ttlSeconds: Int) throws {
        let rootURL = URL(fileURLWithPath: root, isDirectory: true)
        imagesDirectory = rootURL.appendingPathComponent("images", isDirectory: true)
        tasksDirectory = rootURL.appendingPathComponent("tasks", isDirectory: true)
        self.ttlSeconds = ttlSeconds
        do {
            try OutputStore.makePrivateDirectory(rootURL.path, mayFollowLink: true)
            for directory in [imagesDirectory, tasksDirectory] {
                try OutputStore.makePrivateDirectory(directory.path, mayFollowLink: false)
                let probe = directory.appendingPathComponent(".write-check-\(randomHex(bytes: 8))").path
                try OutputStore.writeNewFile(probe, bytes: [0])
                unlink(probe)
            }
        } catch let error as StorageError {
            throw ServerOptions.ParseError(description: "--output-dir '\(root)' cannot be used: \(error.description)")
        }
    }

    /// A fresh image file name, `<32 hex>.<ext>`: 128 random bits, so image URLs cannot be guessed.
    static func newImageName(fileExtension: String) -> String {
        "\(randomHex(bytes: 16)).\(fileExtension)"
    }

    /// The content type of an image named exactly `<32 lowercase hex>.<known ext>`; nil for any
    /// other name (so no path can escape the folder, or reach another row of a shared store).
    static func imageContentType(name: String) -> String? {
        let parts = name.split(separator: ".")
        guard parts.count == 2, isID(parts[0]) else { return nil }
        return contentTypes[String(parts[1])]
    }

    /// Writes an image and returns its file name (`newImageName`).
    func storeImage(_ bytes: [UInt8], fileExtension: String) throws -> String {
        let name = OutputStore.newImageName(fileExtension: fileExtension)
        try OutputStore.writeNewFile(imagesDirectory.appendingPathComponent(name).path, bytes: bytes)
        return name
    }

    /// The bytes and content type of an unexpired image; nil for anything else, including
    /// names `imageContentType` refuses.
    func image(named name: String) -> (bytes: [UInt8], contentType: String)? {
        guard let contentType = OutputStore.imageContentType(name: name),
              let bytes = readUnexpired(imagesDirectory.appendingPathComponent(name).path) else { return nil }
        return (bytes, contentType)
    }

    /// Replaces the record of task `id` (`task_<32 hex>`).
    func saveTask(id: String, record: JSONValue) throws {
        let final = tasksDirectory.appendingPathComponent("\(id).json").path
        let temporary = tasksDirectory.appendingPathComponent(".\(id).\(randomHex(bytes: 8)).tmp").path
        try OutputStore.writeNewFile(temporary, bytes: record.serialized())
        guard rename(temporary, final) == 0 else {
            let error = StorageError(operation: "renaming \(temporary) to \(final)")
            unlink(temporary)
            throw error
        }
    }

    /// Deletes the record of task `id` (one that was never queued).
    func removeTask(id: String) {
        unlink(tasksDirectory.appendingPathComponent("\(id).json").path)
    }

    /// The unexpired record of task `id`, or nil (also for ids not of the form `task_<32 hex>`).
    func task(id: String) -> JSONValue? {
        guard OutputStore.isTaskID(id),
              let bytes = readUnexpired(tasksDirectory.appendingPathComponent("\(id).json").path) else { return nil }
        return try? JSONValue.parse(bytes)
    }

    /// The ids of the task records in the folder, read from their names alone (a record may
    /// have expired since; `task(id:)` says).
    func taskIDs() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: tasksDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(".json".count)) }.filter(OutputStore.isTaskID)
    }

    static func isTaskID(_ id: String) -> Bool {
        id.hasPrefix("task_") && isID(id.dropFirst("task_".count))
    }

    /// Unexpired task records whose status is `pending` or `running`, by id: after a restart,
    /// tasks that can never finish.
    func unfinishedTasks() -> [String: JSONValue] {
        var tasks: [String: JSONValue] = [:]
        for id in taskIDs() {
            guard let record = task(id: id), let status = record["status"]?.stringValue,
                  status == "pending" || status == "running" else { continue }
            tasks[id] = record
        }
        return tasks
    }

    /// Deletes expired images, task records and leftover temporary files (links themselves, never
    /// what they point to).
    func removeExpired() {
        for directory in [imagesDirectory, tasksDirectory] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            for name in names {
                let path = directory.appendingPathComponent(name).path
                var info = stat()
                guard lstat(path, &info) == 0, isExpired(info) else { continue }
                unlink(path)
            }
        }
    }

    private func isExpired(_ info: stat) -> Bool {
        Date().timeIntervalSince1970 - Double(info.st_mtim.tv_sec) > Double(ttlSeconds)
    }

    /// The contents of an unexpired regular file that this user owns, opened without following a
    /// link or blocking on a FIFO; nil for anything else.
    private func readUnexpired(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), !isExpired(info) else {
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return nil }
            filled += count
        }
        return bytes
    }

    private static func isID<Text: StringProtocol>(_ text: Text) -> Bool {
        text.count == 32 && text.allSatisfy { $0.isHexDigit && $0.isASCII && !$0.isUppercase }
    }

    /// Creates `path` (mode 0600) and writes `bytes`; fails if anything, a link included, is there.
    private static func writeNewFile(_ path: String, bytes: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError(operation: "creating \(path)") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let error = StorageError(operation: "writing \(path)")
                close(fd)
                unlink(path)
                throw error
            }
            written += count
        }
        guard close(fd) == 0 else {
            let error = StorageError(operation: "writing \(path)")
            unlink(path)
            throw error
        }
    }

    /// Creates `path` (0700, parents included) unless it exists, then checks that it is a folder
    /// this user owns that no one else may write to. Only the root given by the user may be a link.
    private static func makePrivateDirectory(_ path: String, mayFollowLink: Bool) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            guard errno == ENOENT, mayFollowLink else { throw StorageError(operation: "creating the folder \(path)") }
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw StorageError(description: "creating the folder \(path) failed: \(error.localizedDescription)")
            }
        }
        var info = stat()
        guard (mayFollowLink ? stat(path, &info) : lstat(path, &info)) == 0 else {
            throw StorageError(operation: "checking \(path)")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            let what = info.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a folder"
            throw StorageError(description: "\(path) is \(what)")
        }
        guard info.st_uid == geteuid() else {
            throw StorageError(description: "\(path) is owned by uid \(info.st_uid), not by this user (uid \(geteuid()))")
        }
        guard info.st_mode & 0o022 == 0 else {
            throw StorageError(description: "\(path) can be written by other users (mode \(String(info.st_mode & 0o7777, radix: 8))); run chmod go-w on it or choose another folder")
        }
    }
}

/// A failed file operation with the path and the system's reason.
struct StorageError: Error, CustomStringConvertible {
    let description: String

    init(description: String) {
        self.description = description
    }

    /// `operation` failed with the current `errno`.
    init(operation: String) {
        description = "\(operation) failed: \(String(cString: strerror(errno)))"
    }
}
