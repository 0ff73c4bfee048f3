import Foundation
import Schnell

/// Times a VAE decode of random latents for an image of `size` x `size` (best of `repeats`).
func benchmarkVAEDecode(path: String, size: Int, repeats: Int, ops: any Backend) throws {
    let vae = try AutoencoderKL.load(from: path)
    let side = size / vae.config.downsamplingFactor
    var generator = TorchGenerator(seed: 0)
    let latents = Tensor(shape: [vae.config.latentChannels, side, side],
                         values: generator.randn(count: vae.config.latentChannels * side * side))
    var best = Double.infinity
    for _ in 0..<max(repeats, 1) {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try vae.decode(latents, backend: ops)
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    print(String(format: "\nVAE decode %dx%d (%@): %.2f s", size, size, path as NSString, best))
}
