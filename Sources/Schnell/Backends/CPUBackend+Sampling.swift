import SchnellKernels

/// The sampling ops on the CPU (Kernels/cpu/latent.c): small, so plain loops.
extension CPUBackend {
    public func affine(_ x: Tensor, scale: Float, shift: Float) -> Tensor {
        let result = output(x.shape)
        packed(x) { schnell_affine($0, floats(result), x.count, scale, shift) }
        return result
    }

    public func clamp(_ x: Tensor, low: Float, high: Float) {
        precondition(x.isContiguous, "clamp: x must be contiguous")
        schnell_clamp(floats(x), x.count, low, high)
    }

    public func packLatents(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 3 && x.shape[1] % 2 == 0 && x.shape[2] % 2 == 0,
                     "packLatents: [C, H, W] with even H and W, not \(x.shape)")
        let (channels, height, width) = (x.shape[0], x.shape[1], x.shape[2])
        let result = output([(height / 2) * (width / 2), 4 * channels])
        packed(x) { schnell_pack_latents($0, floats(result), channels, height, width) }
        return result
    }

    public func unpackLatents(_ x: Tensor, height: Int, width: Int) -> Tensor {
        precondition(x.shape.count == 2 && x.width % 4 == 0 && x.rows == (height / 2) * (width / 2),
                     "unpackLatents: \(x.shape) is not the tokens of a \(height)x\(width) latent grid")
        let channels = x.width / 4
        let result = output([channels, height, width])
        packed(x) { schnell_unpack_latents($0, floats(result), channels, height, width) }
        return result
    }

    public func eulerStep(_ sample: Tensor, velocity: Tensor, delta: Float) {
        precondition(sample.isContiguous && sample.count == velocity.count,
                     "eulerStep: sample \(sample.shape) and velocity \(velocity.shape)")
        packed(velocity) { schnell_euler_step(floats(sample), $0, sample.count, delta) }
    }

    public func noiseMix(_ x: Tensor, noise: Tensor, sigma: Float) -> Tensor {
        precondition(x.count == noise.count, "noiseMix: \(x.shape) and noise \(noise.shape)")
        let result = output(x.shape)
        packed(x) { values in
            packed(noise) { noise in schnell_noise_mix(values, noise, floats(result), x.count, sigma) }
        }
        return result
    }

    public func maskBlend(_ x: Tensor, kept: Tensor, mask: Tensor) {
        precondition(x.isContiguous && x.count == kept.count && x.count == mask.count,
                     "maskBlend: \(x.shape), kept \(kept.shape), mask \(mask.shape)")
        packed(kept) { kept in
            packed(mask) { mask in schnell_mask_blend(floats(x), kept, mask, x.count) }
        }
    }

    public func gaussianSample(mean: Tensor, logVariance: Tensor, noise: Tensor) -> Tensor {
        precondition(mean.count == logVariance.count && mean.count == noise.count,
                     "gaussianSample: mean \(mean.shape), log-variance \(logVariance.shape), noise \(noise.shape)")
        let result = output(mean.shape)
        packed(mean) { mean in
            packed(logVariance) { logVariance in
                packed(noise) { noise in schnell_gaussian_sample(mean, logVariance, noise, floats(result), result.count) }
            }
        }
        return result
    }
}
