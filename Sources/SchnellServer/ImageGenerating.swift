import SchnellImageIO

/// What the server needs to know about the loaded model to validate requests and list it.
///
/// Sizes: width and height must be multiples of `sizeMultiple` (16: the VAE halves three times
/// and the transformer packs 2x2 patches), each side within `minSide...maxSide`, and
/// `width * height <= maxPixels`.
public struct ModelDescription: Sendable, Equatable {
    public var id: String
    /// Other names a request may use for this model (e.g. `flux-1-schnell`).
    public var aliases: [String]
    public var defaultSteps: Int
    public var stepsRange: ClosedRange<Int>
    public var supportsGuidance: Bool
    public var defaultGuidance: Float?
    public var defaultWidth: Int
    public var defaultHeight: Int
    public var minSide: Int
    public var maxSide: Int
    public var maxPixels: Int
    public var sizeMultiple: Int
    public var supportsEdits: Bool
    /// Unix time reported as `created` in the models list.
    public var created: Int

    public init(id: String, aliases: [String] = [], defaultSteps: Int = 4, stepsRange: ClosedRange<Int> = 1...50,
                supportsGuidance: Bool = false, defaultGuidance: Float? = nil,
                defaultWidth: Int = 1024, defaultHeight: Int = 1024, minSide: Int = 64, maxSide: Int = 2048,
                maxPixels: Int = 2048 * 2048, sizeMultiple: Int = 16, supportsEdits: Bool = false, created: Int = 0) {
        self.id = id
        self.aliases = aliases
        self.defaultSteps = defaultSteps
        self.stepsRange = stepsRange
        self.supportsGuidance = supportsGuidance
        self.defaultGuidance = defaultGuidance
        self.defaultWidth = defaultWidth
        self.defaultHeight = defaultHeight
        self.minSide = minSide
        self.maxSide = maxSide
        self.maxPixels = maxPixels
        self.sizeMultiple = sizeMultiple
        self.supportsEdits = supportsEdits
        self.created = created
    }

    public func answers(to name: String) -> Bool {
        name == id || aliases.contains(name)
    }
}

/// One call into the model: `count` images of `width` x `height` from seeds `seed`, `seed + 1`, ...
/// For edits, `initImage` is the upload as decoded (any size: the generator resizes it to
/// `width` x `height`), `mask` has an alpha channel whose transparent pixels mark what to
/// regenerate, and `strength` in (0, 1] is how far the init image is noised (nil: model default).
public struct GenerationJob: Sendable {
    public var prompt: String
    public var width: Int
    public var height: Int
    public var steps: Int
    public var guidance: Float?
    public var seed: UInt64
    public var count: Int
    public var initImage: Image8?
    public var mask: Image8?
    public var strength: Float?

    public init(prompt: String, width: Int, height: Int, steps: Int, guidance: Float? = nil, seed: UInt64,
                count: Int = 1, initImage: Image8? = nil, mask: Image8? = nil, strength: Float? = nil) {
        self.prompt = prompt
        self.width = width
        self.height = height
        self.steps = steps
        self.guidance = guidance
        self.seed = seed
        self.count = count
        self.initImage = initImage
        self.mask = mask
        self.strength = strength
    }
}

public struct GeneratedImage: Sendable {
    public var image: Image8
    /// The seed this image was drawn from, reported back to the client.
    public var seed: UInt64

    public init(image: Image8, seed: UInt64) {
        self.image = image
        self.seed = seed
    }
}

/// Thrown by a generator when `progress` returned false.
/// Thrown by a generator that finds a request it cannot serve as asked (a value only the model
/// can judge); the client gets a 400 `invalid_request` naming `param`.
public struct GenerationRejected: Error, Sendable {
    public let message: String
    public let param: String?

    public init(message: String, param: String?) {
        self.message = message
        self.param = param
    }
}

public struct GenerationCancelled: Error {
    public init() {}
}

/// The model side the server drives. The server never calls `generate` twice at once.
/// `progress(step, total)` is called after each denoising step; returning false asks the
/// generator to stop and throw `GenerationCancelled`. `timings` are per-stage seconds
/// (e.g. `"text_encoders"`, `"denoise"`, `"vae"`), reported to clients as they are.
public protocol ImageGenerating: Sendable {
    var model: ModelDescription { get }
    func generate(_ job: GenerationJob, progress: @Sendable (_ step: Int, _ total: Int) -> Bool) throws
        -> (images: [GeneratedImage], timings: [String: Double])
}
