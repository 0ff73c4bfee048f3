/// A FLUX single-stream block over the joint [text; image] sequence (diffusers'
/// `FluxSingleTransformerBlock`):
///   x_mod = LN(x) * (1 + scale) + shift
///   [q | k | v | h] = linear1(x_mod); RMS-norm q, k per head; RoPE
///   x += gate * linear2([attention(q, k, v) | gelu_tanh(h)])
struct SingleStreamBlock: Sendable {
    let modulation: Linear
    /// linear1 split by output rows: q | k | v [3 * inner], and the MLP input [mlp].
    let qkv: Linear
    let mlpIn: Linear
    let linear2: Linear
    let qNorm, kNorm: Tensor

    init(_ weights: some LayerSource, index: Int) throws {
        let e = "single.\(index)"
        modulation = try weights.linear("\(e).mod")
        let linear1 = try weights.linear("\(e).linear1")
        let inner = linear1.inFeatures
        qkv = try linear1.outputs(0..<(3 * inner))
        mlpIn = try linear1.outputs((3 * inner)..<linear1.outFeatures)
        linear2 = try weights.linear("\(e).linear2")
        qNorm = try weights.vector("\(e).q_norm")
        kNorm = try weights.vector("\(e).k_norm")
    }

    /// Updates x [N, inner] in place.
    func callAsFunction(_ x: Tensor, conditioning: Tensor, rotary: RotaryTable, heads: Int, ops: any Backend) {
        let inner = x.width, mlp = mlpIn.outFeatures
        let mod = ops.linear(conditioning, modulation)  // [1, 3 * inner]: shift, scale, gate
        let normed = ops.layerNormModulate(x, scale: mod.columns(inner..<(2 * inner)),
                                           shift: mod.columns(0..<inner), eps: 1e-6)
        // linear2's input [N, inner + mlp] = [attention | gelu(MLP input)], filled in place.
        let joined = ops.allocate([x.rows, inner + mlp], dtype: .f32)
        let attended = joined.columns(0..<inner), hidden = joined.columns(inner..<(inner + mlp))
        let projected = ops.linear(normed, qkv)  // [N, 3 * inner]
        ops.linear(normed, mlpIn, into: hidden)
        ops.qkNormRope(projected.columns(0..<inner), heads: heads, weight: qNorm, eps: 1e-6, rotary: rotary)
        ops.qkNormRope(projected.columns(inner..<(2 * inner)), heads: heads, weight: kNorm, eps: 1e-6, rotary: rotary)
        ops.attention(q: projected.columns(0..<inner), k: projected.columns(inner..<(2 * inner)),
                      v: projected.columns((2 * inner)..<(3 * inner)), heads: heads,
                      scale: 1 / Float(inner / heads).squareRoot(), bias: nil, causal: false, into: attended)
        ops.activate(hidden, .geluTanh)
        ops.gatedAdd(x, ops.linear(joined, linear2), gate: mod.columns((2 * inner)..<(3 * inner)))
    }
}
