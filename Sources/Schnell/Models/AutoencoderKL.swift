import Foundation

/// FLUX's VAE (diffusers' `AutoencoderKL` with no quant convs). The decoder turns latents
/// [latentChannels, h, w] into an image [3, 8h, 8w] with values around [-1, 1] (pixels are
/// (x / 2 + 0.5) clamped to [0, 1]); the encoder turns an image in [-1, 1] into the mean and
/// log-variance of the latent distribution. Decoding 1024x1024 peaks near 3 GB resident
/// (float32 weights included): the largest activations are [256, 1024, 1024] float32 (1 GB)
/// where the last upsampling lands; convolution scratch stays within 64 MB.
///
/// Latent spaces: the transformer works on *scaled* latents; the VAE on *unscaled* ones.
/// FluxPipeline decodes `latents / scalingFactor + shiftFactor` (`unscaledLatents`), and the
/// image-to-image pipeline turns an encoding into `(latents - shiftFactor) * scalingFactor`
/// (`scaledLatents`).
public struct AutoencoderKL: Sendable {
    public let config: AutoencoderConfig
    let encoder: VAEEncoder
    let decoder: VAEDecoder
    let backend: any Backend

    /// Loads from a diffusers `vae/` folder (config.json + diffusion_pytorch_model.safetensors),
    /// a pipeline folder holding one, or a single safetensors file in either layout (FLUX's
    /// `ae.safetensors`). `config` overrides the folder's config.json; a single file without
    /// one is read as FLUX.1's VAE (`AutoencoderConfig.flux1`). `backend` prepares the weights
    /// and runs the model.
    public static func load(from path: String, config: AutoencoderConfig? = nil, backend: any Backend) throws -> AutoencoderKL {
        let checkpoint = try Checkpoint(path: path, family: .vae)
        let resolved = try config ?? AutoencoderConfig(checkpoint: checkpoint)
        return try AutoencoderKL(store: checkpoint.store, config: resolved, backend: backend)
    }

    /// Builds the model from a store in either layout; every tensor must be present with the
    /// shape the config implies, and the store must hold nothing else.
    public init(store: WeightStore, config: AutoencoderConfig, backend: any Backend) throws {
        try config.validate(file: store.path)
        let (layout, prefix) = try ModelFamily.vae.requireLayout(of: store)
        let weights = LayerWeights(mapped: try VAEWeightNames.table(config).resolve(from: store, layout: layout, prefix: prefix),
                                   backend: backend)
        encoder = try VAEEncoder(weights, config)
        decoder = try VAEDecoder(weights, config)
        self.config = config
        self.backend = backend
    }

    /// Unscaled latents [latentChannels, h, w] -> image [outChannels, h * f, w * f], f = 8 for FLUX.
    public func decode(_ latents: Tensor) throws -> Tensor {
        try checkShape(latents, channels: config.latentChannels, multiple: 1, what: "latents")
        return try decoder(latents, backend)
    }

    /// Image [inChannels, H, W] (H, W multiples of 8 for FLUX, values in [-1, 1]) -> the latent
    /// distribution's mean and log-variance (clamped to [-30, 20] as diffusers does), each
    /// [latentChannels, H / 8, W / 8], unscaled. A sample is mean + exp(logVariance / 2) * noise.
    public func encode(_ image: Tensor) throws -> (mean: Tensor, logVariance: Tensor) {
        try checkShape(image, channels: config.inChannels, multiple: config.downsamplingFactor, what: "image")
        let moments = try encoder(image, backend)  // [2 * latent, h, w]: mean then log-variance
        let latent = config.latentChannels, height = moments.shape[1], width = moments.shape[2]
        let planes = moments.reshaped([2 * latent, height * width])
        let mean = backend.copy(planes.rows(0..<latent)).reshaped([latent, height, width])
        let logVariance = backend.copy(planes.rows(latent..<2 * latent)).reshaped([latent, height, width])
        backend.clamp(logVariance, low: -30, high: 20)
        return (mean, logVariance)
    }

    /// The latent distribution's mean (its mode): the deterministic encoding. diffusers' FLUX
    /// image-to-image pipeline samples the distribution instead; use `encode` and add noise
    /// to match it draw for draw.
    public func encodeMean(_ image: Tensor) throws -> Tensor {
        try encode(image).mean
    }

    /// Transformer latents -> VAE latents: latents / scalingFactor + shiftFactor.
    public func unscaledLatents(_ latents: Tensor) -> Tensor {
        backend.affine(latents, scale: 1 / config.scalingFactor, shift: config.shiftFactor)
    }

    /// VAE latents -> transformer latents: (latents - shiftFactor) * scalingFactor.
    public func scaledLatents(_ latents: Tensor) -> Tensor {
        backend.affine(latents, scale: config.scalingFactor, shift: -config.shiftFactor * config.scalingFactor)
    }

    private func checkShape(_ x: Tensor, channels: Int, multiple: Int, what: String) throws {
        guard x.shape.count == 3, x.shape[0] == channels, x.shape[1] > 0, x.shape[2] > 0,
              x.shape[1] % multiple == 0, x.shape[2] % multiple == 0 else {
            throw AutoencoderError.wrongInputShape(
                what: what, shape: x.shape,
                expected: "[\(channels), H, W] with H and W positive multiples of \(multiple)")
        }
    }
}

/// Inputs the VAE cannot take.
public enum AutoencoderError: Error, CustomStringConvertible, Equatable {
    case wrongInputShape(what: String, shape: [Int], expected: String)

    public var description: String {
        switch self {
        case let .wrongInputShape(what, shape, expected):
            return "VAE \(what) of shape \(shape): expected \(expected)"
        }
    }
}

/// conv_in, down blocks (resnets, then a stride-2 conv except in the last), mid block,
/// norm + SiLU, conv_out to 2 * latentChannels (mean, log-variance).
struct VAEEncoder {
    struct DownBlock {
        let resnets: [VAEResnetBlock]
        let downsample: Conv2d?
    }

    let convIn: Conv2d
    let downBlocks: [DownBlock]
    let mid: VAEMidBlock
    let normOut: VAEGroupNorm
    let convOut: Conv2d

    init(_ weights: LayerWeights, _ config: AutoencoderConfig) throws {
        let widths = config.blockOutChannels, groups = config.normGroups
        convIn = try weights.conv("encoder.conv_in", padding: .uniform(1))
        var blocks: [DownBlock] = []
        var channels = widths[0]
        for (index, width) in widths.enumerated() {
            let prefix = "encoder.down.\(index)"
            var resnets: [VAEResnetBlock] = []
            for layer in 0..<config.layersPerBlock {
                resnets.append(try VAEResnetBlock(weights, "\(prefix).resnet.\(layer)", in: channels, out: width,
                                                  groups: groups))
                channels = width
            }
            // diffusers pads (left 0, right 1, top 0, bottom 1) before a stride-2 unpadded conv.
            let downsample = index == widths.count - 1 ? nil
                : try weights.conv("\(prefix).downsample", stride: 2,
                                   padding: Conv2d.Padding(top: 0, bottom: 1, left: 0, right: 1))
            blocks.append(DownBlock(resnets: resnets, downsample: downsample))
        }
        downBlocks = blocks
        mid = try VAEMidBlock(weights, "encoder.mid", channels: channels, groups: groups,
                              attention: config.midBlockAttention)
        normOut = try VAEGroupNorm(weights, "encoder.norm_out", groups: groups)
        convOut = try weights.conv("encoder.conv_out", padding: .uniform(1))
    }

    /// [inChannels, H, W] -> [2 * latentChannels, H / f, W / f]
    func callAsFunction(_ image: Tensor, _ backend: some Backend) throws -> Tensor {
        var x = try backend.conv2d(image, convIn)
        for block in downBlocks {
            for resnet in block.resnets { x = try resnet(x, backend) }
            if let downsample = block.downsample { x = try backend.conv2d(x, downsample) }
        }
        x = try mid(x, backend)
        return try backend.conv2d(normOut.inPlace(x, silu: true, backend), convOut)
    }
}

/// conv_in, mid block, up blocks over the reversed widths (layersPerBlock + 1 resnets, then
/// nearest x2 + conv except in the last), norm + SiLU, conv_out.
struct VAEDecoder {
    struct UpBlock {
        let resnets: [VAEResnetBlock]
        let upsample: Conv2d?
    }

    let convIn: Conv2d
    let mid: VAEMidBlock
    let upBlocks: [UpBlock]
    let normOut: VAEGroupNorm
    let convOut: Conv2d

    init(_ weights: LayerWeights, _ config: AutoencoderConfig) throws {
        let widths = Array(config.blockOutChannels.reversed()), groups = config.normGroups
        var channels = widths[0]
        convIn = try weights.conv("decoder.conv_in", padding: .uniform(1))
        mid = try VAEMidBlock(weights, "decoder.mid", channels: channels, groups: groups,
                              attention: config.midBlockAttention)
        var blocks: [UpBlock] = []
        for (index, width) in widths.enumerated() {
            let prefix = "decoder.up.\(index)"
            var resnets: [VAEResnetBlock] = []
            for layer in 0...config.layersPerBlock {
                resnets.append(try VAEResnetBlock(weights, "\(prefix).resnet.\(layer)", in: channels, out: width,
                                                  groups: groups))
                channels = width
            }
            let upsample = index == widths.count - 1 ? nil
                : try weights.conv("\(prefix).upsample", padding: .uniform(1))
            blocks.append(UpBlock(resnets: resnets, upsample: upsample))
        }
        upBlocks = blocks
        normOut = try VAEGroupNorm(weights, "decoder.norm_out", groups: groups)
        convOut = try weights.conv("decoder.conv_out", padding: .uniform(1))
    }

    /// [latentChannels, h, w] -> [outChannels, h * f, w * f]
    func callAsFunction(_ latents: Tensor, _ backend: some Backend) throws -> Tensor {
        var x = try mid(backend.conv2d(latents, convIn), backend)
        for block in upBlocks {
            for resnet in block.resnets { x = try resnet(x, backend) }
            if let upsample = block.upsample { x = try backend.conv2dUpsampled(x, upsample) }
        }
        return try backend.conv2d(normOut.inPlace(x, silu: true, backend), convOut)
    }
}
