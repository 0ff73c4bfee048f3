/// A FLUX double-stream block: text and image tokens keep their own weights but attend
/// jointly (text first). Semantics of diffusers' `FluxTransformerBlock`:
///   x_mod = LN(x) * (1 + scale) + shift          per stream, 6 modulation vectors each
///   q, k, v = qkv(x_mod); RMS-norm q, k per head; RoPE over the joint sequence
///   x += gate_msa * proj(attention)
///   x += gate_mlp * mlp(LN(x) * (1 + scale_mlp) + shift_mlp)       (GELU-tanh MLP)
struct DoubleStreamBlock: Sendable {
    let imgModulation, txtModulation: Linear
    let imgQKV, txtQKV: Linear
    let imgQNorm, imgKNorm, txtQNorm, txtKNorm: Tensor
    let imgProj, txtProj: Linear
    let imgMLPIn, imgMLPOut, txtMLPIn, txtMLPOut: Linear

    init(_ weights: some LayerSource, index: Int) throws {
        let e = "double.\(index)"
        imgModulation = try weights.linear("\(e).img_mod")
        txtModulation = try weights.linear("\(e).txt_mod")
        imgQKV = try weights.linear("\(e).img_qkv")
        txtQKV = try weights.linear("\(e).txt_qkv")
        imgQNorm = try weights.vector("\(e).img_q_norm")
        imgKNorm = try weights.vector("\(e).img_k_norm")
        txtQNorm = try weights.vector("\(e).txt_q_norm")
        txtKNorm = try weights.vector("\(e).txt_k_norm")
        imgProj = try weights.linear("\(e).img_proj")
        txtProj = try weights.linear("\(e).txt_proj")
        imgMLPIn = try weights.linear("\(e).img_mlp_in")
        imgMLPOut = try weights.linear("\(e).img_mlp_out")
        txtMLPIn = try weights.linear("\(e).txt_mlp_in")
        txtMLPOut = try weights.linear("\(e).txt_mlp_out")
    }

    /// Updates txt [Nt, inner] and img [Ni, inner] in place. `conditioning` is silu(temb) [1, inner];
    /// `rotary` covers the joint sequence (text rows first).
    func callAsFunction(txt: Tensor, img: Tensor, conditioning: Tensor, rotary: RotaryTable,
                        heads: Int, ops: any Backend) {
        let inner = img.width, textTokens = txt.rows
        let imgMod = ops.linear(conditioning, imgModulation)  // [1, 6 * inner]
        let txtMod = ops.linear(conditioning, txtModulation)
        func chunk(_ mod: Tensor, _ i: Int) -> Tensor { mod.columns((i * inner)..<((i + 1) * inner)) }

        // Each stream's q|k|v [N, 3 * inner] is written into its rows of one joint [Nt + Ni, 3 * inner]
        // buffer, so attention sees one sequence.
        let txtNormed = ops.layerNormModulate(txt, scale: chunk(txtMod, 1), shift: chunk(txtMod, 0), eps: 1e-6)
        let imgNormed = ops.layerNormModulate(img, scale: chunk(imgMod, 1), shift: chunk(imgMod, 0), eps: 1e-6)
        let qkv = ops.allocate([textTokens + img.rows, 3 * inner], dtype: .f32)
        ops.linear(txtNormed, txtQKV, into: qkv.rows(0..<textTokens))
        ops.linear(imgNormed, imgQKV, into: qkv.rows(textTokens..<qkv.rows))
        let txtRows = qkv.rows(0..<textTokens), imgRows = qkv.rows(textTokens..<qkv.rows)
        let txtRotary = rotary.rows(0..<textTokens), imgRotary = rotary.rows(textTokens..<qkv.rows)
        ops.qkNormRope(txtRows.columns(0..<inner), heads: heads, weight: txtQNorm, eps: 1e-6, rotary: txtRotary)
        ops.qkNormRope(txtRows.columns(inner..<(2 * inner)), heads: heads, weight: txtKNorm, eps: 1e-6, rotary: txtRotary)
        ops.qkNormRope(imgRows.columns(0..<inner), heads: heads, weight: imgQNorm, eps: 1e-6, rotary: imgRotary)
        ops.qkNormRope(imgRows.columns(inner..<(2 * inner)), heads: heads, weight: imgKNorm, eps: 1e-6, rotary: imgRotary)
        let attention = ops.attention(q: qkv.columns(0..<inner), k: qkv.columns(inner..<(2 * inner)),
                                      v: qkv.columns((2 * inner)..<(3 * inner)), heads: heads,
                                      scale: 1 / Float(inner / heads).squareRoot(), bias: nil, causal: false)

        ops.gatedAdd(txt, ops.linear(attention.rows(0..<textTokens), txtProj), gate: chunk(txtMod, 2))
        ops.gatedAdd(img, ops.linear(attention.rows(textTokens..<attention.rows), imgProj), gate: chunk(imgMod, 2))
        feedForward(txt, mod: txtMod, into: txtMLPIn, txtMLPOut, ops: ops, chunk: chunk)
        feedForward(img, mod: imgMod, into: imgMLPIn, imgMLPOut, ops: ops, chunk: chunk)
    }

    private func feedForward(_ x: Tensor, mod: Tensor, into first: Linear, _ second: Linear,
                             ops: any Backend, chunk: (Tensor, Int) -> Tensor) {
        let normed = ops.layerNormModulate(x, scale: chunk(mod, 4), shift: chunk(mod, 3), eps: 1e-6)
        let hidden = ops.linear(normed, first)  // [N, mlp]
        ops.activate(hidden, .geluTanh)
        ops.gatedAdd(x, ops.linear(hidden, second), gate: chunk(mod, 5))
    }
}
