import Foundation
import Schnell

/// The LoRA adapters a server offers (`schnell serve --lora-dir DIR`), read once at start and
/// named by their file names; requests pick from them (`"loras"`), so switching adapters never
/// reloads the base model. Also the bounds on a request's adapters and the text that records
/// applied ones in image metadata, shared with `schnell generate`.
public enum LoRACatalog {
    /// Adapters one request may apply at once.
    public static let maxPerRequest = 8
    /// A request's scale per adapter (a scale beyond it is almost surely a typo that would burn
    /// a whole generation; `schnell generate --lora` takes any finite scale).
    public static let scaleRange: ClosedRange<Double> = -10...10

    /// A folder or file of `--lora-dir` that could not be used, with the reason.
    public struct LoadError: Error, CustomStringConvertible, Equatable {
        public let path: String
        public let reason: String
        /// The path once: the pipeline's own errors usually name the file already.
        public var description: String { reason.contains(path) ? "--lora-dir: \(reason)" : "--lora-dir: \(path): \(reason)" }
    }

    /// The adapter files in `folder`: regular files (or links to them) directly inside it whose
    /// names end in `.safetensors` (any case), sorted by name; names starting with `.` are left
    /// out (hidden files, partial downloads). Throws when the folder cannot be listed.
    public static func files(in folder: String) throws -> [String] {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw LoadError(path: folder, reason: "no such folder")
        }
        guard isFolder.boolValue else { throw LoadError(path: folder, reason: "not a folder") }
        let names: [String]
        do {
            names = try manager.contentsOfDirectory(atPath: folder)
        } catch {
            throw LoadError(path: folder, reason: "cannot be listed (\(error.localizedDescription))")
        }
        return names.filter { !$0.hasPrefix(".") && ($0 as NSString).pathExtension.lowercased() == "safetensors" }
            .sorted()
            .map { (folder as NSString).appendingPathComponent($0) }
            .filter { path in
                var entryIsFolder: ObjCBool = false
                return manager.fileExists(atPath: path, isDirectory: &entryIsFolder) && !entryIsFolder.boolValue
            }
    }

    /// Every adapter file of `folder` read with `load` (the pipeline's `loadLoRA`), by name. The
    /// first file that fails stops it: the error names that file and gives the reason, so a
    /// server never starts without an adapter its operator put there.
    public static func load(folder: String, using load: (String) throws -> LoRAAdapter) throws -> [String: LoRAAdapter] {
        var adapters: [String: LoRAAdapter] = [:]
        for path in try files(in: folder) {
            let adapter: LoRAAdapter
            do {
                adapter = try load(path)
            } catch {
                throw LoadError(path: path, reason: "\(error)")
            }
            if let other = adapters[adapter.name] {
                throw LoadError(path: path, reason: "its name '\(adapter.name)' is taken by \(other.path); rename one")
            }
            adapters[adapter.name] = adapter
        }
        return adapters
    }

    /// `name:scale, name:scale`: how an image's metadata records the adapters applied to it.
    public static func summary(_ loras: [(name: String, scale: Double)]) -> String {
        loras.map { "\($0.name):\(formatScale($0.scale))" }.joined(separator: ", ")
    }

    /// A scale in its shortest usual form: 1, 0.8, -0.25.
    public static func formatScale(_ scale: Double) -> String {
        String(format: "%g", scale)
    }

    /// The warning for an adapter read with unknown keys skipped (`--lora-skip-unknown`), listing
    /// them; nil when none was skipped.
    public static func skippedKeysWarning(_ adapter: LoRAAdapter) -> String? {
        guard !adapter.skippedKeys.isEmpty else { return nil }
        let count = adapter.skippedKeys.count
        return "warning: \(adapter.path): skipped \(count) key\(count == 1 ? "" : "s") it does not know (--lora-skip-unknown): "
            + adapter.skippedKeys.joined(separator: ", ")
    }
}
