/// What to generate: the one request value the CLI and the server build and the pipeline runs.
/// Unset fields take the model's defaults (`FluxPipeline.defaultSteps`, ...); the bounds are
/// `GenerationLimits`.
public struct GenerationRequest: Sendable, Equatable {
    public var prompt: String
    public var width: Int
    public var height: Int
    public var steps: Int?
    /// Guidance scale for models with a guidance embedding (dev); ignored by schnell.
    public var guidance: Float?
    /// Image i uses seed + i, wrapping past UInt64.max to 0 (so no two images of a request share
    /// a seed); nil draws a random seed (reported in the result).
    public var seed: UInt64?
    public var count: Int
    /// T5 tokens: 256 for schnell, 512 for dev unless set.
    public var maxSequenceLength: Int?
    /// Image to image: the picture to start from, resized to width x height if it is another size.
    public var initImage: InputImage?
    /// Inpainting (needs `initImage`, same size): RGBA whose transparent pixels (alpha < 128) mark
    /// what to regenerate; the rest keeps the init image.
    public var mask: InputImage?
    /// With `initImage`: how far it is noised, in (0, 1]; the last `steps * strength` steps run.
    /// nil takes diffusers' default, 0.6.
    public var strength: Double?
    /// Previews per image (0...`GenerationLimits.maxPreviews`), handed to `generate`'s `preview`
    /// at evenly spaced steps before the last; fewer when there are fewer steps.
    public var previews: Int = 0
    /// LoRAs to apply, each with its scale (`FluxPipeline.loadLoRA`); the base weights stay as loaded.
    public var loras: [AppliedLoRA] = []
    /// How the LoRAs reach the layers (`LoRAMode`): merged into float32 layers, added at run
    /// time to the others, by default.
    public var loraMode: LoRAMode = .auto

    public init(prompt: String, width: Int = 1024, height: Int = 1024, steps: Int? = nil, guidance: Float? = nil,
                seed: UInt64? = nil, count: Int = 1, maxSequenceLength: Int? = nil,
                initImage: InputImage? = nil, mask: InputImage? = nil, strength: Double? = nil, previews: Int = 0) {
        self.prompt = prompt
        self.width = width
        self.height = height
        self.steps = steps
        self.guidance = guidance
        self.seed = seed
        self.count = count
        self.maxSequenceLength = maxSequenceLength
        self.initImage = initImage
        self.mask = mask
        self.strength = strength
        self.previews = previews
    }
}

/// An 8-bit picture given to the pipeline: rows top-down, `channels` (3 = RGB, 4 = RGBA, straight
/// alpha) values per pixel. An init image's alpha is dropped, as PIL's convert("RGB") does.
public struct InputImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public let pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// One generated picture: 8-bit RGB, rows top-down, and the seed its noise came from.
public struct GeneratedImage: Sendable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]
    public let seed: UInt64

    public init(width: Int, height: Int, rgb: [UInt8], seed: UInt64) {
        self.width = width
        self.height = height
        self.rgb = rgb
        self.seed = seed
    }
}

/// A rough picture of where a generation is heading: the model's current estimate of the clean
/// latents, projected to RGB and scaled to the output size (cheap, low detail).
public struct PreviewImage: Sendable {
    /// 0-based: which image of the request, and which of its previews.
    public let image: Int
    public let index: Int
    /// Denoising steps done when it was taken.
    public let step: Int
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]

    public init(image: Int, index: Int, step: Int, width: Int, height: Int, rgb: [UInt8]) {
        self.image = image
        self.index = index
        self.step = step
        self.width = width
        self.height = height
        self.rgb = rgb
    }
}

/// Tokens the text encoders read for a prompt: CLIP's and T5's, each counting the special tokens
/// and no padding, as their tokenizers cut them.
public struct TextTokenCounts: Sendable, Equatable {
    public var clip: Int
    public var t5: Int

    public init(clip: Int, t5: Int) {
        self.clip = clip
        self.t5 = t5
    }

    public var total: Int { clip + t5 }
}

/// The pictures of one request with the settings actually used and per-stage seconds.
public struct GenerationResult: Sendable {
    public let images: [GeneratedImage]
    public let steps: Int
    public let guidance: Float?
    /// (stage, seconds) in the order the stages ran: "text encoders", "step 1", ..., "vae decode";
    /// with previews also "preview 1", ... after their steps, and "preview map fit" the first time.
    public let timings: [(stage: String, seconds: Double)]
    public let textTokens: TextTokenCounts

    public init(images: [GeneratedImage], steps: Int, guidance: Float?, timings: [(stage: String, seconds: Double)],
                textTokens: TextTokenCounts = TextTokenCounts(clip: 0, t5: 0)) {
        self.images = images
        self.steps = steps
        self.guidance = guidance
        self.timings = timings
        self.textTokens = textTokens
    }
}

/// Where a generation is, for progress bars, HTTP progress and cancellation.
public struct GenerationProgress: Sendable {
    public enum Stage: String, Sendable { case textEncoding = "text encoders", denoising, decoding }
    public let stage: Stage
    /// 0-based: image `image` of `imageCount` is at step `step` of `stepCount` (denoising: about to
    /// run it; decoding: `step == stepCount`).
    public let image: Int
    public let imageCount: Int
    public let step: Int
    public let stepCount: Int

    public init(stage: Stage, image: Int, imageCount: Int, step: Int, stepCount: Int) {
        self.stage = stage
        self.image = image
        self.imageCount = imageCount
        self.step = step
        self.stepCount = stepCount
    }

    /// Denoising steps finished over all images of the request, out of `totalSteps`.
    public var stepsDone: Int { image * stepCount + step }
    public var totalSteps: Int { imageCount * stepCount }
}

public enum PipelineError: Error, CustomStringConvertible, Equatable {
    case invalidRequest(parameter: String, reason: String)
    case incompatibleComponents(String)
    case missingComponent(String)
    case cancelled

    public var description: String {
        switch self {
        case let .invalidRequest(parameter, reason): return "\(parameter): \(reason)"
        case let .incompatibleComponents(reason): return "the model's parts do not fit together: \(reason)"
        case let .missingComponent(what): return "missing model part: \(what)"
        case .cancelled: return "cancelled"
        }
    }
}
