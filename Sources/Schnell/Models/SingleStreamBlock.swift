/// A FLUX single-stream block over the joint [text; image] sequence (diffusers'
/// `FluxSingleTransformerBlock`):
///   x_mod = LN(x) * (1 + scale) + shift
///   [q | k | v | h] = linear1(x_mod); RMS-norm q, k per head; RoPE
///   x += gate * linear2([attention(q, k, v) | gelu_tanh(h)])
struct SingleStreamBlock: Sendable {
    let modulation: Linear
    let linear1: Linear
    let linear2: Linear
    let qNorm, kNorm: Tensor

    init(_ weights: MappedWeights, index: Int) throws {
        let e = "single.\(index)"
        modulation = try weights.linear("\(e).mod")
        linear1 = try weights.linear("\(e).linear1")
        linear2 = try weights.linear("\(e).linear2")
        qNorm = try weights.vector("\(e).q_norm")
        kNorm = try weights.vector("\(e).k_norm")
    }

    /// Updates x [N, inner] in place.
    func callAsFunction(_ x: Tensor, conditioning: Tensor, rotary: RotaryTable, heads: Int, ops: any Backend) {
        let inner = x.width
        let mod = ops.linear(conditioning, modulation)  // [1, 3 * inner]: shift, scale, gate
        let normed = ops.layerNormModulate(x, scale: mod.columns(inner..<(2 * inner)),
                                           shift: mod.columns(0..<inner), eps: 1e-6)
        let projected = ops.linear(normed, linear1)  // [N, 3 * inner + mlp]
        ops.qkNormRope(projected.columns(0..<inner), heads: heads, weight: qNorm, eps: 1e-6, rotary: rotary)
        ops.qkNormRope(projected.columns(inner..<(2 * inner)), heads: heads, weight: kNorm, eps: 1e-6, rotary: rotary)
        let attention = ops.attention(q: projected.columns(0..<inner), k: projected.columns(inner..<(2 * inner)),
                                      v: projected.columns((2 * inner)..<(3 * inner)), heads: heads,
                                      scale: 1 / Float(inner / heads).squareRoot(), bias: nil, causal: false)
        let mlp = projected.columns((3 * inner)..<projected.width)
        ops.activate(mlp, .geluTanh)
        let output = ops.linear(Tensor.concatenateColumns([attention, mlp]), linear2)
        ops.gatedAdd(x, output, gate: mod.columns((2 * inner)..<(3 * inner)))
    }
}
