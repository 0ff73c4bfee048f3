/// The two checkpoint layouts of FLUX's VAE.
public enum VAELayout: Sendable {
    /// diffusers' `vae/diffusion_pytorch_model.safetensors`: `decoder.up_blocks.0.resnets.0.conv1.weight`.
    case diffusers
    /// The original single file `ae.safetensors`: `decoder.up.3.block.0.conv1.weight`.
    case original
}

/// The VAE's tensor names. The engine names tensors as diffusers does; the original layout
/// differs by the renames below, by numbering up blocks from the output end (diffusers
/// `up_blocks.i` is original `up.(count - 1 - i)`), and by storing the attention projections
/// as 1x1 convolutions [C, C, 1, 1] instead of linear weights [C, C].
public struct VAEWeightNames: Sendable {
    /// (engine fragment, original fragment), applied in order after the block renumbering;
    /// the mid-block entries come before the generic `.resnets.` one.
    static let originalRenames: [(engine: String, original: String)] = [
        ("mid_block.resnets.0.", "mid.block_1."),
        ("mid_block.resnets.1.", "mid.block_2."),
        ("mid_block.attentions.0.group_norm.", "mid.attn_1.norm."),
        ("mid_block.attentions.0.to_q.", "mid.attn_1.q."),
        ("mid_block.attentions.0.to_k.", "mid.attn_1.k."),
        ("mid_block.attentions.0.to_v.", "mid.attn_1.v."),
        ("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out."),
        (".resnets.", ".block."),
        (".conv_shortcut.", ".nin_shortcut."),
        (".downsamplers.0.", ".downsample."),
        (".upsamplers.0.", ".upsample."),
        (".conv_norm_out.", ".norm_out."),
    ]

    /// A tensor present in one layout and not the other tells them apart.
    static let originalMarker = "decoder.mid.block_1.conv1.weight"
    static let diffusersMarker = "decoder.mid_block.resnets.0.conv1.weight"

    public let layout: VAELayout
    public let upBlockCount: Int

    public init(layout: VAELayout, upBlockCount: Int) {
        self.layout = layout
        self.upBlockCount = upBlockCount
    }

    /// The layout a weight store holds, from its names.
    public static func layout(of store: WeightStore) throws -> VAELayout {
        if store.contains(diffusersMarker) { return .diffusers }
        if store.contains(originalMarker) { return .original }
        throw WeightsError.unrecognisedModel(
            path: store.path, reason: "no '\(diffusersMarker)' or '\(originalMarker)': not a FLUX VAE")
    }

    /// The checkpoint's name for an engine (diffusers) name.
    public func checkpointName(_ name: String) -> String {
        guard layout == .original else { return name }
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 2, parts[1] == "up_blocks", let index = Int(parts[2]) {
            parts[1] = "up"
            parts[2] = String(upBlockCount - 1 - index)
        } else if parts.count > 1, parts[1] == "down_blocks" {
            parts[1] = "down"
        }
        var renamed = parts.joined(separator: ".")
        for (engine, original) in Self.originalRenames {
            renamed = renamed.replacingOccurrences(of: engine, with: original)
        }
        return renamed
    }

    /// Whether the checkpoint stores this engine tensor as a 1x1 convolution of a linear weight.
    public func storesAsConvolution(_ name: String) -> Bool {
        layout == .original && name.contains(".attentions.0.to_") && name.hasSuffix(".weight")
    }
}

/// Reads the VAE's tensors by engine name, checks their shapes, and remembers which it used
/// so that tensors the model does not know are refused rather than ignored.
final class VAEWeightReader {
    let store: WeightStore
    let names: VAEWeightNames
    /// Prepares each layer once, as it is read.
    let backend: any Backend
    private(set) var used: Set<String> = []

    init(store: WeightStore, names: VAEWeightNames, backend: any Backend) {
        self.store = store
        self.names = names
        self.backend = backend
    }

    func tensor(_ name: String, shape: [Int]) throws -> WeightTensor {
        let stored = names.checkpointName(name)
        used.insert(stored)
        guard names.storesAsConvolution(name) else { return try store.tensor(stored, shape: shape) }
        let convolution = try store.tensor(stored, shape: shape + [1, 1])
        return WeightTensor(name: convolution.name, dtype: convolution.dtype, shape: shape,
                            file: convolution.file, mapping: convolution.mapping,
                            byteOffset: convolution.byteOffset)
    }

    /// A float32 tensor of the backend, for norm affines.
    func vector(_ name: String, shape: [Int]) throws -> Tensor {
        backend.upload(try tensor(name, shape: shape))
    }

    func conv(_ prefix: String, in inChannels: Int, out outChannels: Int, kernel: Int, stride: Int = 1,
              padding: Conv2d.Padding) throws -> Conv2d {
        try backend.prepare(Conv2d(weight: tensor(prefix + ".weight", shape: [outChannels, inChannels, kernel, kernel]),
                                   bias: tensor(prefix + ".bias", shape: [outChannels]), stride: stride, padding: padding))
    }

    func linearBlock(_ prefix: String, features: Int) throws -> Linear.Block {
        Linear.Block(weight: try tensor(prefix + ".weight", shape: [features, features]),
                     bias: try tensor(prefix + ".bias", shape: [features]))
    }

    /// Throws when the store holds tensors that no layer asked for.
    func refuseUnused() throws {
        let unexpected = store.names.subtracting(used).sorted()
        if !unexpected.isEmpty { throw WeightsError.unexpectedTensors(names: unexpected, file: store.path) }
    }
}
