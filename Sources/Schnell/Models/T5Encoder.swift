import Foundation

/// T5's encoder stack (transformers' `T5EncoderModel`): shared token embedding, RMS-normed
/// pre-norm blocks of unscaled self-attention with a relative position bias (computed from the
/// first block's table and shared by all blocks) and a feed-forward, final RMS norm. No
/// attention mask: FLUX encodes the padded prompt unmasked.
public final class T5Encoder: @unchecked Sendable {
    struct Block {
        let attentionNorm: Tensor
        let qkv: Linear          // [modelSize] -> [3 * heads * headSize], q | k | v
        let output: Linear       // [heads * headSize] -> [modelSize]
        let feedForwardNorm: Tensor
        let input: Linear        // [modelSize] -> [feedForwardSize] (gated: 2x, wi_0 | wi_1)
        let feedForwardOutput: Linear  // wo: [feedForwardSize] -> [modelSize]
    }

    public let config: T5Config
    let backend: any Backend
    let gated: Bool
    let activation: Activation
    let tokenEmbedding: WeightTensor          // [vocab, modelSize]
    let relativeAttentionBias: WeightTensor   // [buckets, heads]
    let blocks: [Block]
    let finalNorm: Tensor

    static let embeddingNames = ["shared.weight", "encoder.embed_tokens.weight"]

    /// The token table may be stored as `shared.weight`, `encoder.embed_tokens.weight` (some
    /// single files), or both (the same tied table saved twice).
    public init(weights: WeightStore, config: T5Config, backend: any Backend) throws {
        try config.validate(file: weights.path)
        let embeddingName = weights.contains(Self.embeddingNames[0]) ? Self.embeddingNames[0] : Self.embeddingNames[1]
        let tensors = try weights.tensors(matching: Self.expectedTensors(config: config, embeddingName: embeddingName),
                                          ignoring: Set(Self.embeddingNames))
        for name in Self.embeddingNames where name != embeddingName && weights.contains(name) {
            _ = try weights.tensor(name, shape: [config.vocabularySize, config.modelSize])
        }
        func tensor(_ name: String) throws -> WeightTensor {
            guard let found = tensors[name] else { throw WeightsError.missingTensor(name: name, file: weights.path) }
            return found
        }
        func linear(_ names: [String]) throws -> Linear {
            try backend.prepare(Linear(blocks: names.map { Linear.Block(weight: try tensor($0 + ".weight"), bias: nil) }))
        }
        func vector(_ name: String) throws -> Tensor { backend.upload(try tensor(name)) }
        let (gated, activation) = try config.feedForward(file: weights.path)
        blocks = try (0..<config.layerCount).map { index in
            let attention = "encoder.block.\(index).layer.0."
            let feedForward = "encoder.block.\(index).layer.1."
            let inputs = gated ? ["wi_0", "wi_1"] : ["wi"]
            return Block(attentionNorm: try vector(attention + "layer_norm.weight"),
                         qkv: try linear(["q", "k", "v"].map { attention + "SelfAttention." + $0 }),
                         output: try linear([attention + "SelfAttention.o"]),
                         feedForwardNorm: try vector(feedForward + "layer_norm.weight"),
                         input: try linear(inputs.map { feedForward + "DenseReluDense." + $0 }),
                         feedForwardOutput: try linear([feedForward + "DenseReluDense.wo"]))
        }
        tokenEmbedding = try tensor(embeddingName)
        relativeAttentionBias = try tensor("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        finalNorm = try vector("encoder.final_layer_norm.weight")
        self.gated = gated
        self.activation = activation
        self.config = config
        self.backend = backend
    }

    /// A `text_encoder_2/` folder with config.json (or a pipeline folder holding one), or a
    /// single safetensors file such as `t5xxl_fp16.safetensors`. `config` overrides both the
    /// folder's config.json and the configuration inferred from a single file's shapes.
    public static func load(path: String, config: T5Config? = nil, backend: any Backend) throws -> T5Encoder {
        let folder = try ModelFolder.locate(path: path, component: "text_encoder_2")
        let weights = try WeightStore(path: folder.weightsPath)
        let resolved = try config
            ?? folder.configPath.map { try T5Config.read(path: $0) }
            ?? T5Config.inferred(from: weights)
        return try T5Encoder(weights: weights, config: resolved, backend: backend)
    }

    /// Every tensor a checkpoint of this configuration holds, with the token table under
    /// `embeddingName` (`shared.weight` as transformers saves it).
    public static func expectedTensors(config: T5Config, embeddingName: String = "shared.weight") -> [TensorSpec] {
        let model = config.modelSize, inner = config.headCount * config.headSize, feedForward = config.feedForwardSize
        var specs = [TensorSpec(embeddingName, [config.vocabularySize, model])]
        for index in 0..<config.layerCount {
            let attention = "encoder.block.\(index).layer.0."
            specs += ["q", "k", "v"].map { TensorSpec(attention + "SelfAttention.\($0).weight", [inner, model]) }
            specs.append(TensorSpec(attention + "SelfAttention.o.weight", [model, inner]))
            if index == 0 {
                specs.append(TensorSpec(attention + "SelfAttention.relative_attention_bias.weight",
                                        [config.relativeAttentionBuckets, config.headCount]))
            }
            specs.append(TensorSpec(attention + "layer_norm.weight", [model]))
            let block = "encoder.block.\(index).layer.1."
            specs += (config.isGated ? ["wi_0", "wi_1"] : ["wi"]).map {
                TensorSpec(block + "DenseReluDense.\($0).weight", [feedForward, model])
            }
            specs += [TensorSpec(block + "DenseReluDense.wo.weight", [model, feedForward]),
                      TensorSpec(block + "layer_norm.weight", [model])]
        }
        specs.append(TensorSpec("encoder.final_layer_norm.weight", [model]))
        return specs
    }

    /// ids (256 for FLUX.1-schnell, 512 for dev) -> last hidden states [tokens, modelSize].
    public func encode(ids: [Int32]) throws -> Tensor {
        try TextEncoderError.check(ids, vocabularySize: config.vocabularySize, maximumLength: nil)
        let inner = config.headCount * config.headSize
        let eps = config.layerNormEpsilon
        let x = backend.embedding(tokenEmbedding, ids: ids)  // [tokens, modelSize]
        let positionBias = backend.relativePositionBias(  // [heads, tokens, tokens]
            relativeAttentionBias, queryTokens: ids.count, keyTokens: ids.count, bidirectional: true,
            maxDistance: config.relativeAttentionMaxDistance)
        for block in blocks {
            let qkv = backend.linear(backend.rmsNorm(x, weight: block.attentionNorm, eps: eps), block.qkv)  // [tokens, 3 * inner]
            // T5 folds the scale into its weights: scores are q k^T + bias, unscaled.
            let attended = backend.attention(q: qkv.columns(0..<inner), k: qkv.columns(inner..<2 * inner),
                                             v: qkv.columns(2 * inner..<3 * inner), heads: config.headCount,
                                             scale: 1, bias: positionBias, causal: false)
            backend.gatedAdd(x, backend.linear(attended, block.output), gate: nil)
            let hidden = backend.linear(backend.rmsNorm(x, weight: block.feedForwardNorm, eps: eps), block.input)
            let activated: Tensor
            if gated {
                // [tokens, 2 * feedForward] -> act(wi_0 x) * (wi_1 x)
                let width = config.feedForwardSize
                activated = backend.gatedActivation(hidden.columns(0..<width), hidden.columns(width..<2 * width), activation)
            } else {
                backend.activate(hidden, activation)
                activated = hidden
            }
            backend.gatedAdd(x, backend.linear(activated, block.feedForwardOutput), gate: nil)
        }
        return backend.rmsNorm(x, weight: finalNorm, eps: eps)
    }
}
