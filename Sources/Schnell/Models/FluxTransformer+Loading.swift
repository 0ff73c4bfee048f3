import Foundation

extension FluxTransformer {
    /// Loads a FLUX transformer from a diffusers pipeline folder, its `transformer/` folder
    /// (config.json + one or more safetensors), or an original single file. Without a
    /// config the shape is inferred from the tensors; `axesDimsRope` overrides the rotary
    /// axes, which tensors cannot tell (16/56/56 is assumed for 128-wide heads).
    public static func load(path: String, backend: any Backend, axesDimsRope: [Int]? = nil) throws -> FluxTransformer {
        let checkpoint = try FluxCheckpoint(path: path)
        var config = checkpoint.config
        if let axesDimsRope {
            config.axesDimsRope = axesDimsRope
            try config.validate(file: path)
        }
        return try FluxTransformer(config: config, store: checkpoint.store, layout: checkpoint.layout,
                                   prefix: checkpoint.prefix, backend: backend)
    }
}

/// A transformer checkpoint found on disk: its tensors, layout, name prefix and configuration.
public struct FluxCheckpoint: Sendable {
    public let store: WeightStore
    public let layout: CheckpointLayout
    /// Some single files nest the model under `model.diffusion_model.`.
    public let prefix: String
    public let config: TransformerConfig
    /// Where the configuration came from: "config.json" or "tensor shapes".
    public let configSource: String

    static let prefixes = ["", "model.diffusion_model.", "diffusion_model."]

    public init(path: String) throws {
        var weightsPath = path
        var configPath: String?
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            let subfolder = (path as NSString).appendingPathComponent("transformer")
            if FileManager.default.fileExists(atPath: subfolder) { weightsPath = subfolder }
            let candidate = (weightsPath as NSString).appendingPathComponent("config.json")
            if FileManager.default.fileExists(atPath: candidate) { configPath = candidate }
        }
        let store = try WeightStore(path: weightsPath)
        guard let (layout, prefix) = Self.detect(store) else {
            throw WeightsError.unrecognisedModel(path: path, reason: "no FLUX transformer tensors (x_embedder.weight or img_in.weight)")
        }
        self.store = store
        self.layout = layout
        self.prefix = prefix
        if let configPath, let data = FileManager.default.contents(atPath: configPath) {
            config = try TransformerConfig(configJSON: data, file: configPath)
            configSource = "config.json"
        } else {
            config = try Self.inferConfig(store, layout: layout, prefix: prefix)
            configSource = "tensor shapes"
        }
    }

    static func detect(_ store: WeightStore) -> (CheckpointLayout, String)? {
        for prefix in prefixes {
            if store.contains(prefix + "x_embedder.weight") { return (.diffusers, prefix) }
            if store.contains(prefix + "img_in.weight") { return (.original, prefix) }
        }
        return nil
    }

    /// The configuration implied by tensor shapes (the original single files carry no config).
    static func inferConfig(_ store: WeightStore, layout: CheckpointLayout, prefix: String) throws -> TransformerConfig {
        let names: [String: String] = layout == .diffusers ? [
            "in": "x_embedder.weight", "text": "context_embedder.weight",
            "pooled": "time_text_embed.text_embedder.linear_1.weight",
            "guidance": "time_text_embed.guidance_embedder.linear_1.weight", "out": "proj_out.weight",
            "double": "transformer_blocks.", "single": "single_transformer_blocks.",
            "headNorm": "single_transformer_blocks.0.attn.norm_q.weight",
            "doubleHeadNorm": "transformer_blocks.0.attn.norm_q.weight", "mlp": "transformer_blocks.0.ff.net.0.proj.weight",
        ] : [
            "in": "img_in.weight", "text": "txt_in.weight", "pooled": "vector_in.in_layer.weight",
            "guidance": "guidance_in.in_layer.weight", "out": "final_layer.linear.weight",
            "double": "double_blocks.", "single": "single_blocks.",
            "headNorm": "single_blocks.0.norm.query_norm.scale",
            "doubleHeadNorm": "double_blocks.0.img_attn.norm.query_norm.scale", "mlp": "double_blocks.0.img_mlp.0.weight",
        ]
        func shape(_ key: String) throws -> [Int] {
            let tensor = try store.tensor(prefix + (names[key] ?? key))
            guard !tensor.shape.isEmpty else {
                throw WeightsError.wrongShape(name: tensor.name, file: tensor.file, expected: [-1], actual: tensor.shape)
            }
            return tensor.shape
        }
        func blockCount(_ key: String) -> Int {
            let start = prefix + (names[key] ?? key)
            let indices = store.names.compactMap { name -> Int? in
                guard name.hasPrefix(start) else { return nil }
                return Int(name.dropFirst(start.count).prefix { $0 != "." })
            }
            return (indices.max() ?? -1) + 1
        }
        let input = try shape("in")
        guard input.count == 2 else {
            throw WeightsError.wrongShape(name: prefix + (names["in"] ?? ""), file: store.path, expected: [-1, -1], actual: input)
        }
        let inner = input[0]
        let numLayers = blockCount("double"), numSingleLayers = blockCount("single")
        let headDim = try shape(numSingleLayers > 0 ? "headNorm" : "doubleHeadNorm")[0]
        guard headDim > 0, inner % headDim == 0 else {
            throw WeightsError.invalidConfig(file: store.path, reason: "hidden width \(inner) is not a multiple of the head width \(headDim)")
        }
        let text = try shape("text"), pooled = try shape("pooled"), out = try shape("out")
        var config = TransformerConfig(
            inChannels: input[1], outChannels: out[0], patchSize: 1, numLayers: numLayers,
            numSingleLayers: numSingleLayers, headDim: headDim, heads: inner / headDim,
            jointAttentionDim: text.count == 2 ? text[1] : 0, pooledProjectionDim: pooled.count == 2 ? pooled[1] : 0,
            guidanceEmbeds: store.contains(prefix + (names["guidance"] ?? "")),
            axesDimsRope: headDim == 128 ? [16, 56, 56] : nil)
        if numLayers > 0, let mlp = try? shape("mlp"), mlp[0] % inner == 0 { config.mlpRatio = mlp[0] / inner }
        try config.validate(file: store.path)
        return config
    }
}
