import Foundation
import Schnell

/// The server's model interface over a loaded FLUX pipeline: the description the server lists and
/// validates against, the LoRA adapters read for it, and requests passed to the pipeline as they are.
public struct PipelineGenerator: ImageGenerating {
    public let pipeline: FluxPipeline
    /// Unix time the model is listed with (`serve` passes the transformer file's modification time).
    public let created: Int
    /// `--lora-dir`'s adapters by name (`LoRACatalog.load`), each read with `pipeline.loadLoRA`.
    public let loras: [String: LoRAAdapter]
    /// How requests' LoRAs reach the layers (`--lora-mode`).
    public let loraMode: LoRAMode

    public init(pipeline: FluxPipeline, created: Int = 0, loras: [String: LoRAAdapter] = [:], loraMode: LoRAMode = .auto) {
        self.pipeline = pipeline
        self.created = created
        self.loras = loras
        self.loraMode = loraMode
    }

    /// The modification time (Unix seconds) of the transformer's weights: `--transformer`'s file,
    /// or the newest `.safetensors` file in the model folder's `transformer/`; 0 when unreadable.
    public static func created(from files: PipelineFiles) -> Int {
        guard let path = files.transformer ?? files.model.map({ ($0 as NSString).appendingPathComponent("transformer") }) else { return 0 }
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isFolder) else { return 0 }
        let weights = isFolder.boolValue
            ? ((try? manager.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".safetensors") }
                .map { (path as NSString).appendingPathComponent($0) }
            : [path]
        let times = weights.compactMap { try? manager.attributesOfItem(atPath: $0)[.modificationDate] as? Date }
        return times.max().map { Int($0.timeIntervalSince1970) } ?? 0
    }

    /// The names users type for the two FLUX.1 variants, besides the model's own id.
    public static func aliases(dev: Bool) -> [String] {
        let variant = dev ? "dev" : "schnell"
        return ["flux-1-\(variant)", "flux-\(variant)", "flux.1-\(variant)", "black-forest-labs/FLUX.1-\(variant)"]
    }

    public var model: ModelDescription {
        let dev = pipeline.hasGuidance
        return ModelDescription(
            id: pipeline.modelID,
            aliases: PipelineGenerator.aliases(dev: dev).filter { $0.lowercased() != pipeline.modelID.lowercased() },
            defaultSteps: pipeline.defaultSteps, supportsGuidance: dev, defaultGuidance: pipeline.defaultGuidance,
            sizeMultiple: pipeline.sizeMultiple, limits: .pipeline, supportsEdits: true, created: created)
    }

    public func validate(_ request: GenerationRequest) throws {
        try pipeline.validate(request)
    }

    public func generate(_ request: GenerationRequest, progress: (GenerationProgress) -> Bool,
                         preview: (PreviewImage) -> Void) throws -> GenerationResult {
        var request = request
        request.loraMode = loraMode
        return try pipeline.generate(request, progress: progress, preview: preview)
    }
}
