/// Activation functions of the op set.
public enum Activation: Sendable {
    case geluTanh, gelu, quickGelu, silu, relu
}

/// How a backend computes with bf16 weights. `f32` is float32 math whatever the stored dtype (as
/// PyTorch in float32); `bf16` rounds activations to bf16 where they meet bf16 weights (linear
/// layers, attention, convolutions), with float32 accumulation. A property of each backend
/// instance, passed to the kernels per call.
public enum Precision: String, Sendable, CaseIterable {
    case f32, bf16
}

/// cos/sin tables for rotary embeddings: [tokens, headDim] each, every pair's angle repeated
/// twice (the interleaved layout FLUX uses).
public struct RotaryTable: Sendable {
    public let cos: Tensor
    public let sin: Tensor

    /// The table rows of tokens [start, end).
    func rows(_ range: Range<Int>) -> RotaryTable {
        RotaryTable(cos: cos.rows(range), sin: sin.rows(range))
    }
}

/// Called by a model after each named stage of its forward pass with the tensor it produced
/// ("temb", "double.0.img", "single.3", ...), the way llama.cpp names `cur` after each op: tests
/// compare layer by layer, a debugger dumps, a profiler times. The tensor is the model's own
/// buffer: download it during the call, before the model writes to it again.
public struct IntermediateObserver {
    private let body: (_ name: String, _ value: Tensor) -> Void

    public init(_ body: @escaping (_ name: String, _ value: Tensor) -> Void) {
        self.body = body
    }

    func callAsFunction(_ name: String, _ value: Tensor) {
        body(name, value)
    }
}

/// The op set models and the pipeline are written against, and the memory it runs on.
///
/// A backend owns its tensors' memory (allocation and reuse), its compute precision, and its
/// copy of the weights (`prepare`, once at load). Data crosses to and from the host only at
/// `upload`/`download` and their 8-bit pixel forms. Tensors are [rows, width] views (a leading
/// axis may be folded into rows); activations are float32 unless an op says otherwise. An op
/// with an `into` argument writes its result there (a view of a larger tensor, so concatenations
/// are built in place) and returns it; without one it allocates the output. No output is
/// zero-filled when its op writes every element. Ops that say "in place" overwrite their first
/// argument, which may be a strided view.
public protocol Backend: AnyObject, Sendable {
    var precision: Precision { get }

    // MARK: memory and transfers

    /// A tensor for an op to write in full before anything reads it; its contents are undefined.
    func allocate(_ shape: [Int], dtype: DType) -> Tensor
    /// Host values in (noise, inputs, test data), converted to `dtype`.
    func upload(_ values: [Float], shape: [Int], dtype: DType) -> Tensor
    /// A checkpoint tensor as a float32 tensor of this backend (norm scales, fixture inputs).
    func upload(_ weight: WeightTensor) -> Tensor
    /// Interleaved 8-bit RGB [height, width, 3] -> [3, height, width] in [-1, 1] (2 v / 255 - 1).
    func uploadRGB8(_ pixels: [UInt8], width: Int, height: Int) -> Tensor
    /// The values as float32 on the host, row-major.
    func download(_ x: Tensor) -> [Float]
    /// An image [3, H, W] in [-1, 1] as interleaved 8-bit RGB: (x / 2 + 0.5) clamped, times 255,
    /// rounded half to even (diffusers' image processor).
    func downloadRGB8(_ image: Tensor) -> [UInt8]

    // MARK: weights, once at load

    /// A linear layer as this backend computes with it. The CPU reads the memory map in place and
    /// returns the layer as it is; a device backend keeps its own copy.
    func prepare(_ layer: Linear) throws -> Linear
    /// The same for a convolution.
    func prepare(_ layer: Conv2d) throws -> Conv2d

    // MARK: transformer ops

    /// x [rows, inFeatures] -> [rows, outFeatures]
    @discardableResult
    func linear(_ x: Tensor, _ layer: Linear, into output: Tensor?) -> Tensor
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
    @discardableResult
    func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, bias: Tensor?,
                   causal: Bool, into output: Tensor?) -> Tensor
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
    /// x's values, packed row after row.
    @discardableResult
    func copy(_ x: Tensor, into output: Tensor?) -> Tensor

    // MARK: channel-first image ops (the VAE)
    // An image is a contiguous tensor of shape [C, H, W], batch 1; seen as [rows, width] it has
    // rows = C * H and width = W, so the row ops above (gatedAdd, activate) apply to it unchanged.

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

    // MARK: sampling ops (latents; float32 products rounded before sums, as PyTorch)

    /// x * scale + shift -> new tensor.
    func affine(_ x: Tensor, scale: Float, shift: Float) -> Tensor
    /// In place: x clamped to [low, high].
    func clamp(_ x: Tensor, low: Float, high: Float)
    /// Latents [C, H, W] -> 2x2 patches as tokens [(H / 2) (W / 2), 4C], per token (c, dy, dx).
    func packLatents(_ x: Tensor) -> Tensor
    /// Tokens [(H / 2) (W / 2), 4C] -> latents [C, H, W].
    func unpackLatents(_ x: Tensor, height: Int, width: Int) -> Tensor
    /// In place: one Euler step of the flow ODE, sample += delta * velocity.
    func eulerStep(_ sample: Tensor, velocity: Tensor, delta: Float)
    /// sigma * noise + (1 - sigma) * x -> new tensor (the scheduler's `scale_noise`).
    func noiseMix(_ x: Tensor, noise: Tensor, sigma: Float) -> Tensor
    /// In place: x = (1 - mask) * kept + mask * x.
    func maskBlend(_ x: Tensor, kept: Tensor, mask: Tensor)
    /// mean + exp(logVariance / 2) * noise -> new tensor.
    func gaussianSample(mean: Tensor, logVariance: Tensor, noise: Tensor) -> Tensor
}

extension Backend {
    public func upload(_ values: [Float], shape: [Int]) -> Tensor {
        upload(values, shape: shape, dtype: .f32)
    }

    public func linear(_ x: Tensor, _ layer: Linear) -> Tensor {
        linear(x, layer, into: nil)
    }

    public func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, bias: Tensor?,
                          causal: Bool) -> Tensor {
        attention(q: q, k: k, v: v, heads: heads, scale: scale, bias: bias, causal: causal, into: nil)
    }

    public func copy(_ x: Tensor) -> Tensor {
        copy(x, into: nil)
    }
}
