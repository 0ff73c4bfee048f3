/// The one place that knows checkpoint tensor names for the FLUX transformer.
///
/// Each engine tensor is listed once with its sources in both layouts: the diffusers folder
/// (`transformer_blocks.N.attn.to_q`, ...) and the original single file
/// (`double_blocks.N.img_attn.qkv`, ...). A source is a row range of a checkpoint tensor, so
/// fused tensors are joined (diffusers q, k, v -> one projection) or split (the original
/// final layer's (shift, scale) -> the engine's (scale, shift)) by listing row blocks; the
/// GEMM reads the blocks where they lie in the memory map.
public enum CheckpointLayout: String, Sendable {
    case diffusers, original
}

/// `rows` of checkpoint tensor `name`, whose first axis has `totalRows`.
struct SourceRows: Sendable {
    let name: String
    let totalRows: Int
    let rows: Range<Int>

    static func whole(_ name: String, _ rows: Int) -> SourceRows {
        SourceRows(name: name, totalRows: rows, rows: 0..<rows)
    }
}

/// An engine tensor: a linear layer (sources get `.weight` and `.bias`) or a norm vector.
struct TensorMapping: Sendable {
    enum Kind: Sendable { case linear(inFeatures: Int), vector }
    let engineName: String
    let kind: Kind
    let diffusers: [SourceRows]
    let original: [SourceRows]

    func sources(_ layout: CheckpointLayout) -> [SourceRows] {
        layout == .diffusers ? diffusers : original
    }
}

enum FluxWeightNames {
    /// The full table for one configuration.
    static func table(_ c: TransformerConfig) -> [TensorMapping] {
        let inner = c.innerDim, mlp = c.mlpHidden, t = TransformerConfig.timestepChannels
        func linear(_ engine: String, _ inFeatures: Int, _ diffusers: [SourceRows], _ original: [SourceRows]) -> TensorMapping {
            TensorMapping(engineName: engine, kind: .linear(inFeatures: inFeatures), diffusers: diffusers, original: original)
        }
        func vector(_ engine: String, _ diffusers: String, _ original: String) -> TensorMapping {
            TensorMapping(engineName: engine, kind: .vector, diffusers: [.whole(diffusers, c.headDim)],
                          original: [.whole(original, c.headDim)])
        }
        let w = SourceRows.whole
        var table = [
            linear("img_in", c.inChannels, [w("x_embedder", inner)], [w("img_in", inner)]),
            linear("txt_in", c.jointAttentionDim, [w("context_embedder", inner)], [w("txt_in", inner)]),
            linear("time_in.in", t, [w("time_text_embed.timestep_embedder.linear_1", inner)], [w("time_in.in_layer", inner)]),
            linear("time_in.out", inner, [w("time_text_embed.timestep_embedder.linear_2", inner)], [w("time_in.out_layer", inner)]),
            linear("vector_in.in", c.pooledProjectionDim, [w("time_text_embed.text_embedder.linear_1", inner)], [w("vector_in.in_layer", inner)]),
            linear("vector_in.out", inner, [w("time_text_embed.text_embedder.linear_2", inner)], [w("vector_in.out_layer", inner)]),
        ]
        if c.guidanceEmbeds {
            table += [
                linear("guidance_in.in", t, [w("time_text_embed.guidance_embedder.linear_1", inner)], [w("guidance_in.in_layer", inner)]),
                linear("guidance_in.out", inner, [w("time_text_embed.guidance_embedder.linear_2", inner)], [w("guidance_in.out_layer", inner)]),
            ]
        }
        for i in 0..<c.numLayers {
            let d = "transformer_blocks.\(i)", o = "double_blocks.\(i)", e = "double.\(i)"
            table += [
                linear("\(e).img_mod", inner, [w("\(d).norm1.linear", 6 * inner)], [w("\(o).img_mod.lin", 6 * inner)]),
                linear("\(e).txt_mod", inner, [w("\(d).norm1_context.linear", 6 * inner)], [w("\(o).txt_mod.lin", 6 * inner)]),
                linear("\(e).img_qkv", inner, [w("\(d).attn.to_q", inner), w("\(d).attn.to_k", inner), w("\(d).attn.to_v", inner)],
                       [w("\(o).img_attn.qkv", 3 * inner)]),
                linear("\(e).txt_qkv", inner, [w("\(d).attn.add_q_proj", inner), w("\(d).attn.add_k_proj", inner), w("\(d).attn.add_v_proj", inner)],
                       [w("\(o).txt_attn.qkv", 3 * inner)]),
                vector("\(e).img_q_norm", "\(d).attn.norm_q.weight", "\(o).img_attn.norm.query_norm.scale"),
                vector("\(e).img_k_norm", "\(d).attn.norm_k.weight", "\(o).img_attn.norm.key_norm.scale"),
                vector("\(e).txt_q_norm", "\(d).attn.norm_added_q.weight", "\(o).txt_attn.norm.query_norm.scale"),
                vector("\(e).txt_k_norm", "\(d).attn.norm_added_k.weight", "\(o).txt_attn.norm.key_norm.scale"),
                linear("\(e).img_proj", inner, [w("\(d).attn.to_out.0", inner)], [w("\(o).img_attn.proj", inner)]),
                linear("\(e).txt_proj", inner, [w("\(d).attn.to_add_out", inner)], [w("\(o).txt_attn.proj", inner)]),
                linear("\(e).img_mlp_in", inner, [w("\(d).ff.net.0.proj", mlp)], [w("\(o).img_mlp.0", mlp)]),
                linear("\(e).img_mlp_out", mlp, [w("\(d).ff.net.2", inner)], [w("\(o).img_mlp.2", inner)]),
                linear("\(e).txt_mlp_in", inner, [w("\(d).ff_context.net.0.proj", mlp)], [w("\(o).txt_mlp.0", mlp)]),
                linear("\(e).txt_mlp_out", mlp, [w("\(d).ff_context.net.2", inner)], [w("\(o).txt_mlp.2", inner)]),
            ]
        }
        for i in 0..<c.numSingleLayers {
            let d = "single_transformer_blocks.\(i)", o = "single_blocks.\(i)", e = "single.\(i)"
            table += [
                linear("\(e).mod", inner, [w("\(d).norm.linear", 3 * inner)], [w("\(o).modulation.lin", 3 * inner)]),
                // q | k | v | MLP input: one GEMM over the normed tokens.
                linear("\(e).linear1", inner,
                       [w("\(d).attn.to_q", inner), w("\(d).attn.to_k", inner), w("\(d).attn.to_v", inner), w("\(d).proj_mlp", mlp)],
                       [w("\(o).linear1", 3 * inner + mlp)]),
                linear("\(e).linear2", inner + mlp, [w("\(d).proj_out", inner)], [w("\(o).linear2", inner)]),
                vector("\(e).q_norm", "\(d).attn.norm_q.weight", "\(o).norm.query_norm.scale"),
                vector("\(e).k_norm", "\(d).attn.norm_k.weight", "\(o).norm.key_norm.scale"),
            ]
        }
        let outFeatures = c.patchSize * c.patchSize * c.outChannels
        table += [
            // Engine order is diffusers' (scale, shift); the original files store (shift, scale).
            linear("final.modulation", inner, [w("norm_out.linear", 2 * inner)],
                   [SourceRows(name: "final_layer.adaLN_modulation.1", totalRows: 2 * inner, rows: inner..<(2 * inner)),
                    SourceRows(name: "final_layer.adaLN_modulation.1", totalRows: 2 * inner, rows: 0..<inner)]),
            linear("final.linear", inner, [w("proj_out", outFeatures)], [w("final_layer.linear", outFeatures)]),
        ]
        return table
    }
}

/// Tensors resolved from a checkpoint through a mapping table.
struct MappedWeights: Sendable {
    var linears: [String: Linear] = [:]
    var vectors: [String: WeightTensor] = [:]

    func linear(_ name: String) throws -> Linear {
        guard let layer = linears[name] else { throw WeightsError.missingTensor(name: name, file: "engine table") }
        return layer
    }

    func vector(_ name: String) throws -> WeightTensor {
        guard let value = vectors[name] else { throw WeightsError.missingTensor(name: name, file: "engine table") }
        return value
    }
}

extension [TensorMapping] {
    /// Every checkpoint tensor the table reads in `layout`, with its full shape, once each.
    func expectedTensors(_ layout: CheckpointLayout) -> [(name: String, shape: [Int])] {
        var seen = Set<String>()
        var result: [(name: String, shape: [Int])] = []
        for mapping in self {
            for source in mapping.sources(layout) {
                let entries: [(String, [Int])]
                switch mapping.kind {
                case let .linear(inFeatures):
                    entries = [(source.name + ".weight", [source.totalRows, inFeatures]),
                               (source.name + ".bias", [source.totalRows])]
                case .vector:
                    entries = [(source.name, [source.totalRows])]
                }
                for (name, shape) in entries where seen.insert(name).inserted {
                    result.append((name, shape))
                }
            }
        }
        return result
    }

    /// Resolves every mapping from `store` (names under `prefix`), checking shapes and
    /// refusing missing or unexpected tensors.
    func resolve(from store: WeightStore, layout: CheckpointLayout, prefix: String = "") throws -> MappedWeights {
        for (name, shape) in expectedTensors(layout) {
            _ = try store.tensor(prefix + name, shape: shape)
        }
        let expected = Set(expectedTensors(layout).map { prefix + $0.name })
        let unexpected = store.names.filter { $0.hasPrefix(prefix) && !expected.contains($0) }.sorted()
        guard unexpected.isEmpty else { throw WeightsError.unexpectedTensors(names: unexpected, file: store.path) }

        var weights = MappedWeights()
        for mapping in self {
            let sources = mapping.sources(layout)
            switch mapping.kind {
            case .linear:
                let blocks = try sources.map { source in
                    Linear.Block(weight: try store.tensor(prefix + source.name + ".weight").rows(source.rows),
                                 bias: try store.tensor(prefix + source.name + ".bias").rows(source.rows))
                }
                weights.linears[mapping.engineName] = try Linear(blocks: blocks)
            case .vector:
                guard let source = sources.first, sources.count == 1 else {
                    throw WeightsError.invalidConfig(file: store.path, reason: "vector '\(mapping.engineName)' needs one source tensor")
                }
                weights.vectors[mapping.engineName] = try store.tensor(prefix + source.name).rows(source.rows)
            }
        }
        return weights
    }
}
