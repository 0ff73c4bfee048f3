import Foundation
import Schnell
import SchnellImageIO

/// One preview against one denoising step at `size` x `size` on the pipeline folder at `path`
/// (float32): the one-time fit of the preview map, then `repeats` rounds of a step (transformer
/// call + Euler step on random latents and text states, 256 T5 tokens) and of a preview of its
/// result (clean estimate + projection + bilinear scaling to 8-bit RGB), and the PNG encode of
/// that preview, which the server adds when it sends one. Prints each round and the medians.
func benchmarkPreview(path: String, size: Int, repeats: Int, threads: Int) throws {
    let backend = CPUBackend(threads: threads, precision: .f32)
    let pipeline = try FluxPipeline.load(PipelineFiles(model: path), backend: backend)
    func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let value = try body()
        return (value, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    let (fit, fitSeconds) = try timed { try pipeline.previewMap() }
    precondition(fit.fitted, "a fresh pipeline fits its preview map")

    let (latents, text, pooled, rotary) = stepInputs(pipeline, backend: backend, size: size)
    let latentSide = size / pipeline.vae.config.downsamplingFactor, gridSide = latentSide / 2
    let schedule = try pipeline.scheduler.schedule(steps: 4, imageSequenceLength: gridSide * gridSide)

    var stepSeconds: [Double] = [], previewSeconds: [Double] = [], encodeSeconds: [Double] = []
    for round in 1...max(repeats, 1) {
        let (velocity, step) = try timed {
            let velocity = pipeline.transformer(latents: latents, text: text, pooled: pooled,
                                                timestep: schedule.transformerTimestep(at: 0), guidance: nil, rotary: rotary)
            try schedule.eulerStep(0, sample: latents, velocity: velocity, backend: backend)
            return velocity
        }
        let (rgb, preview) = try timed {
            let estimate = try schedule.cleanEstimate(afterStep: 0, sample: latents, velocity: velocity, backend: backend)
            return try fit.map.rgb8(packed: backend.download(estimate), latentHeight: latentSide, latentWidth: latentSide,
                                    width: size, height: size)
        }
        let (png, encode) = try timed {
            try ImageEncoder.encode(Image8(width: size, height: size, channels: 3, pixels: rgb), as: .png)
        }
        print(String(format: "round %d: step %.3f s, preview %.4f s, PNG encode %.4f s (%d bytes)", round, step, preview, encode, png.count))
        stepSeconds.append(step)
        previewSeconds.append(preview)
        encodeSeconds.append(encode)
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    let step = median(stepSeconds), preview = median(previewSeconds), encode = median(encodeSeconds)
    print(String(format: "\npreview at %dx%d (%@), medians of %d: step %.3f s, preview %.4f s (%.2f%% of a step), PNG encode %.4f s (%.2f%% with it); preview map fit %.2f s once",
                 size, size, path as NSString, stepSeconds.count, step, preview, 100 * preview / step, encode,
                 100 * (preview + encode) / step, fitSeconds))
}

/// Random inputs for one transformer call at `size` x `size` (seed 0): packed latents, 256 T5
/// states, a pooled CLIP vector and the rotary table.
func stepInputs(_ pipeline: FluxPipeline, backend: any Backend, size: Int)
    -> (latents: Tensor, text: Tensor, pooled: Tensor, rotary: RotaryTable) {
    let config = pipeline.transformer.config, latentChannels = pipeline.vae.config.latentChannels
    let gridSide = size / pipeline.vae.config.downsamplingFactor / 2, textTokens = 256
    var generator = TorchGenerator(seed: 0)
    let latents = backend.upload(generator.randn(count: gridSide * gridSide * 4 * latentChannels),
                                 shape: [gridSide * gridSide, 4 * latentChannels])
    let text = backend.upload(generator.randn(count: textTokens * config.jointAttentionDim), shape: [textTokens, config.jointAttentionDim])
    let pooled = backend.upload(generator.randn(count: config.pooledProjectionDim), shape: [1, config.pooledProjectionDim])
    return (latents, text, pooled, pipeline.transformer.rotaryTable(textTokens: textTokens, gridHeight: gridSide, gridWidth: gridSide))
}
