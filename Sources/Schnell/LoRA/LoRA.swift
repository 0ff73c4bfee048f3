import Foundation

/// The key conventions LoRA files come in, told apart by their keys (`LoRAFileReader`).
public enum LoRAFormat: String, Sendable {
    /// diffusers / PEFT: `transformer.transformer_blocks.N.attn.to_q.lora_A.weight` / `lora_B`.
    case diffusers
    /// kohya: `lora_unet_double_blocks_N_img_attn_qkv.lora_down.weight`, `.lora_up`, `.alpha`.
    case kohya
    /// XLabs: `double_blocks.N.processor.qkv_lora1.down.weight`, `.up`.
    case xlabs
    /// BFL's own names with `.lora_A` / `.lora_B`: `double_blocks.N.img_attn.qkv.lora_A.weight`.
    case bfl
}

/// Which model a LoRA pair updates.
public enum LoRAComponent: String, Sendable {
    case transformer
    /// CLIP-L, the first text encoder (kohya's `lora_te1_`, diffusers' `text_encoder.`).
    case clip
}

/// One down/up pair as a file stores it, named by the base tensor it updates.
/// `target` is the base weight's name without `.weight`, in `layout`'s naming for the transformer
/// (`transformer_blocks.0.attn.to_q` or `double_blocks.0.img_attn.qkv`) and in transformers'
/// naming for CLIP (`text_model.encoder.layers.0.self_attn.q_proj`). The update is
/// ΔW = (alpha / rank) · up · down, `alpha` nil meaning alpha = rank (scale 1).
struct LoRAPair {
    /// The key convention the pair was read in.
    let format: LoRAFormat
    let component: LoRAComponent
    let layout: CheckpointLayout
    let target: String
    /// The file's own key of the down matrix, for error messages.
    let key: String
    /// The file's own key of the up matrix, for error messages.
    let upKey: String
    let down: WeightTensor  // [rank, inFeatures]
    let up: WeightTensor    // [outFeatures, rank]
    let alpha: Float?
    /// The target's rows `up` covers, when not all of them: XLabs' single-block qkv LoRA
    /// updates rows 0..<3 · inner of `single_blocks.N.linear1` (q | k | v, not the MLP input).
    var rows: Range<Int>? = nil
}

/// One low-rank update of an engine linear layer: output rows `rows` gain scale · up · down,
/// ΔW[rows] = scale · up [rows.count, rank] · down [rank, inFeatures]. The file's alpha / rank is
/// folded into `scale`; a request's LoRA scale multiplies it.
public struct LowRankDelta: Sendable {
    public let down: [Float]
    public let up: [Float]
    public let rank: Int
    public let inFeatures: Int
    public let rows: Range<Int>
    public let scale: Float

    public init(down: [Float], up: [Float], rank: Int, inFeatures: Int, rows: Range<Int>, scale: Float) {
        precondition(down.count == rank * inFeatures && up.count == rows.count * rank, "low-rank delta: inconsistent sizes")
        self.down = down
        self.up = up
        self.rank = rank
        self.inFeatures = inFeatures
        self.rows = rows
        self.scale = scale
    }

    /// The same update with its scale multiplied by `factor`.
    public func scaled(by factor: Float) -> LowRankDelta {
        LowRankDelta(down: down, up: up, rank: rank, inFeatures: inFeatures, rows: rows, scale: scale * factor)
    }

    /// The same update on rows `offset` further down.
    public func shifted(by offset: Int) -> LowRankDelta {
        LowRankDelta(down: down, up: up, rank: rank, inFeatures: inFeatures, rows: (rows.lowerBound + offset)..<(rows.upperBound + offset),
                     scale: scale)
    }

    /// The part of the update on output rows `range` of the layer, renumbered from the range's
    /// start; nil when it has no row there.
    public func restricted(to range: Range<Int>) -> LowRankDelta? {
        let kept = rows.clamped(to: range)
        guard !kept.isEmpty else { return nil }
        let first = kept.lowerBound - rows.lowerBound
        let upRows = Array(up[(first * rank)..<((first + kept.count) * rank)])
        return LowRankDelta(down: down, up: upRows, rank: rank, inFeatures: inFeatures,
                            rows: (kept.lowerBound - range.lowerBound)..<(kept.upperBound - range.lowerBound), scale: scale)
    }
}

/// How a LoRA reaches a layer: merged into a copy of its weight (no cost per step) or added as
/// its own low-rank product at run time (any layer; the only way for quantized ones).
public enum LoRAMode: String, Sendable, CaseIterable {
    /// Merge into float32 layers (exact, the copy no larger than the layer); add at run time to
    /// every other layer: a LoRA's updates are often below bf16's resolution of the weights they
    /// change, so merging into a bf16 or f16 copy would round much of them away, and a float32
    /// copy would double those layers' memory.
    case auto
    /// Merge into every float layer in its stored dtype (bf16 and f16 rounded once, after the
    /// sum); quantized layers are refused.
    case merge
    case runtime
}

/// A LoRA file read and checked against one model: its updates by engine layer name
/// (`double.3.img_qkv`, `single.0.linear1`, CLIP's `layers.0.qkv`, ...), at scale 1. A layer's
/// list holds one delta per stored tensor that feeds it (diffusers' to_q, to_k, to_v each give
/// one row block of `double.N.img_qkv`), in row order.
public final class LoRAAdapter: Sendable, CustomStringConvertible {
    /// The file name without its extension: what requests and the models list call it.
    public let name: String
    public let path: String
    public let format: LoRAFormat
    public let transformerDeltas: [String: [LowRankDelta]]
    public let clipDeltas: [String: [LowRankDelta]]
    /// Keys of the file that were not used (only with `skipUnknown`).
    public let skippedKeys: [String]

    init(name: String, path: String, format: LoRAFormat, transformerDeltas: [String: [LowRankDelta]],
         clipDeltas: [String: [LowRankDelta]], skippedKeys: [String]) {
        self.name = name
        self.path = path
        self.format = format
        self.transformerDeltas = transformerDeltas
        self.clipDeltas = clipDeltas
        self.skippedKeys = skippedKeys
    }

    public var description: String { "\(name) (\(format.rawValue), \(transformerDeltas.count + clipDeltas.count) layers)" }
}

/// A LoRA as one request applies it.
public struct AppliedLoRA: Sendable, Equatable {
    public let adapter: LoRAAdapter
    public let scale: Float

    public init(_ adapter: LoRAAdapter, scale: Float = 1) {
        self.adapter = adapter
        self.scale = scale
    }

    public static func == (lhs: AppliedLoRA, rhs: AppliedLoRA) -> Bool {
        lhs.adapter === rhs.adapter && lhs.scale == rhs.scale
    }
}

extension LoRAAdapter {
    /// Reads the LoRA file at `path` and checks it against a model with these configurations:
    /// every key must be understood (or, with `skipUnknown`, listed in `skippedKeys`), and every
    /// pair must fit the layer it names; errors name the file and the key.
    public static func load(path: String, transformer: TransformerConfig, clip: CLIPTextConfig,
                            skipUnknown: Bool) throws -> LoRAAdapter {
        let targets = LoRATargets(transformer: transformer, clip: clip)
        let contents = try LoRAFileReader.read(path: path, targets: targets, skipUnknown: skipUnknown)
        var transformerDeltas: [String: [LowRankDelta]] = [:], clipDeltas: [String: [LowRankDelta]] = [:]
        for pair in contents.pairs {
            for (layer, delta) in try targets.deltas(for: pair, file: path) {
                if pair.component == .clip {
                    clipDeltas[layer, default: []].append(delta)
                } else {
                    transformerDeltas[layer, default: []].append(delta)
                }
            }
        }
        for (layer, deltas) in transformerDeltas { transformerDeltas[layer] = deltas.sorted { $0.rows.lowerBound < $1.rows.lowerBound } }
        for (layer, deltas) in clipDeltas { clipDeltas[layer] = deltas.sorted { $0.rows.lowerBound < $1.rows.lowerBound } }
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        return LoRAAdapter(name: name, path: path, format: contents.format, transformerDeltas: transformerDeltas,
                           clipDeltas: clipDeltas, skippedKeys: contents.skipped)
    }
}

extension FluxPipeline {
    /// A LoRA file for this pipeline's transformer and CLIP (see `LoRAAdapter.load`); apply it
    /// with `GenerationRequest.loras`.
    public func loadLoRA(path: String, skipUnknown: Bool = false) throws -> LoRAAdapter {
        try LoRAAdapter.load(path: path, transformer: transformer.config, clip: clip.config, skipUnknown: skipUnknown)
    }
}
