import Foundation
import Schnell
import SchnellKernels

/// Times a VAE decode of random latents for an image of `size` x `size` (best of `repeats`),
/// with float32 activations and, when `bf16` is set, with bf16 activations for bf16 weights too.
func benchmarkVAEDecode(path: String, size: Int, repeats: Int, bf16: Bool, ops: any Backend) throws {
    let vae = try AutoencoderKL.load(from: path)
    let side = size / vae.config.downsamplingFactor
    var generator = TorchGenerator(seed: 0)
    let latents = Tensor(shape: [vae.config.latentChannels, side, side],
                         values: generator.randn(count: vae.config.latentChannels * side * side))
    for bf16Activations in bf16 ? [false, true] : [false] {
        schnell_set_bf16_activations(bf16Activations ? 1 : 0)
        var best = Double.infinity
        for _ in 0..<max(repeats, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try vae.decode(latents, backend: ops)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print(String(format: "\nVAE decode %dx%d (%@), %@ activations: %.2f s", size, size, path as NSString,
                     bf16Activations ? "bf16" : "float32", best))
    }
    schnell_set_bf16_activations(0)
}
