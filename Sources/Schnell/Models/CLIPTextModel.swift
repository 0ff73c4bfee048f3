import Foundation

/// CLIP's text transformer (transformers' `CLIPTextModel`): token + position embeddings,
/// pre-LN causal self-attention layers, final layer norm. FLUX uses the pooled output, the
/// final hidden state at the end token.
public final class CLIPTextModel: @unchecked Sendable {
    struct Layer {
        let norm1Weight: Tensor, norm1Bias: Tensor
        let qkv: Linear          // [hidden] -> [3 * hidden], q | k | v
        let outProjection: Linear
        let norm2Weight: Tensor, norm2Bias: Tensor
        let fc1: Linear          // [hidden] -> [intermediate]
        let fc2: Linear          // [intermediate] -> [hidden]
    }

    public let config: CLIPTextConfig
    let backend: any Backend
    let activation: Activation
    let tokenEmbedding: WeightTensor     // [vocab, hidden]
    let positionEmbedding: WeightTensor  // [maxPositions, hidden]
    let layers: [Layer]
    let finalNormWeight: Tensor, finalNormBias: Tensor

    /// The layers by engine name, for copies with LoRA updates (`adapted`).
    let built: BuiltLayers

    /// Builds the model from a store holding exactly the tensors `CLIPWeightNames.table(config)`
    /// lists, with or without the `text_model.` prefix.
    public convenience init(weights store: WeightStore, config: CLIPTextConfig, backend: any Backend) throws {
        try config.validate(file: store.path)
        let (layout, prefix) = try ModelFamily.clip.requireLayout(of: store)
        let weights = LayerWeights(mapped: try CLIPWeightNames.table(config).resolve(from: store, layout: layout, prefix: prefix),
                                   backend: backend)
        try self.init(config: config, backend: backend, activation: try config.activation(file: store.path),
                      tokenEmbedding: try weights.tensor("token_embedding"), positionEmbedding: try weights.tensor("position_embedding"),
                      layers: BuiltLayers(recording: weights))
    }

    private init(config: CLIPTextConfig, backend: any Backend, activation: Activation, tokenEmbedding: WeightTensor,
                 positionEmbedding: WeightTensor, layers weights: BuiltLayers) throws {
        layers = try (0..<config.layerCount).map { index in
            let layer = "layers.\(index)"
            return Layer(norm1Weight: try weights.vector(layer + ".norm1.weight"),
                         norm1Bias: try weights.vector(layer + ".norm1.bias"),
                         qkv: try weights.linear(layer + ".qkv"),
                         outProjection: try weights.linear(layer + ".out"),
                         norm2Weight: try weights.vector(layer + ".norm2.weight"),
                         norm2Bias: try weights.vector(layer + ".norm2.bias"),
                         fc1: try weights.linear(layer + ".fc1"), fc2: try weights.linear(layer + ".fc2"))
        }
        finalNormWeight = try weights.vector("final_norm.weight")
        finalNormBias = try weights.vector("final_norm.bias")
        self.tokenEmbedding = tokenEmbedding
        self.positionEmbedding = positionEmbedding
        self.activation = activation
        self.config = config
        self.backend = backend
        built = weights
    }

    /// This model with LoRA updates by engine layer name (`LoRAAdapter.clipDeltas`), as
    /// `FluxTransformer.adapted` does it.
    public func adapted(_ deltas: [String: [LowRankDelta]], mode: LoRAMode) throws -> CLIPTextModel {
        let source = AdaptedLayers(base: built, deltas: deltas, mode: mode, backend: backend)
        return try CLIPTextModel(config: config, backend: backend, activation: activation, tokenEmbedding: tokenEmbedding,
                                 positionEmbedding: positionEmbedding, layers: BuiltLayers(recording: source))
    }

    /// A `text_encoder/` folder with config.json (or a pipeline folder holding one), or a single
    /// safetensors file such as `clip_l.safetensors`. `config` overrides both the folder's
    /// config.json and the configuration inferred from a single file's shapes.
    public static func load(path: String, config: CLIPTextConfig? = nil, backend: any Backend) throws -> CLIPTextModel {
        let checkpoint = try Checkpoint(path: path, family: .clip)
        let resolved = try config ?? CLIPTextConfig(checkpoint: checkpoint)
        return try CLIPTextModel(weights: checkpoint.store, config: resolved, backend: backend)
    }

    /// ids (77 for FLUX) -> last hidden states [tokens, hidden] and pooled [hidden].
    public func encode(ids: [Int32]) throws -> (hidden: Tensor, pooled: Tensor) {
        try TextEncoderError.check(ids, vocabularySize: config.vocabularySize, maximumLength: config.maxPositions)
        let hidden = config.hiddenSize
        let eps = config.layerNormEpsilon
        let x = backend.embedding(tokenEmbedding, ids: ids)  // [tokens, hidden]
        backend.gatedAdd(x, backend.embedding(positionEmbedding, ids: (0..<Int32(ids.count)).map { $0 }), gate: nil)
        let scale = 1 / Float(hidden / config.headCount).squareRoot()
        for layer in layers {
            let normed = backend.layerNorm(x, eps: eps, weight: layer.norm1Weight, bias: layer.norm1Bias)
            let qkv = backend.linear(normed, layer.qkv)  // [tokens, 3 * hidden] -> q, k, v
            let attended = backend.attention(q: qkv.columns(0..<hidden), k: qkv.columns(hidden..<2 * hidden),
                                             v: qkv.columns(2 * hidden..<3 * hidden), heads: config.headCount,
                                             scale: scale, bias: nil, causal: true)
            backend.gatedAdd(x, backend.linear(attended, layer.outProjection), gate: nil)
            let inner = backend.linear(backend.layerNorm(x, eps: eps, weight: layer.norm2Weight, bias: layer.norm2Bias),
                                       layer.fc1)  // [tokens, intermediate]
            backend.activate(inner, activation)
            backend.gatedAdd(x, backend.linear(inner, layer.fc2), gate: nil)
        }
        let output = backend.layerNorm(x, eps: eps, weight: finalNormWeight, bias: finalNormBias)
        let pooledRow = pooledPosition(ids)
        return (output, backend.copy(output.rows(pooledRow..<pooledRow + 1)).reshaped([hidden]))
    }

    /// Where transformers takes the pooled output: the largest id for the legacy end id 2,
    /// otherwise the first end token (position 0 when there is none, as argmax of all-false).
    func pooledPosition(_ ids: [Int32]) -> Int {
        if config.endTokenId == 2 {
            let largest = ids.max() ?? 0
            return ids.firstIndex(of: largest) ?? 0
        }
        return ids.firstIndex { Int($0) == config.endTokenId } ?? 0
    }
}
