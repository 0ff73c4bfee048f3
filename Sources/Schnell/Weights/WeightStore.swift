import Foundation

/// The tensors of one model component, from a single safetensors or GGUF file or from the
/// shards listed in a `*.safetensors.index.json`. Name lookups go through here so errors can name
/// the file a tensor should have been in.
///
/// Two conventions are resolved here, once, so that no model sees them: ComfyUI's scaled fp8
/// (a `scaled_fp8` marker and per-layer `.scale_weight`/`.scale_input`, or `.weight_scale`/
/// `.input_scale`: the weight scale is attached to its weight, the input scale, which only an
/// fp8 matmul of the activations uses, is dropped), and llama.cpp's T5 names in GGUF encoders
/// (`enc.blk.N.attn_q`, ...), which `T5WeightNames.transformersName` maps onto transformers'.
public final class WeightStore: @unchecked Sendable {
    /// What a user pointed at (a file, an index, or a folder), for messages.
    public let path: String
    /// The files read, in order.
    public let filePaths: [String]
    /// Metadata of the files (safetensors' `__metadata__`, GGUF's key/value pairs), merged.
    public let metadata: [String: String]
    /// The files' format: "safetensors", or "GGUF v3" and the architecture its metadata names.
    public let format: String
    private let byName: [String: WeightTensor]

    public var names: Set<String> { Set(byName.keys) }
    public var tensors: [WeightTensor] { Array(byName.values) }

    /// Opens a `.safetensors` or `.gguf` file, a `.safetensors.index.json`, or a folder holding
    /// either (a folder's index wins; without one, all `.safetensors` files in it are read, or
    /// else its one `.gguf` file).
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
                if filePaths.isEmpty {
                    filePaths = entries.filter { $0.hasSuffix(".gguf") }.sorted()
                    guard filePaths.count <= 1 else {
                        throw WeightsError.cannotOpen(file: path, reason: "the folder holds several .gguf files (\(filePaths.joined(separator: ", "))); name one")
                    }
                }
                filePaths = filePaths.map { (path as NSString).appendingPathComponent($0) }
            }
            guard !filePaths.isEmpty else {
                throw WeightsError.cannotOpen(file: path, reason: "the folder holds no .safetensors or .gguf file")
            }
        } else if path.hasSuffix(".index.json") {
            filePaths = try Self.shardPaths(index: path)
        } else {
            filePaths = [path]
        }
        var byName: [String: WeightTensor] = [:]
        var metadata: [String: String] = [:]
        var formats: [String] = []
        for filePath in filePaths {
            let (tensors, fileMetadata, format) = try Self.readFile(filePath)
            if !formats.contains(format) { formats.append(format) }
            metadata.merge(fileMetadata) { first, _ in first }
            for (name, tensor) in tensors {
                if let earlier = byName[name] {
                    throw WeightsError.invalidIndex(file: path, reason: "tensor '\(name)' is in both \(earlier.file) and \(filePath)")
                }
                byName[name] = tensor
            }
        }
        byName = try Self.renamingLlamaCppT5(byName, metadata: metadata)
        byName = try Self.attachingFP8Scales(byName)
        self.path = path
        self.filePaths = filePaths
        self.metadata = metadata
        self.format = formats.joined(separator: " + ")
        self.byName = byName
    }

    /// A file's tensors and metadata, by its magic: GGUF files start with "GGUF". A file named
    /// `.gguf` without it is refused as a damaged GGUF (a safetensors error would mislead).
    static func readFile(_ path: String) throws -> (tensors: [String: WeightTensor], metadata: [String: String], format: String) {
        let (descriptor, _) = try ModelFile.open(path)
        var magic = [UInt8](repeating: 0, count: 4)
        let got = read(descriptor, &magic, 4)
        close(descriptor)
        if (got == 4 && magic == Array("GGUF".utf8)) || path.lowercased().hasSuffix(".gguf") {
            let file = try GGUFFile(path: path)
            let architecture = file.metadata["general.architecture"].map { "general.architecture \($0)" } ?? "no architecture metadata"
            return (file.tensors, file.metadata, "GGUF v\(file.version) (\(architecture))")
        }
        let file = try SafeTensorsFile(path: path)
        return (file.tensors, file.metadata, "safetensors")
    }

    /// Tensors named as llama.cpp names T5 encoders, under transformers' names (each keeps its
    /// own name for messages); other stores unchanged.
    static func renamingLlamaCppT5(_ tensors: [String: WeightTensor], metadata: [String: String]) throws -> [String: WeightTensor] {
        guard metadata["general.architecture"] == "t5encoder" || metadata["general.architecture"] == "t5"
                || tensors["enc.output_norm.weight"] != nil else { return tensors }
        let gated = tensors.keys.contains { $0.hasSuffix(".ffn_gate.weight") }
        var renamed: [String: WeightTensor] = [:]
        for (name, tensor) in tensors {
            let target = T5WeightNames.transformersName(llamaCpp: name, gated: gated) ?? name
            if renamed[target] != nil {
                throw WeightsError.invalidIndex(file: tensor.file, reason: "tensors '\(name)' and another both map to '\(target)'")
            }
            renamed[target] = tensor
        }
        return renamed
    }

    /// fp8 weights with their scales attached; scale tensors, input scales and the marker removed.
    static func attachingFP8Scales(_ tensors: [String: WeightTensor]) throws -> [String: WeightTensor] {
        var result = tensors
        for (name, scale) in tensors {
            let base: Substring
            if name.hasSuffix(".scale_weight") {
                base = name.dropLast(".scale_weight".count)
            } else if name.hasSuffix(".weight_scale") {
                base = name.dropLast(".weight_scale".count)
            } else {
                if name == "scaled_fp8" || name.hasSuffix(".scale_input") || name.hasSuffix(".input_scale") {
                    result[name] = nil
                }
                continue
            }
            result[name] = nil
            if name.hasSuffix(".weight_scale"), tensors[base + ".scale_weight"] != nil {
                throw WeightsError.invalidHeader(file: scale.file, reason: "'\(base).weight' has two scales, '\(base).scale_weight' and '\(name)'")
            }
            guard let weight = tensors[base + ".weight"] else {
                throw WeightsError.unexpectedTensors(names: [name], file: scale.file)
            }
            let rows = weight.shape.first ?? 1
            guard !scale.dtype.isBlockType, scale.count == 1 || scale.count == rows else {
                throw WeightsError.wrongShape(name: name, file: scale.file, expected: [rows], actual: scale.shape)
            }
            let values = scale.floats()
            guard values.allSatisfy({ $0.isFinite }) else {
                throw WeightsError.invalidHeader(file: scale.file, reason: "tensor '\(name)' holds a scale that is not finite")
            }
            result[base + ".weight"] = weight.scaled(by: ScaleVector(values: values))
        }
        return result
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

    /// How many weights carry an fp8 scale.
    public var scaledWeightCount: Int { byName.values.filter { $0.scale != nil }.count }

    /// Bytes of all tensors as stored.
    public var sizeBytes: Int { byName.values.reduce(0) { $0 + $1.sizeBytes } }

    /// Tensor count per dtype, e.g. ["BF16": 780].
    public var dtypeCounts: [String: Int] {
        byName.values.reduce(into: [:]) { $0[$1.dtype.rawValue, default: 0] += 1 }
    }
}
