import Foundation

extension FluxTransformer {
    /// Loads a FLUX transformer from a diffusers pipeline folder, its `transformer/` folder
    /// (config.json + one or more safetensors), or an original single file. Without a
    /// config the shape is inferred from the tensors; `axesDimsRope` overrides the rotary
    /// axes, which tensors cannot tell (16/56/56 is assumed for 128-wide heads).
    /// `quantization` stores the linear layers in a GGUF block type as they load.
    public static func load(path: String, backend: any Backend, axesDimsRope: [Int]? = nil,
                            quantization: WeightQuantization? = nil) throws -> FluxTransformer {
        let checkpoint = try Checkpoint(path: path, family: .transformer)
        var config = try TransformerConfig(checkpoint: checkpoint)
        if let axesDimsRope {
            config.axesDimsRope = axesDimsRope
            try config.validate(file: path)
        }
        return try FluxTransformer(config: config, store: checkpoint.store, layout: checkpoint.layout,
                                   prefix: checkpoint.prefix, backend: backend, quantization: quantization)
    }
}

extension TransformerConfig {
    /// The checkpoint's config.json, else the configuration its tensor shapes imply.
    public init(checkpoint: Checkpoint) throws {
        guard let path = checkpoint.folder.configPath else {
            self = try Self.inferred(from: checkpoint.store, layout: checkpoint.layout, prefix: checkpoint.prefix)
            return
        }
        try self.init(contentsOf: path)
        try checkpoint.requireBlocks(numLayers, key: "num_layers", blocks: FluxWeightNames.doubleBlocks(checkpoint.layout), configFile: path)
        try checkpoint.requireBlocks(numSingleLayers, key: "num_single_layers", blocks: FluxWeightNames.singleBlocks(checkpoint.layout),
                                     configFile: path)
    }

    /// The configuration implied by tensor shapes (the original single files carry no config),
    /// read through the name table by engine name.
    static func inferred(from store: WeightStore, layout: CheckpointLayout, prefix: String) throws -> TransformerConfig {
        let names = ModelFamily.transformer.referenceNames
        func tensor(_ engineName: String) throws -> WeightTensor {
            let tensor = try names.storedTensor(engineName, in: store, layout: layout, prefix: prefix)
            guard !tensor.shape.isEmpty else {
                throw WeightsError.wrongShape(name: tensor.name, file: tensor.file, expected: [-1], actual: tensor.shape)
            }
            return tensor
        }
        let input = try tensor("img_in.weight")
        guard input.shape.count == 2 else {
            throw WeightsError.wrongShape(name: input.name, file: input.file, expected: [-1, -1], actual: input.shape)
        }
        let inner = input.shape[0]
        let numLayers = store.blockCount(prefix: prefix + FluxWeightNames.doubleBlocks(layout) + ".")
        let numSingleLayers = store.blockCount(prefix: prefix + FluxWeightNames.singleBlocks(layout) + ".")
        let headDim = try tensor(numSingleLayers > 0 ? "single.0.q_norm" : "double.0.img_q_norm").shape[0]
        // inner > 0 also keeps the MLP ratio's division below from dividing by zero.
        guard inner > 0, headDim > 0, inner % headDim == 0 else {
            throw WeightsError.invalidConfig(file: store.path, reason: "hidden width \(inner) is not a positive multiple of the head width \(headDim)")
        }
        let text = try tensor("txt_in.weight").shape, pooled = try tensor("vector_in.in.weight").shape
        let out = try tensor("final.linear.weight").shape
        var config = TransformerConfig(
            inChannels: input.shape[1], outChannels: out[0], patchSize: 1, numLayers: numLayers,
            numSingleLayers: numSingleLayers, headDim: headDim, heads: inner / headDim,
            jointAttentionDim: text.count == 2 ? text[1] : 0, pooledProjectionDim: pooled.count == 2 ? pooled[1] : 0,
            guidanceEmbeds: names.isStored("guidance_in.in.weight", in: store, layout: layout, prefix: prefix),
            axesDimsRope: headDim == 128 ? [16, 56, 56] : nil)
        if numLayers > 0, let mlp = try? tensor("double.0.img_mlp_in.weight"), mlp.shape[0] % inner == 0 {
            config.mlpRatio = mlp.shape[0] / inner
        }
        try config.validate(file: store.path)
        return config
    }
}
