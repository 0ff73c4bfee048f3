import Schnell

/// The server's model interface over a loaded FLUX pipeline: the description the server lists and
/// validates against, and requests passed to the pipeline as they are.
public struct PipelineGenerator: ImageGenerating {
    public let pipeline: FluxPipeline

    public init(pipeline: FluxPipeline) {
        self.pipeline = pipeline
    }

    public var model: ModelDescription {
        let dev = pipeline.hasGuidance
        return ModelDescription(
            id: pipeline.modelID,
            aliases: dev ? ["flux-1-dev", "flux.1-dev", "black-forest-labs/FLUX.1-dev"]
                         : ["flux-1-schnell", "flux.1-schnell", "black-forest-labs/FLUX.1-schnell"],
            defaultSteps: pipeline.defaultSteps, supportsGuidance: dev, defaultGuidance: pipeline.defaultGuidance,
            sizeMultiple: pipeline.sizeMultiple, limits: .pipeline, supportsEdits: true)
    }

    public func validate(_ request: GenerationRequest) throws {
        try pipeline.validate(request)
    }

    public func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                         preview: (PreviewImage) -> Void) throws -> GenerationResult {
        try pipeline.generate(request, progress: progress, preview: preview)
    }
}
