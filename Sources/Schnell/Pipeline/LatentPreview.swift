import Foundation
import SchnellKernels

public struct PreviewError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// The cheap decoder behind `PreviewImage`: a linear map from a latent pixel's channels to the RGB
/// of the 8x8 pixel block the VAE decodes it to, then bilinear scaling to the output size.
///
/// The map is fitted to the model's own VAE, so it needs no per-model table and follows whatever
/// the decoder does (the tiny random test models as well as FLUX.1's VAE): a fixed N(0, 1) latent
/// in the transformer's scaled latent space goes through the pipeline's unscale and the decoder,
/// and least squares finds the weight [3, C] and bias [3] that best give each 8x8 block's mean
/// colour from its latent pixel.
public struct LatentPreviewMap: Sendable, Equatable {
    public let channels: Int
    /// [3, channels], row-major, acting on scaled latents and giving the decoder's [-1, 1] units.
    public let weight: [Float]
    public let bias: [Float]

    /// Side in latent pixels of the random latent the fit decodes: 1,024 samples for 17 unknowns
    /// per colour, small enough to decode in seconds with FLUX.1's VAE on a CPU.
    public static let fitSide = 32

    public init(channels: Int, weight: [Float], bias: [Float]) {
        self.channels = channels
        self.weight = weight
        self.bias = bias
    }

    /// Fits the map to `vae` (see the type's description); deterministic (torch's seed-0 noise).
    public static func fit(vae: AutoencoderKL, backend: any Backend) throws -> LatentPreviewMap {
        let channels = vae.config.latentChannels, side = fitSide, factor = vae.config.downsamplingFactor
        guard vae.config.outChannels == 3 else {
            throw PreviewError(description: "previews need an RGB VAE; this one decodes \(vae.config.outChannels) channels")
        }
        let latents = TorchGenerator.randn(count: channels * side * side, seed: 0)  // [C, side, side]
        let scaled = backend.upload(latents, shape: [channels, side, side])
        let image = backend.download(try vae.decode(vae.unscaledLatents(scaled)))  // [3, side f, side f]
        let imageSide = side * factor
        // Normal equations of [z, 1] -> block mean, in float64: (X^T X) W = X^T Y, X [side^2, C + 1].
        let unknowns = channels + 1
        var gram = [Double](repeating: 0, count: unknowns * unknowns)
        var moments = [Double](repeating: 0, count: unknowns * 3)
        var sample = [Double](repeating: 1, count: unknowns)
        for y in 0..<side {
            for x in 0..<side {
                for c in 0..<channels { sample[c] = Double(latents[(c * side + y) * side + x]) }
                var blockMeans = [Double](repeating: 0, count: 3)
                for k in 0..<3 {
                    for dy in 0..<factor {
                        let row = (k * imageSide + y * factor + dy) * imageSide + x * factor
                        for dx in 0..<factor { blockMeans[k] += Double(image[row + dx]) }
                    }
                    blockMeans[k] /= Double(factor * factor)
                }
                for i in 0..<unknowns {
                    for j in 0..<unknowns { gram[i * unknowns + j] += sample[i] * sample[j] }
                    for k in 0..<3 { moments[i * 3 + k] += sample[i] * blockMeans[k] }
                }
            }
        }
        let solution = try solve(gram, moments, size: unknowns, columns: 3)  // [C + 1, 3]
        var weight = [Float](repeating: 0, count: 3 * channels)
        for k in 0..<3 {
            for c in 0..<channels { weight[k * channels + c] = Float(solution[c * 3 + k]) }
        }
        let bias = (0..<3).map { Float(solution[channels * 3 + $0]) }
        return LatentPreviewMap(channels: channels, weight: weight, bias: bias)
    }

    /// Solves a x = b for a [size, size] symmetric positive definite (a Gram matrix) and b [size,
    /// columns] by Gaussian elimination with partial pivoting; a (near) singular a is refused.
    static func solve(_ a: [Double], _ b: [Double], size: Int, columns: Int) throws -> [Double] {
        var a = a, b = b
        let largest = a.map(abs).max() ?? 0
        for pivot in 0..<size {
            let best = (pivot..<size).max { abs(a[$0 * size + pivot]) < abs(a[$1 * size + pivot]) } ?? pivot
            guard abs(a[best * size + pivot]) > largest * 1e-12 else {
                throw PreviewError(description: "the VAE's decoding of random latents does not determine a preview map (singular least squares)")
            }
            if best != pivot {
                for j in 0..<size { a.swapAt(pivot * size + j, best * size + j) }
                for k in 0..<columns { b.swapAt(pivot * columns + k, best * columns + k) }
            }
            for row in (pivot + 1)..<size {
                let factor = a[row * size + pivot] / a[pivot * size + pivot]
                for j in pivot..<size { a[row * size + j] -= factor * a[pivot * size + j] }
                for k in 0..<columns { b[row * columns + k] -= factor * b[pivot * columns + k] }
            }
        }
        var x = [Double](repeating: 0, count: size * columns)
        for row in stride(from: size - 1, through: 0, by: -1) {
            for k in 0..<columns {
                var value = b[row * columns + k]
                for j in (row + 1)..<size { value -= a[row * size + j] * x[j * columns + k] }
                x[row * columns + k] = value / a[row * size + row]
            }
        }
        return x
    }

    /// Packed latents [(latentHeight / 2) (latentWidth / 2), 4 * channels] -> 8-bit RGB
    /// [height, width, 3] (`schnell_preview_rgb8`).
    public func rgb8(packed: [Float], latentHeight: Int, latentWidth: Int, width: Int, height: Int) throws -> [UInt8] {
        guard latentHeight > 0, latentWidth > 0, latentHeight % 2 == 0, latentWidth % 2 == 0,
              packed.count == latentHeight * latentWidth * channels, width > 0, height > 0 else {
            throw PreviewError(description: "a preview needs even latent sides and \(channels) channels per latent pixel: got \(packed.count) values for \(latentWidth)x\(latentHeight), output \(width)x\(height)")
        }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        let status = schnell_preview_rgb8(packed, channels, latentHeight, latentWidth, weight, bias, &rgb, width, height)
        guard status == 0 else { throw PreviewError(description: "out of memory for a \(width)x\(height) preview") }
        return rgb
    }
}

/// The pipeline's preview map, fitted once on first use; one fit even when requests race.
final class PreviewMapCache: @unchecked Sendable {
    private let lock = NSLock()
    private var map: LatentPreviewMap?

    /// The map, and whether this call fitted it (with `fit`).
    func get(_ fit: () throws -> LatentPreviewMap) rethrows -> (map: LatentPreviewMap, fitted: Bool) {
        try lock.withLock {
            if let map { return (map, false) }
            let fitted = try fit()
            map = fitted
            return (fitted, true)
        }
    }
}
