import Foundation

/// The shape of a T5 encoder, as transformers' `T5Config` (config.json of a diffusers
/// `text_encoder_2/` folder), or inferred from a single file's tensor shapes.
public struct T5Config: Codable, Equatable, Sendable {
    public var vocabularySize: Int
    public var modelSize: Int
    /// Width of one attention head; heads * headSize may differ from modelSize.
    public var headSize: Int
    public var feedForwardSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var relativeAttentionBuckets: Int
    public var relativeAttentionMaxDistance: Int
    /// "gated-gelu" (T5 v1.1 and T5-XXL: GELU with tanh on wi_0, times wi_1) or "relu" (wi).
    public var feedForwardProjection: String
    public var layerNormEpsilon: Float

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", modelSize = "d_model", headSize = "d_kv"
        case feedForwardSize = "d_ff", layerCount = "num_layers", headCount = "num_heads"
        case relativeAttentionBuckets = "relative_attention_num_buckets"
        case relativeAttentionMaxDistance = "relative_attention_max_distance"
        case feedForwardProjection = "feed_forward_proj", layerNormEpsilon = "layer_norm_epsilon"
    }

    public init(vocabularySize: Int, modelSize: Int, headSize: Int, feedForwardSize: Int, layerCount: Int,
                headCount: Int, relativeAttentionBuckets: Int, relativeAttentionMaxDistance: Int,
                feedForwardProjection: String, layerNormEpsilon: Float) {
        self.vocabularySize = vocabularySize
        self.modelSize = modelSize
        self.headSize = headSize
        self.feedForwardSize = feedForwardSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.relativeAttentionBuckets = relativeAttentionBuckets
        self.relativeAttentionMaxDistance = relativeAttentionMaxDistance
        self.feedForwardProjection = feedForwardProjection
        self.layerNormEpsilon = layerNormEpsilon
    }

    /// FLUX.1's text_encoder_2: the encoder of T5 v1.1 XXL.
    public static let t5XXL = T5Config(
        vocabularySize: 32128, modelSize: 4096, headSize: 64, feedForwardSize: 10240, layerCount: 24,
        headCount: 64, relativeAttentionBuckets: 32, relativeAttentionMaxDistance: 128,
        feedForwardProjection: "gated-gelu", layerNormEpsilon: 1e-6)

    /// Missing keys take transformers' `T5Config` defaults.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        vocabularySize = try container.decodeIfPresent(Int.self, forKey: .vocabularySize) ?? 32128
        modelSize = try container.decodeIfPresent(Int.self, forKey: .modelSize) ?? 512
        headSize = try container.decodeIfPresent(Int.self, forKey: .headSize) ?? 64
        feedForwardSize = try container.decodeIfPresent(Int.self, forKey: .feedForwardSize) ?? 2048
        layerCount = try container.decodeIfPresent(Int.self, forKey: .layerCount) ?? 6
        headCount = try container.decodeIfPresent(Int.self, forKey: .headCount) ?? 8
        relativeAttentionBuckets = try container.decodeIfPresent(Int.self, forKey: .relativeAttentionBuckets) ?? 32
        relativeAttentionMaxDistance = try container.decodeIfPresent(Int.self, forKey: .relativeAttentionMaxDistance) ?? 128
        feedForwardProjection = try container.decodeIfPresent(String.self, forKey: .feedForwardProjection) ?? "relu"
        layerNormEpsilon = try container.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? 1e-6
    }

    /// Decodes a config.json and validates it.
    public static func read(path: String) throws -> T5Config {
        let data = try ModelFile.contents(of: path)
        let config: T5Config
        do {
            config = try JSONDecoder().decode(T5Config.self, from: data)
        } catch {
            throw WeightsError.invalidConfig(file: path, reason: "not a T5 config: \(error)")
        }
        try config.validate(file: path)
        return config
    }

    /// The checkpoint's config.json, else the configuration its tensor shapes imply.
    public init(checkpoint: Checkpoint) throws {
        guard let path = checkpoint.folder.configPath else {
            self = try Self.inferred(from: checkpoint.store)
            return
        }
        self = try Self.read(path: path)
        try checkpoint.requireBlocks(layerCount, key: "num_layers", blocks: T5WeightNames.blocks, configFile: path)
    }

    /// The configuration a checkpoint's tensor shapes imply. The relative attention table
    /// [buckets, heads] gives the head count; the maximum distance, the norm epsilon and the
    /// activation cannot be seen in shapes and are T5-XXL's (GELU when the feed-forward is
    /// gated, ReLU otherwise).
    public static func inferred(from store: WeightStore) throws -> T5Config {
        var relu = t5XXL
        relu.feedForwardProjection = "relu"
        let gatedNames = ModelFamily.t5.referenceNames
        let gated = gatedNames.isStored("blocks.0.input.weight", in: store, layout: .diffusers, prefix: "")
        let names = gated ? gatedNames : T5WeightNames.table(relu)
        func tensor(_ engineName: String) throws -> WeightTensor {
            try names.storedTensor(engineName, in: store, layout: .diffusers, prefix: "")
        }
        let embedding = try tensor("token_embedding"), positionTable = try tensor("relative_attention_bias")
        let query = try tensor("blocks.0.qkv.weight"), inner = try tensor("blocks.0.input.weight")
        guard embedding.shape.count == 2, positionTable.shape.count == 2, query.shape.count == 2, inner.shape.count == 2,
              positionTable.shape[1] > 0, query.shape[0] % positionTable.shape[1] == 0 else {
            throw WeightsError.unrecognisedModel(
                path: store.path, reason: "T5 embedding, attention or feed-forward tensors do not have T5's shapes")
        }
        let heads = positionTable.shape[1]
        let config = T5Config(
            vocabularySize: embedding.shape[0], modelSize: embedding.shape[1], headSize: query.shape[0] / heads,
            feedForwardSize: inner.shape[0], layerCount: store.blockCount(prefix: T5WeightNames.blocks + "."),
            headCount: heads, relativeAttentionBuckets: positionTable.shape[0],
            relativeAttentionMaxDistance: t5XXL.relativeAttentionMaxDistance,
            feedForwardProjection: gated ? t5XXL.feedForwardProjection : "relu",
            layerNormEpsilon: t5XXL.layerNormEpsilon)
        try config.validate(file: store.path)
        return config
    }

    public func validate(file: String) throws {
        func check(_ condition: Bool, _ reason: String) throws {
            if !condition { throw WeightsError.invalidConfig(file: file, reason: reason) }
        }
        try ConfigLimits.requireLayers("num_layers", layerCount, file: file)
        for (key, value) in [("vocab_size", vocabularySize), ("d_model", modelSize), ("d_kv", headSize), ("d_ff", feedForwardSize),
                             ("num_heads", headCount), ("relative_attention_num_buckets", relativeAttentionBuckets),
                             ("relative_attention_max_distance", relativeAttentionMaxDistance)] {
            try ConfigLimits.requireDimension(key, value, file: file)
        }
        try ConfigLimits.requireProduct("the attention width num_heads x d_kv", [headCount, headSize], file: file)
        try check(relativeAttentionBuckets >= 4 && relativeAttentionMaxDistance > relativeAttentionBuckets / 4,
                  "relative attention needs at least 4 buckets and a maximum distance beyond the exact ones")
        try check(layerNormEpsilon > 0 && layerNormEpsilon.isFinite, "layer_norm_epsilon must be positive and finite")
        _ = try feedForward(file: file)
    }

    /// Whether the feed-forward is gated, and its activation, from `feed_forward_proj`
    /// ("gated-ACT" or "ACT"; "gated-gelu" means the tanh GELU, as transformers maps it).
    func feedForward(file: String) throws -> (gated: Bool, activation: Activation) {
        let parts = feedForwardProjection.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        let name = feedForwardProjection == "gated-gelu" ? "gelu_new" : (parts.last ?? "")
        guard parts.count == 1 || (isGated && parts.count == 2), let activation = Activation(configName: name) else {
            throw WeightsError.invalidConfig(file: file, reason: "unsupported feed_forward_proj '\(feedForwardProjection)'")
        }
        return (isGated, activation)
    }

    /// A gated feed-forward has two input projections, wi_0 and wi_1.
    public var isGated: Bool { feedForwardProjection.hasPrefix("gated-") }
}
