/// FLUX's latent layout changes: the VAE works on [C, h, w]; the transformer on 2x2 patches
/// flattened to tokens [(h/2)(w/2), 4C] with per-token order (c, dy, dx), as diffusers'
/// `_pack_latents` / `_unpack_latents`.
enum LatentPacking {
    static func pack(_ values: [Float], channels: Int, height: Int, width: Int) -> Tensor {
        let gridWidth = width / 2, tokens = (height / 2) * gridWidth, tokenWidth = 4 * channels
        var packed = [Float](repeating: 0, count: tokens * tokenWidth)
        for c in 0..<channels {
            for y in 0..<height {
                for x in 0..<width {
                    let token = (y / 2) * gridWidth + x / 2
                    packed[token * tokenWidth + c * 4 + (y % 2) * 2 + x % 2] = values[(c * height + y) * width + x]
                }
            }
        }
        return Tensor(shape: [tokens, tokenWidth], values: packed)
    }

    static func unpack(_ tokens: Tensor, channels: Int, height: Int, width: Int) -> Tensor {
        let packed = tokens.values, gridWidth = width / 2, tokenWidth = 4 * channels
        var values = [Float](repeating: 0, count: channels * height * width)
        for c in 0..<channels {
            for y in 0..<height {
                for x in 0..<width {
                    let token = (y / 2) * gridWidth + x / 2
                    values[(c * height + y) * width + x] = packed[token * tokenWidth + c * 4 + (y % 2) * 2 + x % 2]
                }
            }
        }
        return Tensor(shape: [channels, height, width], values: values)
    }
}

/// A decoded image [3, H, W] in [-1, 1] to 8-bit RGB as diffusers' image processor does:
/// (x * 0.5 + 0.5) clamped to [0, 1], times 255, rounded half to even.
enum ImageQuantization {
    static func rgb8(_ image: Tensor) -> [UInt8] {
        let values = image.values, plane = image.count / 3
        var rgb = [UInt8](repeating: 0, count: image.count)
        for channel in 0..<3 {
            for pixel in 0..<plane {
                let unit = min(max(values[channel * plane + pixel] * 0.5 + 0.5, 0), 1)
                rgb[pixel * 3 + channel] = UInt8((unit * 255).rounded(.toNearestOrEven))
            }
        }
        return rgb
    }
}
