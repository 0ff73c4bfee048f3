// The text encoders' checkpoint names (the mechanism is in WeightTable.swift). transformers'
// folders and the single files (`clip_l.safetensors`, `t5xxl_fp16.safetensors`) name these
// tensors alike, so both layouts share each name.

/// CLIP's text model (transformers' `CLIPTextModel`). transformers 4 and `clip_l.safetensors`
/// nest the names under `text_model.`; transformers 5 saves them without it.
public enum CLIPWeightNames {
    static let prefixes = ["text_model.", ""]
    /// The numbered layers' names, `encoder.layers.N.…`.
    static let layers = "encoder.layers"

    public static func table(_ config: CLIPTextConfig) -> WeightTable {
        let hidden = config.hiddenSize, intermediate = config.intermediateSize
        let w = LinearRows.whole
        var entries: [WeightEntry] = [
            .tensor("token_embedding", [config.vocabularySize, hidden], "embeddings.token_embedding.weight"),
            .tensor("position_embedding", [config.maxPositions, hidden], "embeddings.position_embedding.weight"),
        ]
        func norm(_ engine: String, _ name: String) {
            entries += [.tensor(engine + ".weight", [hidden], name + ".weight"), .tensor(engine + ".bias", [hidden], name + ".bias")]
        }
        for index in 0..<config.layerCount {
            let e = "layers.\(index)", layer = "\(layers).\(index)"
            entries += WeightEntry.linear(e + ".qkv", inFeatures: hidden,
                                          ["q_proj", "k_proj", "v_proj"].map { w("\(layer).self_attn.\($0)", hidden) })
            entries += WeightEntry.linear(e + ".out", inFeatures: hidden, [w("\(layer).self_attn.out_proj", hidden)])
            norm(e + ".norm1", layer + ".layer_norm1")
            norm(e + ".norm2", layer + ".layer_norm2")
            entries += WeightEntry.linear(e + ".fc1", inFeatures: hidden, [w("\(layer).mlp.fc1", intermediate)])
            entries += WeightEntry.linear(e + ".fc2", inFeatures: intermediate, [w("\(layer).mlp.fc2", hidden)])
        }
        norm("final_norm", "final_layer_norm")
        // The position-id buffer transformers 4 saved, and a full CLIP checkpoint's projection and
        // logit scale (FLUX uses the unprojected pooled output).
        return WeightTable(entries: entries, ignored: ["embeddings.position_ids", "logit_scale", "text_projection.weight"])
    }
}

/// T5's encoder (transformers' `T5EncoderModel`). The token table is `shared.weight`, or
/// `encoder.embed_tokens.weight` in some single files, or both (the same tied table saved twice).
public enum T5WeightNames {
    static let prefixes = [""]
    /// The numbered blocks' names, `encoder.block.N.…`.
    static let blocks = "encoder.block"

    public static func table(_ config: T5Config) -> WeightTable {
        let model = config.modelSize, inner = config.headCount * config.headSize, feedForward = config.feedForwardSize
        let w = LinearRows.whole
        var entries: [WeightEntry] = [
            .tensor("token_embedding", [config.vocabularySize, model], "shared.weight",
                    aliases: ["encoder.embed_tokens.weight"]),
        ]
        for index in 0..<config.layerCount {
            let e = "blocks.\(index)", attention = "\(blocks).\(index).layer.0", mlp = "\(blocks).\(index).layer.1"
            entries += WeightEntry.linear(e + ".qkv", inFeatures: model, bias: false,
                                          ["q", "k", "v"].map { w("\(attention).SelfAttention.\($0)", inner) })
            entries += WeightEntry.linear(e + ".output", inFeatures: inner, bias: false, [w("\(attention).SelfAttention.o", model)])
            if index == 0 {
                // One table of position biases [buckets, heads], shared by every block.
                entries.append(.tensor("relative_attention_bias", [config.relativeAttentionBuckets, config.headCount],
                                       "\(attention).SelfAttention.relative_attention_bias.weight"))
            }
            entries.append(.tensor(e + ".attention_norm", [model], "\(attention).layer_norm.weight"))
            let inputs = config.isGated ? ["wi_0", "wi_1"] : ["wi"]
            entries += WeightEntry.linear(e + ".input", inFeatures: model, bias: false,
                                          inputs.map { w("\(mlp).DenseReluDense.\($0)", feedForward) })
            entries += WeightEntry.linear(e + ".feed_forward_output", inFeatures: feedForward, bias: false,
                                          [w("\(mlp).DenseReluDense.wo", model)])
            entries.append(.tensor(e + ".feed_forward_norm", [model], "\(mlp).layer_norm.weight"))
        }
        entries.append(.tensor("final_norm", [model], "encoder.final_layer_norm.weight"))
        return WeightTable(entries: entries)
    }

    /// llama.cpp's names of a T5 encoder block's tensors (city96's t5-v1_1-xxl-encoder-gguf) and
    /// transformers' names after `encoder.block.N.`; `ffn_up` is wi_1 beside a gate, else wi.
    static func llamaCppBlockNames(gated: Bool) -> [(llamaCpp: String, transformers: String)] {
        [("attn_q", "layer.0.SelfAttention.q"), ("attn_k", "layer.0.SelfAttention.k"), ("attn_v", "layer.0.SelfAttention.v"),
         ("attn_o", "layer.0.SelfAttention.o"), ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
         ("attn_norm", "layer.0.layer_norm"), ("ffn_gate", "layer.1.DenseReluDense.wi_0"),
         ("ffn_up", gated ? "layer.1.DenseReluDense.wi_1" : "layer.1.DenseReluDense.wi"),
         ("ffn_down", "layer.1.DenseReluDense.wo"), ("ffn_norm", "layer.1.layer_norm")]
    }

    static let llamaCppFixedNames = [("token_embd.weight", "shared.weight"), ("enc.output_norm.weight", "encoder.final_layer_norm.weight")]

    /// transformers' name of a tensor llama.cpp names `name` (`enc.blk.N.attn_q.weight`, ...);
    /// nil for any other name.
    static func transformersName(llamaCpp name: String, gated: Bool) -> String? {
        if let fixed = llamaCppFixedNames.first(where: { $0.0 == name }) { return fixed.1 }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "enc", parts[1] == "blk", parts[4] == "weight",
              let index = Int(parts[2]), index >= 0, String(index) == parts[2],
              let pair = llamaCppBlockNames(gated: gated).first(where: { $0.llamaCpp == parts[3] }) else { return nil }
        return "\(blocks).\(index).\(pair.transformers).weight"
    }

    /// The inverse: llama.cpp's name of a transformers T5 encoder tensor; nil for any other name.
    static func llamaCppName(transformers name: String, gated: Bool) -> String? {
        if name == "encoder.embed_tokens.weight" { return "token_embd.weight" }
        if let fixed = llamaCppFixedNames.first(where: { $0.1 == name }) { return fixed.0 }
        guard name.hasPrefix(blocks + "."), name.hasSuffix(".weight") else { return nil }
        let rest = name.dropFirst(blocks.count + 1).dropLast(".weight".count)
        guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]),
              let pair = llamaCppBlockNames(gated: gated).first(where: { $0.transformers == rest[rest.index(after: dot)...] }) else { return nil }
        return "enc.blk.\(index).\(pair.llamaCpp).weight"
    }
}
