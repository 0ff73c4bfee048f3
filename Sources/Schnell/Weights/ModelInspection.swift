import Foundation

/// What `schnell inspect` reports about a file or folder: the model kind found, its
/// configuration, dtypes, parameter count and any missing or unexpected tensors.
public struct ModelReport: Sendable {
    public enum Kind: Sendable {
        case pipeline
        case model(ModelFamily)

        public var name: String {
            switch self {
            case .pipeline: return "full pipeline"
            case .model(let family): return family.name
            }
        }
    }

    public let path: String
    public let kind: Kind
    /// Ordered (label, value) lines describing the configuration.
    public let details: [(String, String)]
    public let parameterCount: Int
    public let dtypeCounts: [String: Int]
    /// Bytes of the tensors as stored.
    public let sizeBytes: Int
    /// Each tensor's name (as the file has it), dtype and shape, in name order.
    public let tensors: [(name: String, dtype: String, shape: [Int])]
    /// Tensors the loader would look for and not find, or find in another shape.
    public let missing: [String]
    /// Tensors the loader would refuse as belonging to no layer.
    public let unexpected: [String]
    /// Reports for each component of a pipeline folder.
    public let components: [ModelReport]
}

/// Reads checkpoints exactly as the loaders do (`Checkpoint`, each family's configuration and
/// name table), so a report lists what loading would refuse.
public enum ModelInspector {
    /// Inspects a pipeline folder (model_index.json), a component folder or a single file.
    public static func inspect(path: String) throws -> ModelReport {
        let isPipeline = FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("model_index.json"))
        guard isPipeline else { return try report(path: path, checkpoint: Checkpoint.recognise(path: path)) }
        let present = ModelFamily.allCases.filter { ModelFolder.componentFolder(in: path, component: $0.component) != nil }
        let components = try present.map { family in
            let folder = (path as NSString).appendingPathComponent(family.component)
            return try report(path: folder, checkpoint: Checkpoint(path: folder, family: family))
        }
        return ModelReport(path: path, kind: .pipeline,
                           details: [("components", present.map(\.component).joined(separator: ", "))],
                           parameterCount: components.reduce(0) { $0 + $1.parameterCount },
                           dtypeCounts: components.reduce(into: [:]) { $0.merge($1.dtypeCounts, uniquingKeysWith: +) },
                           sizeBytes: components.reduce(0) { $0 + $1.sizeBytes }, tensors: [],
                           missing: [], unexpected: [], components: components)
    }

    static func report(path: String, checkpoint: Checkpoint) throws -> ModelReport {
        let configSource = checkpoint.folder.configPath == nil ? "tensor shapes" : "config.json"
        let layout = checkpoint.layout == .diffusers
            ? (checkpoint.store.metadata["general.architecture"] == nil ? "diffusers" : "llama.cpp names (GGUF)")
            : "original (BFL) names"
        let table: WeightTable
        let details: [(String, String)]
        switch checkpoint.family {
        case .transformer:
            let config = try TransformerConfig(checkpoint: checkpoint)
            table = FluxWeightNames.table(config)
            let axes = config.axesDimsRope.map { $0.map(String.init).joined(separator: "/") }
                ?? "unknown (single files do not store them; 16/56/56 is assumed only for 128-wide heads)"
            details = [("layout", layout), ("configuration from", configSource),
                       ("variant", config.guidanceEmbeds ? "dev-like (guidance embedding)" : "schnell-like (no guidance embedding)"),
                       ("hidden size", "\(config.innerDim) (\(config.heads) heads x \(config.headDim))"),
                       ("blocks", "\(config.numLayers) double-stream + \(config.numSingleLayers) single-stream"),
                       ("latent channels in/out", "\(config.inChannels)/\(config.outChannels)"),
                       ("text width (T5)", "\(config.jointAttentionDim)"), ("pooled width (CLIP)", "\(config.pooledProjectionDim)"),
                       ("rotary axes", axes), ("MLP ratio", "\(config.mlpRatio)")]
        case .vae:
            let config = try AutoencoderConfig(checkpoint: checkpoint)
            table = VAEWeightNames.table(config)
            details = [("layout", layout),
                       ("configuration from", checkpoint.folder.configPath == nil ? "FLUX.1's VAE (assumed)" : "config.json"),
                       ("latent channels", "\(config.latentChannels)"),
                       ("block widths", config.blockOutChannels.map(String.init).joined(separator: "/")),
                       ("layers per block", "\(config.layersPerBlock)")]
        case .clip:
            let config = try CLIPTextConfig(checkpoint: checkpoint)
            table = CLIPWeightNames.table(config)
            details = [("configuration from", configSource), ("vocabulary", "\(config.vocabularySize)"),
                       ("hidden size", "\(config.hiddenSize) (\(config.headCount) heads)"),
                       ("layers", "\(config.layerCount)"), ("positions", "\(config.maxPositions)")]
        case .t5:
            let config = try T5Config(checkpoint: checkpoint)
            table = T5WeightNames.table(config)
            // T5's names are the same in both layouts; llama.cpp's are renamed at load, and each
            // tensor keeps the name its file gave it.
            let renamed = checkpoint.store.names.contains { (try? checkpoint.store.tensor($0).name) != $0 }
            let names = renamed ? "llama.cpp names (GGUF)" : "transformers names"
            details = [("layout", names), ("configuration from", configSource), ("vocabulary", "\(config.vocabularySize)"),
                       ("d_model", "\(config.modelSize) (\(config.headCount) heads x \(config.headSize))"),
                       ("layers", "\(config.layerCount)"), ("feed-forward", config.feedForwardProjection),
                       ("d_ff", "\(config.feedForwardSize)")]
        }
        var missing: [String] = [], unexpected: [String] = []
        for problem in table.problems(in: checkpoint.store, layout: checkpoint.layout, prefix: checkpoint.prefix) {
            switch problem {
            case let .missingTensor(name, _): missing.append(name)
            case let .wrongShape(name, _, expected, actual): missing.append("\(name) (shape \(actual), expected \(expected))")
            case let .unexpectedTensors(names, _): unexpected += names
            default: break
            }
        }
        var fileDetails = [("format", checkpoint.store.format)]
        if checkpoint.store.scaledWeightCount > 0 {
            fileDetails.append(("fp8 scales", "\(checkpoint.store.scaledWeightCount) weights carry a scale (scaled fp8)"))
        }
        let tensors = checkpoint.store.tensors.sorted { $0.name < $1.name }.map { ($0.name, $0.dtype.rawValue, $0.shape) }
        return ModelReport(path: path, kind: .model(checkpoint.family), details: fileDetails + details,
                           parameterCount: checkpoint.store.parameterCount, dtypeCounts: checkpoint.store.dtypeCounts,
                           sizeBytes: checkpoint.store.sizeBytes, tensors: tensors,
                           missing: missing, unexpected: unexpected, components: [])
    }
}
