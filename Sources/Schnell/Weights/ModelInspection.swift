import Foundation

/// What `schnell inspect` reports about a file or folder: the model kind found, its
/// configuration, dtypes, parameter count and any missing or unexpected tensors.
public struct ModelReport: Sendable {
    public enum Kind: String, Sendable {
        case pipeline = "full pipeline", transformer = "FLUX transformer", vae = "VAE (AutoencoderKL)"
        case clip = "CLIP text encoder", t5 = "T5 encoder"
    }

    public let path: String
    public let kind: Kind
    /// Ordered (label, value) lines describing the configuration.
    public let details: [(String, String)]
    public let parameterCount: Int
    public let dtypeCounts: [String: Int]
    public let missing: [String]
    public let unexpected: [String]
    /// Reports for each component of a pipeline folder.
    public let components: [ModelReport]
}

public enum ModelInspector {
    /// Inspects a pipeline folder (model_index.json), a component folder or a single file.
    public static func inspect(path: String) throws -> ModelReport {
        let fileManager = FileManager.default
        var isFolder: ObjCBool = false
        guard fileManager.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw WeightsError.cannotOpen(file: path, reason: "no such file or folder")
        }
        if isFolder.boolValue, fileManager.fileExists(atPath: (path as NSString).appendingPathComponent("model_index.json")) {
            let names = ["transformer", "vae", "text_encoder", "text_encoder_2"]
            let components = try names.compactMap { name -> ModelReport? in
                let folder = (path as NSString).appendingPathComponent(name)
                return fileManager.fileExists(atPath: folder) ? try inspect(path: folder) : nil
            }
            return ModelReport(path: path, kind: .pipeline, details: [("components", names.filter {
                fileManager.fileExists(atPath: (path as NSString).appendingPathComponent($0)) }.joined(separator: ", "))],
                parameterCount: components.reduce(0) { $0 + $1.parameterCount },
                dtypeCounts: components.reduce(into: [:]) { total, report in total.merge(report.dtypeCounts, uniquingKeysWith: +) },
                missing: [], unexpected: [], components: components)
        }
        if isFolder.boolValue, fileManager.fileExists(atPath: (path as NSString).appendingPathComponent("transformer")) {
            return try transformerReport(path: path)
        }
        let store = try WeightStore(path: path)
        if FluxCheckpoint.detect(store) != nil { return try transformerReport(path: path) }
        return try otherReport(path: path, store: store)
    }

    static func transformerReport(path: String) throws -> ModelReport {
        let checkpoint = try FluxCheckpoint(path: path)
        let store = checkpoint.store
        let config = checkpoint.config
        let expected = FluxWeightNames.table(config).expectedTensors(checkpoint.layout)
        let expectedNames = Set(expected.map { checkpoint.prefix + $0.name })
        var missing: [String] = []
        for (name, shape) in expected {
            guard let tensor = try? store.tensor(checkpoint.prefix + name) else { missing.append(name); continue }
            if tensor.shape != shape { missing.append("\(name) (shape \(tensor.shape), expected \(shape))") }
        }
        let unexpected = store.names.filter { $0.hasPrefix(checkpoint.prefix) && !expectedNames.contains($0) }.sorted()
        let axes = config.axesDimsRope.map { $0.map(String.init).joined(separator: "/") } ?? "unknown (single files do not store them; 16/56/56 is assumed only for 128-wide heads)"
        return ModelReport(
            path: path, kind: .transformer,
            details: [("layout", checkpoint.layout == .diffusers ? "diffusers" : "original single file"),
                      ("configuration from", checkpoint.configSource),
                      ("variant", config.guidanceEmbeds ? "dev-like (guidance embedding)" : "schnell-like (no guidance embedding)"),
                      ("hidden size", "\(config.innerDim) (\(config.heads) heads x \(config.headDim))"),
                      ("blocks", "\(config.numLayers) double-stream + \(config.numSingleLayers) single-stream"),
                      ("latent channels in/out", "\(config.inChannels)/\(config.outChannels)"),
                      ("text width (T5)", "\(config.jointAttentionDim)"), ("pooled width (CLIP)", "\(config.pooledProjectionDim)"),
                      ("rotary axes", axes), ("MLP ratio", "\(config.mlpRatio)")],
            parameterCount: store.parameterCount, dtypeCounts: store.dtypeCounts,
            missing: missing, unexpected: unexpected, components: [])
    }

    /// VAE and text encoders, recognised by signature tensors; their configurations are read
    /// from shapes.
    static func otherReport(path: String, store: WeightStore) throws -> ModelReport {
        func shape(_ name: String) -> [Int]? { try? store.tensor(name).shape }
        func count(_ prefix: String) -> Int {
            Set(store.names.compactMap { name -> Int? in
                guard name.hasPrefix(prefix) else { return nil }
                return Int(name.dropFirst(prefix.count).prefix { $0 != "." })
            }).count
        }
        var details: [(String, String)] = []
        let kind: ModelReport.Kind
        if let conv = shape("decoder.conv_in.weight") {
            kind = .vae
            details = [("latent channels", "\(conv[1])"), ("decoder width", "\(conv[0])"),
                       ("layout", store.contains("decoder.up_blocks.0.resnets.0.conv1.weight") ? "diffusers" : "original (ae.safetensors)")]
        } else if let embedding = shape("text_model.embeddings.token_embedding.weight") ?? shape("embeddings.token_embedding.weight") {
            kind = .clip
            let prefix = store.contains("text_model.embeddings.token_embedding.weight") ? "text_model." : ""
            details = [("vocabulary", "\(embedding[0])"), ("hidden size", "\(embedding[1])"),
                       ("layers", "\(count(prefix + "encoder.layers."))"),
                       ("positions", "\(shape(prefix + "embeddings.position_embedding.weight")?.first ?? 0)")]
        } else if let embedding = shape("shared.weight") ?? shape("encoder.embed_tokens.weight") {
            kind = .t5
            details = [("vocabulary", "\(embedding[0])"), ("d_model", "\(embedding[1])"),
                       ("layers", "\(count("encoder.block."))"),
                       ("feed-forward", store.contains("encoder.block.0.layer.1.DenseReluDense.wi_0.weight") ? "gated-gelu" : "relu"),
                       ("d_ff", "\(shape("encoder.block.0.layer.1.DenseReluDense.wo.weight")?.last ?? 0)")]
        } else {
            throw WeightsError.unrecognisedModel(path: path, reason: "no FLUX transformer, VAE, CLIP or T5 tensors found")
        }
        return ModelReport(path: path, kind: kind, details: details, parameterCount: store.parameterCount,
                           dtypeCounts: store.dtypeCounts, missing: [], unexpected: [], components: [])
    }
}
