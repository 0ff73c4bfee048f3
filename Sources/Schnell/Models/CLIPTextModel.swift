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

    /// Checkpoint tensors that are not weights of the text encoder and are skipped: the
    /// position-id buffer transformers 4 saved, and the CLIP model's projection and logit
    /// scale (present when a text tower is cut out of a full CLIP checkpoint; FLUX uses the
    /// unprojected pooled output).
    static let ignoredNames: Set<String> = ["embeddings.position_ids", "logit_scale", "text_projection.weight"]

    /// Accepts names with or without the `text_model.` prefix (transformers 4 checkpoints and
    /// `clip_l.safetensors` have it; transformers 5 saves without it).
    public init(weights: WeightStore, config: CLIPTextConfig, backend: any Backend) throws {
        try config.validate(file: weights.path)
        let prefix = Self.namePrefix(of: weights)
        let ignored = Set(Self.ignoredNames.flatMap { [$0, prefix + $0] })
        let tensors = try weights.tensors(matching: Self.expectedTensors(config: config, prefix: prefix), ignoring: ignored)
        func tensor(_ name: String) throws -> WeightTensor {
            guard let found = tensors[prefix + name] else { throw WeightsError.missingTensor(name: prefix + name, file: weights.path) }
            return found
        }
        func linear(_ name: String) throws -> Linear {
            try backend.prepare(Linear(weight: tensor(name + ".weight"), bias: tensor(name + ".bias")))
        }
        func vector(_ name: String) throws -> Tensor { backend.upload(try tensor(name)) }
        layers = try (0..<config.layerCount).map { index in
            let layer = "encoder.layers.\(index)."
            let attention = layer + "self_attn."
            let qkvBlocks = try ["q_proj", "k_proj", "v_proj"].map {
                Linear.Block(weight: try tensor(attention + $0 + ".weight"), bias: try tensor(attention + $0 + ".bias"))
            }
            return Layer(norm1Weight: try vector(layer + "layer_norm1.weight"),
                         norm1Bias: try vector(layer + "layer_norm1.bias"),
                         qkv: try backend.prepare(Linear(blocks: qkvBlocks)),
                         outProjection: try linear(attention + "out_proj"),
                         norm2Weight: try vector(layer + "layer_norm2.weight"),
                         norm2Bias: try vector(layer + "layer_norm2.bias"),
                         fc1: try linear(layer + "mlp.fc1"), fc2: try linear(layer + "mlp.fc2"))
        }
        tokenEmbedding = try tensor("embeddings.token_embedding.weight")
        positionEmbedding = try tensor("embeddings.position_embedding.weight")
        finalNormWeight = try vector("final_layer_norm.weight")
        finalNormBias = try vector("final_layer_norm.bias")
        activation = try config.activation(file: weights.path)
        self.config = config
        self.backend = backend
    }

    /// A `text_encoder/` folder with config.json (or a pipeline folder holding one), or a single
    /// safetensors file such as `clip_l.safetensors`. `config` overrides both the folder's
    /// config.json and the configuration inferred from a single file's shapes.
    public static func load(path: String, config: CLIPTextConfig? = nil, backend: any Backend) throws -> CLIPTextModel {
        let folder = try ModelFolder.locate(path: path, component: "text_encoder")
        let weights = try WeightStore(path: folder.weightsPath)
        let resolved = try config
            ?? folder.configPath.map { try CLIPTextConfig.read(path: $0) }
            ?? CLIPTextConfig.inferred(from: weights, prefix: namePrefix(of: weights))
        return try CLIPTextModel(weights: weights, config: resolved, backend: backend)
    }

    static func namePrefix(of weights: WeightStore) -> String {
        weights.contains("text_model.embeddings.token_embedding.weight") ? "text_model." : ""
    }

    /// Every tensor a checkpoint of this configuration holds, names with `prefix`.
    public static func expectedTensors(config: CLIPTextConfig, prefix: String = "text_model.") -> [TensorSpec] {
        let hidden = config.hiddenSize, intermediate = config.intermediateSize
        var specs = [TensorSpec(prefix + "embeddings.token_embedding.weight", [config.vocabularySize, hidden]),
                     TensorSpec(prefix + "embeddings.position_embedding.weight", [config.maxPositions, hidden])]
        for index in 0..<config.layerCount {
            let layer = prefix + "encoder.layers.\(index)."
            for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                specs.append(TensorSpec(layer + "self_attn.\(projection).weight", [hidden, hidden]))
                specs.append(TensorSpec(layer + "self_attn.\(projection).bias", [hidden]))
            }
            for norm in ["layer_norm1", "layer_norm2"] {
                specs.append(TensorSpec(layer + norm + ".weight", [hidden]))
                specs.append(TensorSpec(layer + norm + ".bias", [hidden]))
            }
            specs += [TensorSpec(layer + "mlp.fc1.weight", [intermediate, hidden]),
                      TensorSpec(layer + "mlp.fc1.bias", [intermediate]),
                      TensorSpec(layer + "mlp.fc2.weight", [hidden, intermediate]),
                      TensorSpec(layer + "mlp.fc2.bias", [hidden])]
        }
        specs += [TensorSpec(prefix + "final_layer_norm.weight", [hidden]),
                  TensorSpec(prefix + "final_layer_norm.bias", [hidden])]
        return specs
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
