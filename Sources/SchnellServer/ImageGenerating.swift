import Schnell

/// What the server needs to know about the loaded model to validate requests and list it.
/// The server holds requests to `limits` narrowed by its own (`ServerOptions.limits`); sides must
/// also be multiples of `sizeMultiple` (16: the VAE halves three times and the transformer packs
/// 2x2 patches).
public struct ModelDescription: Sendable, Equatable {
    public var id: String
    /// Other names a request may use for this model (e.g. `flux-schnell`).
    public var aliases: [String]
    public var defaultSteps: Int
    public var supportsGuidance: Bool
    public var defaultGuidance: Float?
    public var defaultWidth: Int
    public var defaultHeight: Int
    public var sizeMultiple: Int
    /// What the model itself accepts.
    public var limits: GenerationLimits
    public var supportsEdits: Bool
    /// Unix time reported as `created` in the models list.
    public var created: Int

    public init(id: String, aliases: [String] = [], defaultSteps: Int = 4, supportsGuidance: Bool = false,
                defaultGuidance: Float? = nil, defaultWidth: Int = 1024, defaultHeight: Int = 1024, sizeMultiple: Int = 16,
                limits: GenerationLimits = .pipeline, supportsEdits: Bool = false, created: Int = 0) {
        self.id = id
        self.aliases = aliases
        self.defaultSteps = defaultSteps
        self.supportsGuidance = supportsGuidance
        self.defaultGuidance = defaultGuidance
        self.defaultWidth = defaultWidth
        self.defaultHeight = defaultHeight
        self.sizeMultiple = sizeMultiple
        self.limits = limits
        self.supportsEdits = supportsEdits
        self.created = created
    }

    /// Whether `name` is the id or an alias, ignoring case (users type `FLUX.1-schnell` and `flux.1-schnell`).
    public func answers(to name: String) -> Bool {
        ([id] + aliases).contains { $0.lowercased() == name.lowercased() }
    }
}

/// The model side the server drives, with the pipeline's own signatures. `validate` runs before a
/// request is queued, so what the model refuses is a 400 naming the parameter
/// (`PipelineError.invalidRequest`) rather than a failed task. The server never calls `generate`
/// twice at once; `progress` returning false asks it to stop and throw `PipelineError.cancelled`;
/// `preview` receives the `request.previews` previews per image as they are made. `loras` are the
/// adapters requests may name (`"loras"`), by name, read for this model (none by default).
public protocol ImageGenerating: Sendable {
    var model: ModelDescription { get }
    var loras: [String: LoRAAdapter] { get }
    func validate(_ request: GenerationRequest) throws
    func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                  preview: (PreviewImage) -> Void) throws -> GenerationResult
}

extension ImageGenerating {
    public var loras: [String: LoRAAdapter] { [:] }
}
