import Foundation

/// Files under the output directory: `images/<id>.<ext>` for `url` responses and
/// `tasks/<id>.json` for async tasks. Both expire `ttl` seconds after they were written,
/// judged by modification time, so expiry survives restarts. Ids are 128-bit random hex.
final class OutputStore: @unchecked Sendable {
    static let contentTypes = ["png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"]

    let imagesDirectory: URL
    let tasksDirectory: URL
    let ttlSeconds: Int
    private let fileManager = FileManager()

    init(root: String, ttlSeconds: Int) throws {
        let rootURL = URL(fileURLWithPath: root, isDirectory: true)
        imagesDirectory = rootURL.appendingPathComponent("images", isDirectory: true)
        tasksDirectory = rootURL.appendingPathComponent("tasks", isDirectory: true)
        self.ttlSeconds = ttlSeconds
        do {
            try fileManager.createDirectory(at: imagesDirectory, withIntermediateDirectories: true)
            try fileManager.createDirectory(at: tasksDirectory, withIntermediateDirectories: true)
        } catch {
            throw ListenError(description: "--output-dir '\(root)' cannot be used: \(error.localizedDescription)")
        }
    }

    /// Writes an image and returns its file name (`<id>.<ext>`).
    func storeImage(_ bytes: [UInt8], fileExtension: String) throws -> String {
        let name = "\(randomHex(bytes: 16)).\(fileExtension)"
        try Data(bytes).write(to: imagesDirectory.appendingPathComponent(name), options: .atomic)
        return name
    }

    /// The bytes and content type of an unexpired image; nil for anything else, including
    /// names that are not exactly `<32 hex>.<known ext>` (so no path can escape the folder).
    func image(named name: String) -> (bytes: [UInt8], contentType: String)? {
        let parts = name.split(separator: ".")
        guard parts.count == 2, parts[0].count == 32, parts[0].allSatisfy(\.isHexDigit),
              let contentType = OutputStore.contentTypes[String(parts[1])] else { return nil }
        let url = imagesDirectory.appendingPathComponent(name)
        guard !isExpired(url), let data = fileManager.contents(atPath: url.path) else { return nil }
        return (Array(data), contentType)
    }

    func saveTask(id: String, record: JSONValue) throws {
        try Data(record.serialized()).write(to: tasksDirectory.appendingPathComponent("\(id).json"), options: .atomic)
    }

    /// Every unexpired task record on disk, by id.
    func loadTasks() -> [String: JSONValue] {
        var tasks: [String: JSONValue] = [:]
        let files = (try? fileManager.contentsOfDirectory(at: tasksDirectory, includingPropertiesForKeys: nil)) ?? []
        for file in files where file.pathExtension == "json" && !isExpired(file) {
            guard let data = fileManager.contents(atPath: file.path), let record = try? JSONValue.parse(Array(data)) else { continue }
            tasks[file.deletingPathExtension().lastPathComponent] = record
        }
        return tasks
    }

    /// Deletes expired images and task records; returns the ids of the tasks removed.
    @discardableResult
    func removeExpired() -> [String] {
        var removedTasks: [String] = []
        for directory in [imagesDirectory, tasksDirectory] {
            let files = (try? fileManager.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []
            for file in files where isExpired(file) {
                guard (try? fileManager.removeItem(at: file)) != nil else { continue }
                if directory == tasksDirectory { removedTasks.append(file.deletingPathExtension().lastPathComponent) }
            }
        }
        return removedTasks
    }

    private func isExpired(_ file: URL) -> Bool {
        guard let attributes = try? fileManager.attributesOfItem(atPath: file.path),
              let modified = attributes[.modificationDate] as? Date else { return true }
        return Date().timeIntervalSince(modified) > Double(ttlSeconds)
    }
}
