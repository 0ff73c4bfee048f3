import Foundation

/// Text to image with FLUX, as diffusers' `FluxPipeline`:
///   prompt -> CLIP pooled [768] + T5 states [seq, 4096]
///   seed -> noise [16, H/8, W/8] (torch's CPU generator) -> packed 2x2 -> [HW/256, 64]
///   steps x (transformer velocity; Euler step on the flow-matching sigmas)
///   unpack -> latents / scaling + shift -> VAE decode -> (x / 2 + 0.5) clamped -> 8-bit RGB
public final class FluxPipeline: Sendable {
    public let modelID: String
    public let transformer: FluxTransformer
    public let vae: AutoencoderKL
    public let clip: CLIPTextModel
    public let t5: T5Encoder
    public let clipTokenizer: CLIPTokenizer
    public let t5Tokenizer: T5Tokenizer
    public let scheduler: FlowMatchScheduler
    let ops: any Backend
    private let previewMapCache = PreviewMapCache()
    private let adaptedModels = AdaptedModelCache()

    /// Side of a packed latent cell in pixels: VAE downsampling (8 for FLUX) times the 2x2 packing.
    public var sizeMultiple: Int { vae.config.downsamplingFactor * 2 }
    public var hasGuidance: Bool { transformer.config.guidanceEmbeds }
    /// diffusers' defaults: schnell 4 steps, dev 28 steps with guidance 3.5.
    public var defaultSteps: Int { hasGuidance ? 28 : 4 }
    public var defaultGuidance: Float? { hasGuidance ? 3.5 : nil }
    public var defaultMaxSequenceLength: Int { hasGuidance ? 512 : 256 }

    /// `quantization` (`--weights TYPE`) stores the transformer's and T5's linear layers in a GGUF
    /// block type as they load; CLIP and the VAE stay as stored.
    public static func load(_ files: PipelineFiles, backend: any Backend,
                            quantization: WeightQuantization? = nil) throws -> FluxPipeline {
        let transformerPath = try files.path(files.transformer, subfolder: "transformer", flag: "--transformer")
        let axes = try files.configFile("transformer/config.json").flatMap { try TransformerConfig(contentsOf: $0).axesDimsRope }
        let transformer = try FluxTransformer.load(path: transformerPath, backend: backend,
                                                   axesDimsRope: files.transformer == nil ? nil : axes,
                                                   quantization: quantization)
        let vaePath = try files.path(files.vae, subfolder: "vae", flag: "--vae")
        let vaeConfig = try files.vae == nil ? nil : files.configFile("vae/config.json").map { try AutoencoderConfig(contentsOf: $0) }
        let vae = try AutoencoderKL.load(from: vaePath, config: vaeConfig, backend: backend)
        let clipPath = try files.path(files.clip, subfolder: "text_encoder", flag: "--clip")
        let clipConfig = try files.clip == nil ? nil : files.configFile("text_encoder/config.json").map { try CLIPTextConfig.read(path: $0) }
        let clip = try CLIPTextModel.load(path: clipPath, config: clipConfig, backend: backend)
        let t5Path = try files.path(files.t5, subfolder: "text_encoder_2", flag: "--t5")
        let t5Config = try files.t5 == nil ? nil : files.configFile("text_encoder_2/config.json").map { try T5Config.read(path: $0) }
        let t5 = try T5Encoder.load(path: t5Path, config: t5Config, backend: backend, quantization: quantization)
        guard let clipTokenizerFolder = files.configFile("tokenizer"), let t5TokenizerFolder = files.configFile("tokenizer_2") else {
            throw PipelineError.missingComponent("tokenizer/ and tokenizer_2/ folders (pass --tokenizers DIR with single files)")
        }
        let scheduler: FlowMatchScheduler
        if let path = files.configFile("scheduler/scheduler_config.json") {
            scheduler = try FlowMatchScheduler(contentsOf: path)
        } else {
            scheduler = transformer.config.guidanceEmbeds ? .devDefaults : .schnellDefaults
        }
        return try FluxPipeline(modelID: files.modelID, transformer: transformer, vae: vae, clip: clip, t5: t5,
                                clipTokenizer: CLIPTokenizer(folder: URL(fileURLWithPath: clipTokenizerFolder)),
                                t5Tokenizer: T5Tokenizer(folder: URL(fileURLWithPath: t5TokenizerFolder)),
                                scheduler: scheduler, backend: backend)
    }

    public init(modelID: String, transformer: FluxTransformer, vae: AutoencoderKL, clip: CLIPTextModel, t5: T5Encoder,
                clipTokenizer: CLIPTokenizer, t5Tokenizer: T5Tokenizer, scheduler: FlowMatchScheduler,
                backend: any Backend) throws {
        let config = transformer.config
        guard config.inChannels == 4 * vae.config.latentChannels, config.outChannels == config.inChannels else {
            throw PipelineError.incompatibleComponents("the transformer takes \(config.inChannels) channels; the VAE's \(vae.config.latentChannels) latent channels pack to \(4 * vae.config.latentChannels)")
        }
        guard config.pooledProjectionDim == clip.config.hiddenSize else {
            throw PipelineError.incompatibleComponents("the transformer expects a \(config.pooledProjectionDim)-wide CLIP pooled output; CLIP gives \(clip.config.hiddenSize)")
        }
        guard config.jointAttentionDim == t5.config.modelSize else {
            throw PipelineError.incompatibleComponents("the transformer expects \(config.jointAttentionDim)-wide T5 states; T5 gives \(t5.config.modelSize)")
        }
        // A tokenizer id past the encoder's table would fail every prompt that uses it; refused at load.
        let idRanges = [("CLIP", clipTokenizer.vocabularyFile, clipTokenizer.largestID, clip.config.vocabularySize),
                        ("T5", t5Tokenizer.vocabularyFile, t5Tokenizer.largestID, t5.config.vocabularySize)]
        for (name, file, largest, vocabulary) in idRanges where Int(largest) >= vocabulary {
            throw PipelineError.incompatibleComponents("the \(name) tokenizer's \(file.path) gives token ids up to \(largest), past the \(name) text encoder's \(vocabulary) embeddings")
        }
        self.modelID = modelID
        self.transformer = transformer
        self.vae = vae
        self.clip = clip
        self.t5 = t5
        self.clipTokenizer = clipTokenizer
        self.t5Tokenizer = t5Tokenizer
        self.scheduler = scheduler
        ops = backend
    }

    /// Checks a request against `GenerationLimits.pipeline` and this model; the messages name the parameter.
    public func validate(_ request: GenerationRequest) throws {
        try GenerationLimits.pipeline.check(request, sizeMultiple: sizeMultiple)
        if request.guidance != nil, !hasGuidance {
            throw PipelineError.invalidRequest(parameter: "guidance", reason: "\(modelID) has no guidance embedding (schnell-like); leave it out")
        }
        try ImageToImage.validate(request, steps: request.steps ?? defaultSteps)
    }

    /// The latent-to-RGB map of this model's previews, fitted to its VAE on first use (a VAE decode
    /// of a 256x256 picture) and kept; `fitted` says whether this call fitted it.
    public func previewMap() throws -> (map: LatentPreviewMap, fitted: Bool) {
        try previewMapCache.get { try LatentPreviewMap.fit(vae: vae, backend: ops) }
    }

    /// After which of `steps` denoising steps (1-based counts of steps done) `previews` previews
    /// are taken: round((i + 1) steps / (previews + 1)) for i in 0..<previews, each once, only
    /// 1...steps - 1 (after the last step the image itself follows).
    public static func previewSteps(previews: Int, steps: Int) -> [Int] {
        let counts = (0..<max(0, previews)).map { (2 * ($0 + 1) * steps + previews + 1) / (2 * (previews + 1)) }
        return Array(Set(counts.filter { $0 >= 1 && $0 < steps })).sorted()
    }

    /// Generates `request.count` images; `progress` returning false cancels (throws `.cancelled`).
    /// With an init image (and mask) it edits as diffusers' img2img (inpaint) pipeline: see `ImageToImage`.
    /// With `request.previews` > 0, `preview` gets each image's previews after the steps
    /// `previewSteps` names (counted over the steps that run): the clean latents the model predicts
    /// there (`FlowMatchSchedule.cleanEstimate`, before an inpainting blend) through `previewMap`.
    /// `observe` sees each image's packed latents [tokens, 4C] after the last step, as "latents".
    public func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool = { _ in true },
                         preview: (PreviewImage) -> Void = { _ in }, observe: IntermediateObserver? = nil) throws -> GenerationResult {
        try validate(request)
        let steps = request.steps ?? defaultSteps
        let guidance = request.guidance ?? defaultGuidance
        let firstSeed = request.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let edit = request.initImage.map {
            ImageToImage(request: request, initImage: $0, steps: steps, latentChannels: vae.config.latentChannels,
                         downsampling: vae.config.downsamplingFactor, backend: ops)
        }
        let firstStep = edit?.firstStep ?? 0
        var timings: [(stage: String, seconds: Double)] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { timings.append((stage, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            return try body()
        }
        func report(_ stage: GenerationProgress.Stage, image: Int, step: Int) throws {
            let update = GenerationProgress(stage: stage, image: image, imageCount: request.count, step: step,
                                            stepCount: steps - firstStep)
            guard progress(update) else { throw PipelineError.cancelled }
        }

        try report(.textEncoding, image: 0, step: 0)
        var transformer = self.transformer, clip = self.clip
        if !request.loras.isEmpty {
            let start = DispatchTime.now().uptimeNanoseconds
            let adapted = try adaptedModels.get(AdaptedModelCache.Key(loras: request.loras, mode: request.loraMode)) {
                (try self.transformer.adapted(request.loras.deltas(\.transformerDeltas), mode: request.loraMode),
                 try self.clip.adapted(request.loras.deltas(\.clipDeltas), mode: request.loraMode))
            }
            if adapted.built { timings.append(("lora", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            (transformer, clip) = (adapted.transformer, adapted.clip)
        }
        let clipTokens = clipTokenizer.encodeCounting(request.prompt)
        let t5Tokens = t5Tokenizer.encodeCounting(request.prompt, maxLength: request.maxSequenceLength ?? defaultMaxSequenceLength)
        let (text, pooled) = try timed("text encoders") {
            let pooled = try clip.encode(ids: clipTokens.ids).pooled
            let text = try t5.encode(ids: t5Tokens.ids)
            // T5 and the transformer need not be resident together (with Q8_0 files: 5.1 + 12.7 GB).
            t5.releaseResidentWeights()
            return (text, pooled)
        }
        let latentHeight = request.height / vae.config.downsamplingFactor, latentWidth = request.width / vae.config.downsamplingFactor
        let gridHeight = latentHeight / 2, gridWidth = latentWidth / 2
        let rotary = transformer.rotaryTable(textTokens: text.rows, gridHeight: gridHeight, gridWidth: gridWidth)
        let schedule = try scheduler.schedule(steps: steps, imageSequenceLength: gridHeight * gridWidth)
        let channels = vae.config.latentChannels
        let encoded = try edit.map { edit in try timed("vae encode") { try edit.encode(vae: vae) } }
        let previewAfter = Self.previewSteps(previews: request.previews, steps: steps - firstStep)
        var previewMap: LatentPreviewMap?
        if !previewAfter.isEmpty {
            let start = DispatchTime.now().uptimeNanoseconds
            let (map, fitted) = try self.previewMap()
            if fitted { timings.append(("preview map fit", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            previewMap = map
        }

        var images: [GeneratedImage] = []
        for index in 0..<request.count {
            let seed = firstSeed &+ UInt64(index)
            var generator = TorchGenerator(seed: seed)
            let start = edit.flatMap { edit in
                encoded.map { edit.start($0, generator: &generator, schedule: schedule, vae: vae, backend: ops) }
            }
            let latents = start?.latents ?? ops.packLatents(ops.upload(generator.randn(count: channels * latentHeight * latentWidth),
                                                                       shape: [channels, latentHeight, latentWidth]))
            let imageLabel = request.count > 1 ? "image \(index + 1) " : ""
            for step in firstStep..<steps {
                let run = step - firstStep
                try report(.denoising, image: index, step: run)
                let previewIndex = previewAfter.firstIndex(of: run + 1)
                let estimate = try timed("\(imageLabel)step \(run + 1)") {
                    let velocity = transformer(latents: latents, text: text, pooled: pooled,
                                               timestep: schedule.transformerTimestep(at: step),
                                               guidance: guidance, rotary: rotary)
                    try schedule.eulerStep(step, sample: latents, velocity: velocity, backend: ops)
                    let estimate = try previewIndex.map { _ in
                        try schedule.cleanEstimate(afterStep: step, sample: latents, velocity: velocity, backend: ops)
                    }
                    if let edit, let start { edit.blend(latents, after: step, schedule: schedule, start: start, backend: ops) }
                    return estimate
                }
                if let previewIndex, let estimate, let previewMap {
                    let rgb = try timed("\(imageLabel)preview \(previewIndex + 1)") {
                        try previewMap.rgb8(packed: ops.download(estimate), latentHeight: latentHeight, latentWidth: latentWidth,
                                            width: request.width, height: request.height)
                    }
                    preview(PreviewImage(image: index, index: previewIndex, step: run + 1, width: request.width,
                                         height: request.height, rgb: rgb))
                }
            }
            observe?("latents", latents)
            try report(.decoding, image: index, step: steps - firstStep)
            let rgb = try timed("\(imageLabel)vae decode") {
                let unpacked = ops.unpackLatents(latents, height: latentHeight, width: latentWidth)
                return ops.downloadRGB8(try vae.decode(vae.unscaledLatents(unpacked)))
            }
            images.append(GeneratedImage(width: request.width, height: request.height, rgb: rgb, seed: seed))
        }
        return GenerationResult(images: images, steps: steps, guidance: guidance, timings: timings,
                                textTokens: TextTokenCounts(clip: clipTokens.count, t5: t5Tokens.count))
    }
}
