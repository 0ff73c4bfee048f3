import Foundation

/// The shape of a CLIP text encoder, as transformers' `CLIPTextConfig` (config.json of a
/// diffusers `text_encoder/` folder), or inferred from a single file's tensor shapes.
public struct CLIPTextConfig: Codable, Equatable, Sendable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var maxPositions: Int
    /// transformers' `hidden_act`: "quick_gelu" for CLIP-L, "gelu" for some others.
    public var hiddenActivation: String
    public var layerNormEpsilon: Float
    /// 2 in legacy configs (FLUX.1's among them): then the pooled token is the one with the
    /// largest id, which is <|endoftext|> in CLIP's vocabulary. Otherwise the first token
    /// with this id.
    public var endTokenId: Int

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", layerCount = "num_hidden_layers"
        case headCount = "num_attention_heads", maxPositions = "max_position_embeddings"
        case hiddenActivation = "hidden_act", layerNormEpsilon = "layer_norm_eps"
        case endTokenId = "eos_token_id"
    }

    public init(vocabularySize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
                headCount: Int, maxPositions: Int, hiddenActivation: String,
                layerNormEpsilon: Float, endTokenId: Int) {
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.maxPositions = maxPositions
        self.hiddenActivation = hiddenActivation
        self.layerNormEpsilon = layerNormEpsilon
        self.endTokenId = endTokenId
    }

    /// FLUX.1's text_encoder: OpenAI CLIP ViT-L/14's text tower.
    public static let clipL = CLIPTextConfig(
        vocabularySize: 49408, hiddenSize: 768, intermediateSize: 3072, layerCount: 12, headCount: 12,
        maxPositions: 77, hiddenActivation: "quick_gelu", layerNormEpsilon: 1e-5, endTokenId: 2)

    /// Missing keys take transformers' `CLIPTextConfig` defaults.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        vocabularySize = try container.decodeIfPresent(Int.self, forKey: .vocabularySize) ?? 49408
        hiddenSize = try container.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 512
        intermediateSize = try container.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 2048
        layerCount = try container.decodeIfPresent(Int.self, forKey: .layerCount) ?? 12
        headCount = try container.decodeIfPresent(Int.self, forKey: .headCount) ?? 8
        maxPositions = try container.decodeIfPresent(Int.self, forKey: .maxPositions) ?? 77
        hiddenActivation = try container.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? "quick_gelu"
        layerNormEpsilon = try container.decodeIfPresent(Float.self, forKey: .layerNormEpsilon) ?? 1e-5
        // eos_token_id may be a list in transformers; the first entry is the end token.
        if let list = try? container.decodeIfPresent([Int].self, forKey: .endTokenId), let first = list.first {
            endTokenId = first
        } else {
            endTokenId = try container.decodeIfPresent(Int.self, forKey: .endTokenId) ?? 49407
        }
    }

    /// Decodes a config.json and validates it.
    public static func read(path: String) throws -> CLIPTextConfig {
        let data = try ModelFile.contents(of: path)
        let config: CLIPTextConfig
        do {
            config = try JSONDecoder().decode(CLIPTextConfig.self, from: data)
        } catch {
            throw WeightsError.invalidConfig(file: path, reason: "not a CLIP text config: \(error)")
        }
        try config.validate(file: path)
        return config
    }

    /// The checkpoint's config.json, else the configuration its tensor shapes imply.
    public init(checkpoint: Checkpoint) throws {
        guard let path = checkpoint.folder.configPath else {
            self = try Self.inferred(from: checkpoint.store, prefix: checkpoint.prefix)
            return
        }
        self = try Self.read(path: path)
        try checkpoint.requireBlocks(layerCount, key: "num_hidden_layers", blocks: CLIPWeightNames.layers, configFile: path)
    }

    /// The configuration a checkpoint's tensor shapes imply. Shapes give the sizes; the head
    /// count and the rest are CLIP-L's (12 heads at width 768, else CLIP's 64-wide heads).
    /// `prefix` is "text_model." or "".
    public static func inferred(from store: WeightStore, prefix: String) throws -> CLIPTextConfig {
        let names = ModelFamily.clip.referenceNames
        func tensor(_ engineName: String) throws -> WeightTensor {
            try names.storedTensor(engineName, in: store, layout: .diffusers, prefix: prefix)
        }
        let token = try tensor("token_embedding"), position = try tensor("position_embedding")
        let fc1 = try tensor("layers.0.fc1.weight")
        guard token.shape.count == 2, position.shape.count == 2, fc1.shape.count == 2 else {
            throw WeightsError.unrecognisedModel(path: store.path, reason: "CLIP embedding or MLP tensors are not matrices")
        }
        let hidden = token.shape[1]
        guard hidden % 64 == 0 else {
            throw WeightsError.unrecognisedModel(
                path: store.path,
                reason: "the attention head count of a CLIP text model of width \(hidden) cannot be inferred; use a folder with config.json")
        }
        let config = CLIPTextConfig(
            vocabularySize: token.shape[0], hiddenSize: hidden, intermediateSize: fc1.shape[0],
            layerCount: store.blockCount(prefix: prefix + CLIPWeightNames.layers + "."),
            headCount: hidden == 768 ? 12 : hidden / 64,
            maxPositions: position.shape[0], hiddenActivation: clipL.hiddenActivation,
            layerNormEpsilon: clipL.layerNormEpsilon, endTokenId: clipL.endTokenId)
        try config.validate(file: store.path)
        return config
    }

    public func validate(file: String) throws {
        func check(_ condition: Bool, _ reason: String) throws {
            if !condition { throw WeightsError.invalidConfig(file: file, reason: reason) }
        }
        try ConfigLimits.requireLayers("num_hidden_layers", layerCount, file: file)
        for (key, value) in [("vocab_size", vocabularySize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                             ("num_attention_heads", headCount), ("max_position_embeddings", maxPositions)] {
            try ConfigLimits.requireDimension(key, value, file: file)
        }
        try check(hiddenSize % headCount == 0, "hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        try check(layerNormEpsilon > 0 && layerNormEpsilon.isFinite, "layer_norm_eps must be positive and finite")
        _ = try activation(file: file)
    }

    func activation(file: String) throws -> Activation {
        guard let activation = Activation(configName: hiddenActivation) else {
            throw WeightsError.invalidConfig(file: file, reason: "unsupported hidden_act '\(hiddenActivation)'")
        }
        return activation
    }
}
