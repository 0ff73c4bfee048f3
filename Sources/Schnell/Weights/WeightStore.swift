import Foundation

/// The tensors of one model component, from a single safetensors file or from the shards
/// listed in a `*.safetensors.index.json`. Name lookups go through here so errors can name
/// the file a tensor should have been in.
public final class WeightStore: @unchecked Sendable {
    /// What a user pointed at (a file, an index, or a folder), for messages.
    public let path: String
    public let files: [SafeTensorsFile]
    private let byName: [String: WeightTensor]

    public var names: Set<String> { Set(byName.keys) }
    public var tensors: [WeightTensor] { Array(byName.values) }

    /// Opens a `.safetensors` file, a `.safetensors.index.json`, or a folder holding either
    /// (a folder's index wins; without one, all `.safetensors` files in it are read).
    public init(path: String) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw WeightsError.cannotOpen(file: path, reason: "no such file or folder")
        }
        var filePaths: [String]
        if isFolder.boolValue {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            if let index = entries.sorted().first(where: { $0.hasSuffix(".safetensors.index.json") }) {
                filePaths = try Self.shardPaths(index: (path as NSString).appendingPathComponent(index))
            } else {
                filePaths = entries.filter { $0.hasSuffix(".safetensors") }.sorted()
                    .map { (path as NSString).appendingPathComponent($0) }
            }
            guard !filePaths.isEmpty else {
                throw WeightsError.cannotOpen(file: path, reason: "the folder holds no .safetensors file")
            }
        } else if path.hasSuffix(".index.json") {
            filePaths = try Self.shardPaths(index: path)
        } else {
            filePaths = [path]
        }
        let files = try filePaths.map { try SafeTensorsFile(path: $0) }
        var byName: [String: WeightTensor] = [:]
        for file in files {
            for (name, tensor) in file.tensors {
                if let earlier = byName[name] {
                    throw WeightsError.invalidIndex(file: path, reason: "tensor '\(name)' is in both \(earlier.file) and \(file.path)")
                }
                byName[name] = tensor
            }
        }
        self.path = path
        self.files = files
        self.byName = byName
    }

    /// The shard files an index names, in a stable order; each must exist beside the index.
    static func shardPaths(index: String) throws -> [String] {
        let data = try ModelFile.contents(of: index)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let weightMap = object["weight_map"] as? [String: Any] else {
            throw WeightsError.invalidIndex(file: index, reason: "no 'weight_map' object")
        }
        let folder = (index as NSString).deletingLastPathComponent
        var shards: [String] = []
        for (name, value) in weightMap {
            guard let shard = value as? String, !shard.contains("/"), !shard.isEmpty else {
                throw WeightsError.invalidIndex(file: index, reason: "tensor '\(name)' maps to an invalid shard name")
            }
            if !shards.contains(shard) { shards.append(shard) }
        }
        return shards.sorted().map { (folder as NSString).appendingPathComponent($0) }
    }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    public func tensor(_ name: String) throws -> WeightTensor {
        guard let tensor = byName[name] else { throw WeightsError.missingTensor(name: name, file: path) }
        return tensor
    }

    /// The tensor, checked against the shape the model expects.
    public func tensor(_ name: String, shape: [Int]) throws -> WeightTensor {
        let tensor = try tensor(name)
        guard tensor.shape == shape else {
            throw WeightsError.wrongShape(name: name, file: tensor.file, expected: shape, actual: tensor.shape)
        }
        return tensor
    }

    /// How many numbered blocks the names below `prefix` hold: 1 + the largest N of
    /// `<prefix>N.…` (N in decimal digits), 0 when there is none. A gap in the numbering is
    /// left for the name table to report as missing tensors; N = Int.max, whose count would
    /// overflow, is left for it to report as unexpected.
    public func blockCount(prefix: String) -> Int {
        let indices = byName.keys.compactMap { name -> Int? in
            guard name.hasPrefix(prefix) else { return nil }
            let rest = name.dropFirst(prefix.count)
            guard let dot = rest.firstIndex(of: "."), dot > rest.startIndex,
                  rest[..<dot].allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return Int(rest[..<dot]).flatMap { $0 < Int.max ? $0 : nil }
        }
        return (indices.max() ?? -1) + 1
    }

    /// Parameters in all tensors. The sum cannot overflow: each tensor's bytes lie inside its
    /// file without overlapping another's, so it is at most the files' total size.
    public var parameterCount: Int { byName.values.reduce(0) { $0 + $1.count } }

    /// Tensor count per dtype, e.g. ["BF16": 780].
    public var dtypeCounts: [String: Int] {
        byName.values.reduce(into: [:]) { $0[$1.dtype.rawValue, default: 0] += 1 }
    }
}
