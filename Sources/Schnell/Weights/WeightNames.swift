/// The FLUX transformer's checkpoint names (the mechanism is in WeightTable.swift).
///
/// Each engine tensor is listed once with its sources in both layouts: the diffusers folder
/// (`transformer_blocks.N.attn.to_q`, ...) and the original single file
/// (`double_blocks.N.img_attn.qkv`, ...).
public enum FluxWeightNames {
    /// Prefixes single files nest the model under (`model.diffusion_model.` in files that hold
    /// a whole pipeline).
    static let prefixes = ["", "model.diffusion_model.", "diffusion_model."]

    /// The numbered blocks' names, `<blocks>.N.…`, per layout (their count is a configuration).
    static func doubleBlocks(_ layout: CheckpointLayout) -> String {
        layout == .diffusers ? "transformer_blocks" : "double_blocks"
    }

    static func singleBlocks(_ layout: CheckpointLayout) -> String {
        layout == .diffusers ? "single_transformer_blocks" : "single_blocks"
    }

    /// The full table for one configuration.
    public static func table(_ c: TransformerConfig) -> WeightTable {
        let inner = c.innerDim, mlp = c.mlpHidden, t = TransformerConfig.timestepChannels
        var entries: [WeightEntry] = []
        func linear(_ engine: String, _ inFeatures: Int, _ diffusers: [LinearRows], _ original: [LinearRows]) {
            entries += WeightEntry.linear(engine, inFeatures: inFeatures, diffusers: diffusers, original: original)
        }
        func vector(_ engine: String, _ diffusers: String, _ original: String) {
            entries.append(.tensor(engine, [c.headDim], diffusers: diffusers, original: original))
        }
        let w = LinearRows.whole
        linear("img_in", c.inChannels, [w("x_embedder", inner)], [w("img_in", inner)])
        linear("txt_in", c.jointAttentionDim, [w("context_embedder", inner)], [w("txt_in", inner)])
        linear("time_in.in", t, [w("time_text_embed.timestep_embedder.linear_1", inner)], [w("time_in.in_layer", inner)])
        linear("time_in.out", inner, [w("time_text_embed.timestep_embedder.linear_2", inner)], [w("time_in.out_layer", inner)])
        linear("vector_in.in", c.pooledProjectionDim, [w("time_text_embed.text_embedder.linear_1", inner)], [w("vector_in.in_layer", inner)])
        linear("vector_in.out", inner, [w("time_text_embed.text_embedder.linear_2", inner)], [w("vector_in.out_layer", inner)])
        if c.guidanceEmbeds {
            linear("guidance_in.in", t, [w("time_text_embed.guidance_embedder.linear_1", inner)], [w("guidance_in.in_layer", inner)])
            linear("guidance_in.out", inner, [w("time_text_embed.guidance_embedder.linear_2", inner)], [w("guidance_in.out_layer", inner)])
        }
        for i in 0..<c.numLayers {
            let d = "\(doubleBlocks(.diffusers)).\(i)", o = "\(doubleBlocks(.original)).\(i)", e = "double.\(i)"
            linear("\(e).img_mod", inner, [w("\(d).norm1.linear", 6 * inner)], [w("\(o).img_mod.lin", 6 * inner)])
            linear("\(e).txt_mod", inner, [w("\(d).norm1_context.linear", 6 * inner)], [w("\(o).txt_mod.lin", 6 * inner)])
            linear("\(e).img_qkv", inner, [w("\(d).attn.to_q", inner), w("\(d).attn.to_k", inner), w("\(d).attn.to_v", inner)],
                   [w("\(o).img_attn.qkv", 3 * inner)])
            linear("\(e).txt_qkv", inner, [w("\(d).attn.add_q_proj", inner), w("\(d).attn.add_k_proj", inner), w("\(d).attn.add_v_proj", inner)],
                   [w("\(o).txt_attn.qkv", 3 * inner)])
            vector("\(e).img_q_norm", "\(d).attn.norm_q.weight", "\(o).img_attn.norm.query_norm.scale")
            vector("\(e).img_k_norm", "\(d).attn.norm_k.weight", "\(o).img_attn.norm.key_norm.scale")
            vector("\(e).txt_q_norm", "\(d).attn.norm_added_q.weight", "\(o).txt_attn.norm.query_norm.scale")
            vector("\(e).txt_k_norm", "\(d).attn.norm_added_k.weight", "\(o).txt_attn.norm.key_norm.scale")
            linear("\(e).img_proj", inner, [w("\(d).attn.to_out.0", inner)], [w("\(o).img_attn.proj", inner)])
            linear("\(e).txt_proj", inner, [w("\(d).attn.to_add_out", inner)], [w("\(o).txt_attn.proj", inner)])
            linear("\(e).img_mlp_in", inner, [w("\(d).ff.net.0.proj", mlp)], [w("\(o).img_mlp.0", mlp)])
            linear("\(e).img_mlp_out", mlp, [w("\(d).ff.net.2", inner)], [w("\(o).img_mlp.2", inner)])
            linear("\(e).txt_mlp_in", inner, [w("\(d).ff_context.net.0.proj", mlp)], [w("\(o).txt_mlp.0", mlp)])
            linear("\(e).txt_mlp_out", mlp, [w("\(d).ff_context.net.2", inner)], [w("\(o).txt_mlp.2", inner)])
        }
        for i in 0..<c.numSingleLayers {
            let d = "\(singleBlocks(.diffusers)).\(i)", o = "\(singleBlocks(.original)).\(i)", e = "single.\(i)"
            linear("\(e).mod", inner, [w("\(d).norm.linear", 3 * inner)], [w("\(o).modulation.lin", 3 * inner)])
            // q | k | v | MLP input: one GEMM over the normed tokens.
            linear("\(e).linear1", inner,
                   [w("\(d).attn.to_q", inner), w("\(d).attn.to_k", inner), w("\(d).attn.to_v", inner), w("\(d).proj_mlp", mlp)],
                   [w("\(o).linear1", 3 * inner + mlp)])
            linear("\(e).linear2", inner + mlp, [w("\(d).proj_out", inner)], [w("\(o).linear2", inner)])
            vector("\(e).q_norm", "\(d).attn.norm_q.weight", "\(o).norm.query_norm.scale")
            vector("\(e).k_norm", "\(d).attn.norm_k.weight", "\(o).norm.key_norm.scale")
        }
        let outFeatures = c.patchSize * c.patchSize * c.outChannels
        // Engine order is diffusers' (scale, shift); the original files store (shift, scale).
        linear("final.modulation", inner, [w("norm_out.linear", 2 * inner)],
               [LinearRows(name: "final_layer.adaLN_modulation.1", totalRows: 2 * inner, rows: inner..<(2 * inner)),
                LinearRows(name: "final_layer.adaLN_modulation.1", totalRows: 2 * inner, rows: 0..<inner)])
        linear("final.linear", inner, [w("proj_out", outFeatures)], [w("final_layer.linear", outFeatures)])
        return WeightTable(entries: entries)
    }
}
