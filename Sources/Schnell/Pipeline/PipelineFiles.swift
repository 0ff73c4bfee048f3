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

    /// Checks, reading no weights, that every part `FluxPipeline.load` would open is there and
    /// readable: each component's file, or its folder and the files in it, and the tokenizer
    /// folders. A front end calls it before it announces anything; the error names the path.
    public func checkReadable() throws {
        if let model {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: model, isDirectory: &isFolder) else {
                throw PipelineError.missingComponent("\(model) (--model) does not exist")
            }
            guard isFolder.boolValue else {
                throw PipelineError.missingComponent("\(model) (--model) is a file, not a diffusers pipeline folder")
            }
        }
        let components = [(transformer, "transformer", "--transformer"), (vae, "vae", "--vae"),
                          (clip, "text_encoder", "--clip"), (t5, "text_encoder_2", "--t5")]
        for (explicit, subfolder, flag) in components {
            let component = try path(explicit, subfolder: subfolder, flag: flag)
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: component, isDirectory: &isFolder) else {
                throw PipelineError.missingComponent("\(component) (\(flag)) does not exist")
            }
            let files = try isFolder.boolValue
                ? Self.folderEntries(component).map { (component as NSString).appendingPathComponent($0) }
                : [component]
            for file in files { try Self.checkOpens(file) }
        }
        for folder in ["tokenizer", "tokenizer_2"] {
            guard let found = configFile(folder) else {
                throw PipelineError.missingComponent("tokenizer/ and tokenizer_2/ folders (pass --tokenizers DIR with single files)")
            }
            for entry in try Self.folderEntries(found) { try Self.checkOpens((found as NSString).appendingPathComponent(entry)) }
        }
    }

    private static func folderEntries(_ folder: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        } catch {
            throw WeightsError.cannotOpen(file: folder, reason: "the folder cannot be listed")
        }
    }

    /// Opens and closes `path` for reading (a dangling link fails; folders inside a component
    /// folder are left alone).
    private static func checkOpens(_ path: String) throws {
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { return }
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw WeightsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        close(descriptor)
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
