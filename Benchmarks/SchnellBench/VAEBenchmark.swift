import Foundation
import Schnell

/// Times a VAE decode of random latents for an image of `size` x `size` (best of `repeats`) on
/// float32 activations and, when `bf16` is set, on a bf16-precision backend too.
func benchmarkVAEDecode(path: String, size: Int, repeats: Int, bf16: Bool, threads: Int) throws {
    for precision in bf16 ? [Precision.f32, .bf16] : [.f32] {
        let backend = CPUBackend(threads: threads, precision: precision)
        let vae = try AutoencoderKL.load(from: path, backend: backend)
        let side = size / vae.config.downsamplingFactor
        var generator = TorchGenerator(seed: 0)
        let latents = backend.upload(generator.randn(count: vae.config.latentChannels * side * side),
                                     shape: [vae.config.latentChannels, side, side])
        var best = Double.infinity
        for _ in 0..<max(repeats, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try vae.decode(latents)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print(String(format: "\nVAE decode %dx%d (%@), %@ activations: %.2f s", size, size, path as NSString,
                     precision == .bf16 ? "bf16" : "float32", best))
    }
}
