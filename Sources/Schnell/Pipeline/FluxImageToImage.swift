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
    /// Packed like the latents, [tokens, 4C]: 1 regenerates, 0 keeps the init image.
    let mask: Tensor?
    let firstStep: Int
    let channels: Int
    let latentHeight: Int
    let latentWidth: Int

    /// What the denoising loop needs per image, packed [tokens, 4C].
    struct Start {
        let latents: Tensor
        let noise: Tensor
        let imageLatents: Tensor
    }

    /// The VAE's latent distribution of the init image [C, h, w], shared by all images of a request.
    struct Encoded {
        let mean: Tensor
        let logVariance: Tensor
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

    init(request: GenerationRequest, initImage: InputImage, steps: Int, latentChannels: Int, downsampling: Int,
         backend: any Backend) {
        firstStep = Self.firstStep(steps: steps, strength: request.strength ?? Self.defaultStrength)
        channels = latentChannels
        let latentHeight = request.height / downsampling, latentWidth = request.width / downsampling
        self.latentHeight = latentHeight
        self.latentWidth = latentWidth
        let rgb = Self.resized(Self.rgb(initImage), width: initImage.width, height: initImage.height, channels: 3,
                               to: request.width, request.height)
        // VaeImageProcessor: [H, W, 3] bytes -> [3, H, W], float32 x / 255, then 2x - 1.
        image = backend.uploadRGB8(rgb, width: request.width, height: request.height)
        mask = request.mask.map { mask in
            let regenerate = Self.resized(stride(from: 3, to: mask.pixels.count, by: 4).map { 255 - mask.pixels[$0] },
                                          width: mask.width, height: mask.height, channels: 1, to: request.width, request.height)
            // Nearest downsampling to the latent grid reads pixel (8y, 8x); binarised at 0.5 of 255;
            // the same for every latent channel.
            let plane: [Float] = (0..<(latentHeight * latentWidth)).map { cell in
                let (y, x) = cell.quotientAndRemainder(dividingBy: latentWidth)
                return Float(regenerate[y * downsampling * request.width + x * downsampling]) / 255 >= 0.5 ? 1 : 0
            }
            let grid = backend.upload(Array(repeatElement(plane, count: latentChannels).joined()),
                                      shape: [latentChannels, latentHeight, latentWidth])
            return backend.packLatents(grid)
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

    func encode(vae: AutoencoderKL) throws -> Encoded {
        let (mean, logVariance) = try vae.encode(image)
        return Encoded(mean: mean, logVariance: logVariance)
    }

    /// The starting latents of one image: the init image's latent sample noised to `sigmas[firstStep]`.
    func start(_ encoded: Encoded, generator: inout TorchGenerator, schedule: FlowMatchSchedule, vae: AutoencoderKL,
               backend: any Backend) -> Start {
        let shape = [channels, latentHeight, latentWidth], count = encoded.mean.count
        let sampleNoise = backend.upload(generator.randn(count: count), shape: shape)
        let sample = backend.gaussianSample(mean: encoded.mean, logVariance: encoded.logVariance, noise: sampleNoise)
        let noise = backend.packLatents(backend.upload(generator.randn(count: count), shape: shape))
        let imageLatents = backend.packLatents(vae.scaledLatents(sample))
        return Start(latents: backend.noiseMix(imageLatents, noise: noise, sigma: schedule.sigmas[firstStep]),
                     noise: noise, imageLatents: imageLatents)
    }

    /// Inpainting, after step `step`: the kept region goes back onto the init image's path.
    func blend(_ latents: Tensor, after step: Int, schedule: FlowMatchSchedule, start: Start, backend: any Backend) {
        guard let mask else { return }
        let kept = step < schedule.steps - 1
            ? backend.noiseMix(start.imageLatents, noise: start.noise, sigma: schedule.sigmas[step + 1])
            : start.imageLatents
        backend.maskBlend(latents, kept: kept, mask: mask)
    }
}
