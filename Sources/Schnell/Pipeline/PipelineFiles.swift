import Foundation

/// Where a pipeline's parts are: a diffusers pipeline folder (`--model`), single files
/// (`--transformer`, `--vae`, `--clip`, `--t5`), or a folder with single-file overrides. Single
/// files carry no tokenizers or configs: `configFolder` (`--tokenizers`) is a pipeline-shaped
/// folder whose `tokenizer/` and `tokenizer_2/` are used, and whose component configs
/// (`vae/config.json`, `scheduler/scheduler_config.json`, ...) are used where it has them.
public struct PipelineFiles: Sendable {
    public var model: String?
    public var transformer: String?
    public var vae: String?
    public var clip: String?
    public var t5: String?
    public var configFolder: String?

    public init(model: String? = nil, transformer: String? = nil, vae: String? = nil, clip: String? = nil,
                t5: String? = nil, configFolder: String? = nil) {
        self.model = model
        self.transformer = transformer
        self.vae = vae
        self.clip = clip
        self.t5 = t5
        self.configFolder = configFolder
    }

    /// The path of a component: its own flag, else the model folder's subfolder.
    func path(_ explicit: String?, subfolder: String, flag: String) throws -> String {
        if let explicit { return explicit }
        guard let model else {
            throw PipelineError.missingComponent("\(flag) (or --model with a \(subfolder)/ folder)")
        }
        let folder = (model as NSString).appendingPathComponent(subfolder)
        guard FileManager.default.fileExists(atPath: folder) else {
            throw PipelineError.missingComponent("\(folder) (or \(flag))")
        }
        return folder
    }

    /// A file inside the config folder (else the model folder), if it exists.
    func configFile(_ relative: String) -> String? {
        for base in [configFolder, model].compactMap({ $0 }) {
            let path = (base as NSString).appendingPathComponent(relative)
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return nil
    }

    /// A name for the model: the folder's or the transformer file's.
    public var modelID: String {
        let source = model ?? transformer ?? "flux"
        var name = ((source as NSString).standardizingPath as NSString).lastPathComponent
        if name.hasSuffix(".safetensors") { name = String(name.dropLast(".safetensors".count)) }
        return name
    }
}
