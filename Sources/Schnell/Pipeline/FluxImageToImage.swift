import Foundation

/// Image to image and inpainting as diffusers' `FluxImg2ImgPipeline` and `FluxInpaintPipeline` (0.42.1):
///   init image -> resized to width x height (PIL Lanczos, only if it is another size) -> x / 255 * 2 - 1
///   -> VAE encoder, once per request: mean and log-variance [C, h, w]
///   per image, from the generator of its seed, in this order: sample = mean + exp(logvar / 2) * randn,
///   then noise = randn; image latents = (sample - shift) * scale; both packed to [tokens, 4C]
///   the schedule of `steps` runs only from firstStep = int(max(steps - min(steps * strength, steps), 0)),
///   starting from sigma * noise + (1 - sigma) * image latents, sigma = sigmas[firstStep]
/// Inpainting keeps the unmasked region on the init image's noising path: after each step,
///   latents = (1 - mask) * (sigmaNext * noise + (1 - sigmaNext) * image latents) + mask * latents,
/// with the clean image latents after the last step. diffusers also encodes the masked image (one more
/// draw from the generator, after those two); FLUX.1's 64-channel transformer never reads it, so it is skipped.
struct ImageToImage {
    /// `strength` of diffusers' img2img and inpaint pipelines when none is given.
    static let defaultStrength = 0.6

    /// [3, H, W] in [-1, 1].
    let image: Tensor
    /// Packed like the latents, [tokens * 4C]: 1 regenerates, 0 keeps the init image.
    let mask: [Float]?
    let firstStep: Int
    let channels: Int
    let latentHeight: Int
    let latentWidth: Int

    /// What the denoising loop needs per image.
    struct Start {
        let latents: Tensor
        let noise: [Float]
        let imageLatents: [Float]
    }

    /// The VAE's latent distribution of the init image, shared by all images of a request.
    struct Encoded {
        let mean: [Float]
        let standardDeviation: [Float]
    }

    /// Checks the edit fields of a request; the messages name the parameter.
    static func validate(_ request: GenerationRequest, steps: Int) throws {
        guard let initImage = request.initImage else {
            if request.mask != nil {
                throw PipelineError.invalidRequest(parameter: "image", reason: "a mask needs an init image to edit")
            }
            if request.strength != nil {
                throw PipelineError.invalidRequest(parameter: "strength", reason: "applies only with an init image")
            }
            return
        }
        try check(initImage, parameter: "image", channels: [3, 4])
        if let mask = request.mask {
            try check(mask, parameter: "mask", channels: [4])
            guard mask.width == initImage.width, mask.height == initImage.height else {
                throw PipelineError.invalidRequest(parameter: "mask", reason: "it is \(mask.width)x\(mask.height) but the image is \(initImage.width)x\(initImage.height); they must match")
            }
        }
        let strength = request.strength ?? defaultStrength
        guard strength.isFinite, strength > 0, strength <= 1 else {
            throw PipelineError.invalidRequest(parameter: "strength", reason: "\(strength) is outside (0, 1]")
        }
        guard firstStep(steps: steps, strength: strength) < steps else {
            throw PipelineError.invalidRequest(parameter: "strength", reason: "\(strength) of \(steps) steps leaves no step to run")
        }
    }

    private static func check(_ image: InputImage, parameter: String, channels: Set<Int>) throws {
        guard channels.contains(image.channels) else {
            let expected = channels == [4] ? "4 (RGBA: the alpha marks what to regenerate)" : "3 (RGB) or 4 (RGBA)"
            throw PipelineError.invalidRequest(parameter: parameter, reason: "it has \(image.channels) channels; expected \(expected)")
        }
        guard image.width >= 1, image.height >= 1, image.pixels.count == image.width * image.height * image.channels else {
            throw PipelineError.invalidRequest(parameter: parameter, reason: "\(image.pixels.count) bytes do not make a \(image.width)x\(image.height) image of \(image.channels) channels")
        }
    }

    /// diffusers' `get_timesteps`: the first of `steps` steps that runs, in Python float arithmetic.
    static func firstStep(steps: Int, strength: Double) -> Int {
        let noisedSteps = min(Double(steps) * strength, Double(steps))
        return Int(max(Double(steps) - noisedSteps, 0))
    }

    init(request: GenerationRequest, initImage: InputImage, steps: Int, latentChannels: Int, downsampling: Int) {
        firstStep = Self.firstStep(steps: steps, strength: request.strength ?? Self.defaultStrength)
        channels = latentChannels
        let latentHeight = request.height / downsampling, latentWidth = request.width / downsampling
        self.latentHeight = latentHeight
        self.latentWidth = latentWidth
        let rgb = Self.resized(Self.rgb(initImage), width: initImage.width, height: initImage.height, channels: 3,
                               to: request.width, request.height)
        // VaeImageProcessor: [H, W, 3] bytes -> [3, H, W], float32 x / 255, then 2x - 1.
        let plane = request.width * request.height
        var values = [Float](repeating: 0, count: 3 * plane)
        for pixel in 0..<plane {
            for channel in 0..<3 {
                values[channel * plane + pixel] = 2 * (Float(rgb[pixel * 3 + channel]) / 255) - 1
            }
        }
        image = Tensor(shape: [3, request.height, request.width], values: values)
        mask = request.mask.map { mask in
            let regenerate = Self.resized(stride(from: 3, to: mask.pixels.count, by: 4).map { 255 - mask.pixels[$0] },
                                          width: mask.width, height: mask.height, channels: 1, to: request.width, request.height)
            // Nearest downsampling to the latent grid reads pixel (8y, 8x); binarised at 0.5 of 255.
            var grid = [Float](repeating: 0, count: latentChannels * latentHeight * latentWidth)
            for y in 0..<latentHeight {
                for x in 0..<latentWidth where Float(regenerate[y * downsampling * request.width + x * downsampling]) / 255 >= 0.5 {
                    for c in 0..<latentChannels { grid[(c * latentHeight + y) * latentWidth + x] = 1 }
                }
            }
            return LatentPacking.pack(grid, channels: latentChannels, height: latentHeight, width: latentWidth).values
        }
    }

    private static func rgb(_ image: InputImage) -> [UInt8] {
        guard image.channels == 4 else { return image.pixels }
        return (0..<image.width * image.height).flatMap { image.pixels[($0 * 4)..<($0 * 4 + 3)] }
    }

    private static func resized(_ pixels: [UInt8], width: Int, height: Int, channels: Int, to newWidth: Int, _ newHeight: Int) -> [UInt8] {
        guard width != newWidth || height != newHeight else { return pixels }
        return LanczosResampling.resize(pixels, width: width, height: height, channels: channels,
                                        toWidth: newWidth, toHeight: newHeight)
    }

    func encode(vae: AutoencoderKL, backend: some Backend) throws -> Encoded {
        let (mean, logVariance) = try vae.encode(image, backend: backend)
        return Encoded(mean: mean.values, standardDeviation: logVariance.values.map { exp(0.5 * $0) })
    }

    /// The starting latents of one image: the init image's latent sample noised to `sigmas[firstStep]`.
    func start(_ encoded: Encoded, generator: inout TorchGenerator, schedule: FlowMatchSchedule, vae: AutoencoderKL) -> Start {
        let count = encoded.mean.count
        let sampleNoise = generator.randn(count: count)
        var sample = [Float](repeating: 0, count: count)
        for index in 0..<count {
            let spread = encoded.standardDeviation[index] * sampleNoise[index]
            sample[index] = encoded.mean[index] + spread
        }
        let noise = generator.randn(count: count)
        let scaled = vae.scaledLatents(Tensor(shape: [channels, latentHeight, latentWidth], values: sample))
        let imageLatents = LatentPacking.pack(scaled.values, channels: channels, height: latentHeight, width: latentWidth).values
        let packedNoise = LatentPacking.pack(noise, channels: channels, height: latentHeight, width: latentWidth).values
        let latents = Self.noised(imageLatents, noise: packedNoise, sigma: schedule.sigmas[firstStep])
        return Start(latents: Tensor(shape: [latents.count / (4 * channels), 4 * channels], values: latents),
                     noise: packedNoise, imageLatents: imageLatents)
    }

    /// Inpainting, after step `step`: the kept region goes back onto the init image's path.
    func blend(_ latents: inout [Float], after step: Int, schedule: FlowMatchSchedule, start: Start) {
        guard let mask else { return }
        let kept = step < schedule.steps - 1
            ? Self.noised(start.imageLatents, noise: start.noise, sigma: schedule.sigmas[step + 1])
            : start.imageLatents
        for index in latents.indices {
            let keep = (1 - mask[index]) * kept[index]
            let regenerate = mask[index] * latents[index]
            latents[index] = keep + regenerate
        }
    }

    /// `scale_noise`: sigma * noise + (1 - sigma) * latents, in float32.
    private static func noised(_ latents: [Float], noise: [Float], sigma: Float) -> [Float] {
        zip(latents, noise).map { latent, noise in
            let noisePart = sigma * noise
            let latentPart = (1 - sigma) * latent
            return noisePart + latentPart
        }
    }
}
