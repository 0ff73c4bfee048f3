/// The VAE's building blocks (diffusers' ResnetBlock2D, the mid block's Attention and
/// UNetMidBlock2D, as AutoencoderKL configures them). Images are [C, H, W].

/// GroupNorm with affine weight and bias [C]; eps 1e-6 everywhere in the VAE.
struct VAEGroupNorm {
    static let eps: Float = 1e-6
    let weight: Tensor
    let bias: Tensor
    let groups: Int

    init(_ weights: LayerWeights, _ name: String, groups: Int) throws {
        weight = try weights.vector(name + ".weight")
        bias = try weights.vector(name + ".bias")
        self.groups = groups
    }

    func callAsFunction(_ x: Tensor, silu: Bool, _ backend: some Backend) -> Tensor {
        backend.groupNorm(x, groups: groups, eps: Self.eps, weight: weight, bias: bias, silu: silu)
    }

    /// Normalises x itself: for an activation nothing reads afterwards.
    func inPlace(_ x: Tensor, silu: Bool, _ backend: some Backend) -> Tensor {
        backend.groupNormInPlace(x, groups: groups, eps: Self.eps, weight: weight, bias: bias, silu: silu)
        return x
    }
}

/// x + conv2(silu(norm2(conv1(silu(norm1(x)))))), the skip through a 1x1 conv when the width
/// changes. No time embedding, dropout inactive, output scale 1.
struct VAEResnetBlock {
    let norm1: VAEGroupNorm
    let conv1: Conv2d
    let norm2: VAEGroupNorm
    let conv2: Conv2d
    let shortcut: Conv2d?

    init(_ weights: LayerWeights, _ name: String, in inChannels: Int, out outChannels: Int,
         groups: Int) throws {
        norm1 = try VAEGroupNorm(weights, name + ".norm1", groups: groups)
        conv1 = try weights.conv(name + ".conv1", padding: .uniform(1))
        norm2 = try VAEGroupNorm(weights, name + ".norm2", groups: groups)
        conv2 = try weights.conv(name + ".conv2", padding: .uniform(1))
        shortcut = inChannels == outChannels ? nil : try weights.conv(name + ".shortcut", padding: .uniform(0))
    }

    /// x is consumed: with a 1x1 shortcut, norm1 overwrites x once the shortcut has read it
    /// (at 512x512 that saves a fresh 256 MB activation). Callers pass activations they drop.
    func callAsFunction(_ x: Tensor, _ backend: some Backend) throws -> Tensor {
        let skip = try shortcut.map { try backend.conv2d(x, $0) } ?? x
        let normalised = shortcut == nil ? norm1(x, silu: true, backend) : norm1.inPlace(x, silu: true, backend)
        let hidden = try backend.conv2d(normalised, conv1)
        let output = try backend.conv2d(norm2.inPlace(hidden, silu: true, backend), conv2)  // [Cout, H, W]
        backend.gatedAdd(output, skip, gate: nil)
        return output
    }
}

/// Single-head self-attention over the H * W pixels, with a residual:
/// x + out(attention(q, k, v)) where q, k, v are linear maps of groupNorm(x) per pixel.
struct VAEAttention {
    let norm: VAEGroupNorm
    let qkv: Linear  // [3C, C]: q, k, v weights side by side
    let out: Linear
    let channels: Int

    init(_ weights: LayerWeights, _ name: String, channels: Int, groups: Int) throws {
        norm = try VAEGroupNorm(weights, name + ".norm", groups: groups)
        qkv = try weights.linear(name + ".qkv")
        out = try weights.linear(name + ".out")
        self.channels = channels
    }

    func callAsFunction(_ x: Tensor, _ backend: some Backend) -> Tensor {
        let c = channels, pixels = x.count / channels
        let tokens = backend.transposed(norm(x, silu: false, backend).reshaped([c, pixels]))  // [HW, C]
        let projected = backend.linear(tokens, qkv)  // [HW, 3C] -> q, k, v
        let attended = backend.attention(q: projected.columns(0..<c), k: projected.columns(c..<2 * c),
                                         v: projected.columns(2 * c..<3 * c), heads: 1,
                                         scale: 1 / Float(c).squareRoot(), bias: nil, causal: false)
        let output = backend.transposed(backend.linear(attended, out)).reshaped(x.shape)  // [C, H, W]
        backend.gatedAdd(output, x, gate: nil)
        return output
    }
}

/// resnet, attention (when configured), resnet at the lowest resolution.
struct VAEMidBlock {
    let first: VAEResnetBlock
    let attention: VAEAttention?
    let second: VAEResnetBlock

    init(_ weights: LayerWeights, _ name: String, channels: Int, groups: Int, attention: Bool) throws {
        first = try VAEResnetBlock(weights, name + ".first", in: channels, out: channels, groups: groups)
        self.attention = attention
            ? try VAEAttention(weights, name + ".attention", channels: channels, groups: groups) : nil
        second = try VAEResnetBlock(weights, name + ".second", in: channels, out: channels, groups: groups)
    }

    func callAsFunction(_ x: Tensor, _ backend: some Backend) throws -> Tensor {
        var hidden = try first(x, backend)
        if let attention { hidden = attention(hidden, backend) }
        return try second(hidden, backend)
    }
}
