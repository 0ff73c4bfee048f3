import Foundation

/// The kinds of checkpoint a FLUX pipeline is made of.
public enum ModelFamily: CaseIterable, Sendable {
    case transformer, vae, clip, t5

    public var name: String {
        switch self {
        case .transformer: return "FLUX transformer"
        case .vae: return "VAE (AutoencoderKL)"
        case .clip: return "CLIP text encoder"
        case .t5: return "T5 encoder"
        }
    }

    /// The component's folder in a diffusers pipeline folder.
    public var component: String {
        switch self {
        case .transformer: return "transformer"
        case .vae: return "vae"
        case .clip: return "text_encoder"
        case .t5: return "text_encoder_2"
        }
    }

    /// Prefixes a checkpoint may nest the family's names under.
    var prefixes: [String] {
        switch self {
        case .transformer: return FluxWeightNames.prefixes
        case .vae: return [""]
        case .clip: return CLIPWeightNames.prefixes
        case .t5: return T5WeightNames.prefixes
        }
    }

    /// The table of the family's reference configuration: for looking names up before a
    /// checkpoint's own configuration is known.
    var referenceNames: WeightTable {
        switch self {
        case .transformer: return FluxWeightNames.table(.flux1(guidance: true))
        case .vae: return VAEWeightNames.table(.flux1)
        case .clip: return CLIPWeightNames.table(.clipL)
        case .t5: return T5WeightNames.table(.t5XXL)
        }
    }

    /// An engine tensor whose checkpoint name tells the family and the layout apart.
    var marker: String {
        switch self {
        case .transformer: return "img_in.weight"
        case .vae: return "decoder.mid.first.conv1.weight"
        case .clip, .t5: return "token_embedding"
        }
    }

    /// The layout and prefix of `store`'s names; nil when it holds no tensors of this family.
    public func layout(of store: WeightStore) -> (layout: CheckpointLayout, prefix: String)? {
        let names = referenceNames
        for prefix in prefixes {
            for layout in CheckpointLayout.allCases where names.isStored(marker, in: store, layout: layout, prefix: prefix) {
                return (layout, prefix)
            }
        }
        return nil
    }

    /// `layout(of:)`, refusing a store of another family.
    func requireLayout(of store: WeightStore) throws -> (layout: CheckpointLayout, prefix: String) {
        if let found = layout(of: store) { return found }
        let names = referenceNames
        let markers = Set(CheckpointLayout.allCases.compactMap { names.checkpointName(of: marker, layout: $0) }).sorted()
        throw WeightsError.unrecognisedModel(
            path: store.path, reason: "no \(name) tensors ('\(markers.joined(separator: "' or '"))')")
    }
}

/// Where a model's files are: a single safetensors file, a component folder (config.json and
/// one or more safetensors shards), or a pipeline folder holding that component.
public struct ModelFolder: Equatable, Sendable {
    /// A file or folder for `WeightStore`.
    public let weightsPath: String
    /// The component's config.json, when it has one.
    public let configPath: String?

    public static func locate(path: String, component: String) throws -> ModelFolder {
        let files = FileManager.default
        var isFolder: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw WeightsError.cannotOpen(file: path, reason: "no such file or folder")
        }
        guard isFolder.boolValue else { return ModelFolder(weightsPath: path, configPath: nil) }
        let folder = componentFolder(in: path, component: component) ?? path
        let config = (folder as NSString).appendingPathComponent("config.json")
        return ModelFolder(weightsPath: folder, configPath: files.fileExists(atPath: config) ? config : nil)
    }

    /// `path/component` when that is a folder.
    static func componentFolder(in path: String, component: String) -> String? {
        let nested = (path as NSString).appendingPathComponent(component)
        var isFolder: ObjCBool = false
        return FileManager.default.fileExists(atPath: nested, isDirectory: &isFolder) && isFolder.boolValue ? nested : nil
    }
}

/// A checkpoint of one family found on disk: its files, its tensors, and the layout and prefix
/// their names use. Every loader and `schnell inspect` open checkpoints through here.
public struct Checkpoint: Sendable {
    public let family: ModelFamily
    public let folder: ModelFolder
    public let store: WeightStore
    public let layout: CheckpointLayout
    /// What the names are nested under (`model.diffusion_model.`, `text_model.`), else "".
    public let prefix: String

    public init(path: String, family: ModelFamily) throws {
        let folder = try ModelFolder.locate(path: path, component: family.component)
        let store = try WeightStore(path: folder.weightsPath)
        (layout, prefix) = try family.requireLayout(of: store)
        self.family = family
        self.folder = folder
        self.store = store
    }

    private init(family: ModelFamily, folder: ModelFolder, store: WeightStore, layout: CheckpointLayout, prefix: String) {
        self.family = family
        self.folder = folder
        self.store = store
        self.layout = layout
        self.prefix = prefix
    }

    /// Refuses a configuration file whose count of numbered blocks (`<blocks>.N.…`) is not the
    /// count the weights hold, before a name table is sized from it.
    func requireBlocks(_ count: Int, key: String, blocks: String, configFile: String) throws {
        let present = store.blockCount(prefix: prefix + blocks + ".")
        guard count == present else {
            throw WeightsError.invalidConfig(
                file: configFile, reason: "'\(key)' is \(count) but \(store.path) holds \(present) blocks named \(prefix)\(blocks).N")
        }
    }

    /// Opens `path` as whichever family it holds: the first whose component folder it contains,
    /// else the first whose tensors its weights have.
    public static func recognise(path: String) throws -> Checkpoint {
        for family in ModelFamily.allCases where ModelFolder.componentFolder(in: path, component: family.component) != nil {
            return try Checkpoint(path: path, family: family)
        }
        let store = try WeightStore(path: path)
        for family in ModelFamily.allCases {
            if let (layout, prefix) = family.layout(of: store) {
                return Checkpoint(family: family, folder: try ModelFolder.locate(path: path, component: family.component),
                                  store: store, layout: layout, prefix: prefix)
            }
        }
        throw WeightsError.unrecognisedModel(path: path, reason: "no FLUX transformer, VAE, CLIP or T5 tensors found")
    }
}
