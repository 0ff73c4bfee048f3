/// Activation functions of the op set.
public enum Activation: Sendable {
    case geluTanh, gelu, quickGelu, silu, relu
}

/// cos/sin tables for rotary embeddings: [tokens, headDim] each, every pair's angle repeated
/// twice (the interleaved layout FLUX uses).
public struct RotaryTable: Sendable {
    public let cos: Tensor
    public let sin: Tensor
}

/// The op set models are written against. Tensors are float32 [rows, width] views (a leading
/// axis may be folded into rows); weights stay in their stored dtype. Ops that say "in place"
/// write into their first argument's storage, which may be a strided view.
public protocol Backend: Sendable {
    /// x [rows, inFeatures] -> [rows, outFeatures]
    func linear(_ x: Tensor, _ layer: Linear) -> Tensor
    /// Per-row layer norm, optionally affine (weight/bias of width `x.width`).
    func layerNorm(_ x: Tensor, eps: Float, weight: Tensor?, bias: Tensor?) -> Tensor
    /// FLUX's adaptive norm: layerNorm(x) * (1 + scale) + shift (no affine).
    func layerNormModulate(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) -> Tensor
    /// x / rms(x) * weight per row.
    func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) -> Tensor
    /// In place on x [tokens, heads * headDim]: RMS norm per head, then rotary embedding.
    func qkNormRope(_ x: Tensor, heads: Int, weight: Tensor?, eps: Float, rotary: RotaryTable?)
    /// softmax(scale q k^T + bias (+ causal mask)) v per head. q [Lq, heads * d],
    /// k/v [Lk, heads * d] (strided views allowed), bias [heads, Lq, Lk] -> [Lq, heads * d].
    func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, bias: Tensor?,
                   causal: Bool) -> Tensor
    /// In place.
    func activate(_ x: Tensor, _ kind: Activation)
    /// act(a) * b elementwise -> new tensor.
    func gatedActivation(_ a: Tensor, _ b: Tensor, _ kind: Activation) -> Tensor
    /// In place: x += gate * y, gate a row vector of width x.width (nil means 1).
    func gatedAdd(_ x: Tensor, _ y: Tensor, gate: Tensor?)
    /// Rows of a weight table picked by ids: [ids.count, table width], float32.
    func embedding(_ table: WeightTensor, ids: [Int32]) -> Tensor
    /// T5's bucketed relative position bias from its table [buckets, heads]:
    /// [heads, queryTokens, keyTokens], for `attention(bias:)`.
    func relativePositionBias(_ table: WeightTensor, queryTokens: Int, keyTokens: Int,
                              bidirectional: Bool, maxDistance: Int) -> Tensor

    // Channel-first image ops (the VAE). An image is a contiguous Tensor of shape [C, H, W],
    // batch 1; seen as [rows, width] it has rows = C * H and width = W, so the row ops above
    // (gatedAdd, activate) apply to it unchanged.

    /// x [Cin, H, W] -> [Cout, OH, OW], zero padding per side as the layer says.
    func conv2d(_ x: Tensor, _ layer: Conv2d) throws -> Tensor
    /// conv2d over the nearest x2 upsampling of x (x is [C, H, W]), without building it.
    func conv2dUpsampled(_ x: Tensor, _ layer: Conv2d) throws -> Tensor
    /// Group norm over x [C, H, W] (C divisible by groups), affine per channel (weight/bias
    /// [C]), then SiLU when `silu` is true.
    func groupNorm(_ x: Tensor, groups: Int, eps: Float, weight: Tensor?, bias: Tensor?,
                   silu: Bool) -> Tensor
    /// The same, overwriting x (saves a fresh activation when x is not needed afterwards).
    func groupNormInPlace(_ x: Tensor, groups: Int, eps: Float, weight: Tensor?, bias: Tensor?, silu: Bool)
    /// [rows, width] -> [width, rows]: channel-first [C, H * W] to token-major [H * W, C] and back.
    func transposed(_ x: Tensor) -> Tensor
}
