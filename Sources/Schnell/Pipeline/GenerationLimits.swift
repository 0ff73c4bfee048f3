/// The bounds a `GenerationRequest` must keep, checked in one place (`check`): the pipeline holds
/// every request to `GenerationLimits.pipeline`, and a front end may hold its own requests to
/// narrower ones (`narrowed(to:)`), never wider.
public struct GenerationLimits: Sendable, Equatable {
    /// Each side in pixels; a side must also be a multiple of the model's size multiple.
    public var minSide: Int
    public var maxSide: Int
    /// Denoising steps run from 1 to this.
    public var maxSteps: Int
    /// Images per request (`count`, the API's `n`).
    public var maxImages: Int
    /// T5 tokens, from 1.
    public var maxSequenceLength: Int
    /// Guidance scale, from 0.
    public var maxGuidance: Float

    public init(minSide: Int, maxSide: Int, maxSteps: Int, maxImages: Int, maxSequenceLength: Int, maxGuidance: Float) {
        self.minSide = minSide
        self.maxSide = maxSide
        self.maxSteps = maxSteps
        self.maxImages = maxImages
        self.maxSequenceLength = maxSequenceLength
        self.maxGuidance = maxGuidance
    }

    /// Previews per image (`GenerationRequest.previews`), from 0; the same for every front end.
    public static let maxPreviews = 3

    /// What `FluxPipeline` accepts. 512 T5 tokens is what FLUX.1 was trained with; the rest bound
    /// memory and time (a 4096x4096 image is 65,536 image tokens).
    public static let pipeline = GenerationLimits(minSide: 16, maxSide: 4096, maxSteps: 1000, maxImages: 64,
                                                  maxSequenceLength: 512, maxGuidance: 100)

    /// The tighter of each bound here and in `other`.
    public func narrowed(to other: GenerationLimits) -> GenerationLimits {
        GenerationLimits(minSide: max(minSide, other.minSide), maxSide: min(maxSide, other.maxSide),
                         maxSteps: min(maxSteps, other.maxSteps), maxImages: min(maxImages, other.maxImages),
                         maxSequenceLength: min(maxSequenceLength, other.maxSequenceLength),
                         maxGuidance: min(maxGuidance, other.maxGuidance))
    }

    /// Checks the request's sizes, steps, guidance, count, sequence length and previews against these limits;
    /// the error names the parameter (`width`, `height`, `steps`, `guidance`, `n`, `max_sequence_length`,
    /// `previews`).
    public func check(_ request: GenerationRequest, sizeMultiple: Int) throws {
        for (name, side) in [("width", request.width), ("height", request.height)] {
            guard side >= minSide, side <= maxSide else {
                throw PipelineError.invalidRequest(parameter: name, reason: "\(side) is outside \(minSide)...\(maxSide)")
            }
            guard side % sizeMultiple == 0 else {
                throw PipelineError.invalidRequest(parameter: name, reason: "\(side) is not a multiple of \(sizeMultiple)")
            }
        }
        if let steps = request.steps, steps < 1 || steps > maxSteps {
            throw PipelineError.invalidRequest(parameter: "steps", reason: "\(steps) is outside 1...\(maxSteps)")
        }
        if let guidance = request.guidance, !guidance.isFinite || guidance < 0 || guidance > maxGuidance {
            throw PipelineError.invalidRequest(parameter: "guidance", reason: "\(guidance) is outside 0...\(maxGuidance)")
        }
        guard request.count >= 1, request.count <= maxImages else {
            throw PipelineError.invalidRequest(parameter: "n", reason: "\(request.count) is outside 1...\(maxImages)")
        }
        if let length = request.maxSequenceLength, length < 1 || length > maxSequenceLength {
            throw PipelineError.invalidRequest(parameter: "max_sequence_length", reason: "\(length) is outside 1...\(maxSequenceLength)")
        }
        guard (0...Self.maxPreviews).contains(request.previews) else {
            throw PipelineError.invalidRequest(parameter: "previews", reason: "\(request.previews) is outside 0...\(Self.maxPreviews)")
        }
    }
}
