/// Where a LoRA pair lands in the engine, read off the models' weight tables (WeightTable.swift),
/// so LoRA names follow the same one name map as the checkpoints.
///
/// A base tensor a checkpoint stores (`double_blocks.0.img_attn.qkv`, `transformer_blocks.0.attn.to_q`,
/// `text_model.encoder.layers.0.self_attn.q_proj`) feeds one or more engine linear layers, each
/// with a block of its rows: diffusers' to_q is rows 0..<inner of `double.0.img_qkv`; the original
/// `final_layer.adaLN_modulation.1` feeds `final.modulation` in two swapped halves. An update of
/// the stored tensor's rows is cut along the same blocks.
struct LoRATargets {
    /// One block of an engine layer's output rows that a stored tensor fills.
    struct Place: Equatable {
        /// The engine layer, without `.weight`: `double.0.img_qkv`, `layers.1.qkv`.
        let layer: String
        /// The engine row the block starts at.
        let offset: Int
        /// The stored tensor's rows that fill it.
        let sourceRows: Range<Int>
    }

    /// A stored linear weight [totalRows, inFeatures] and the places it feeds.
    struct Target {
        let totalRows: Int
        let inFeatures: Int
        var places: [Place]
    }

    /// Stored name (without `.weight`) -> target, per checkpoint layout of the transformer.
    let transformer: [CheckpointLayout: [String: Target]]
    /// transformers' CLIP names with their `text_model.` prefix (both layouts name CLIP alike).
    let clip: [String: Target]
    /// XLabs' single-block qkv LoRA updates only these leading rows of `single_blocks.N.linear1`
    /// (q | k | v, not the MLP input): 3 · inner.
    let singleAttentionRows: Int

    init(transformer config: TransformerConfig, clip clipConfig: CLIPTextConfig) {
        let table = FluxWeightNames.table(config)
        transformer = Dictionary(uniqueKeysWithValues: CheckpointLayout.allCases.map { ($0, Self.index(table, $0)) })
        let clipIndex = Self.index(CLIPWeightNames.table(clipConfig), .diffusers)
        clip = Dictionary(uniqueKeysWithValues: clipIndex.map { (CLIPWeightNames.prefixes[0] + $0.key, $0.value) })
        singleAttentionRows = 3 * config.innerDim
    }

    /// Every 2-D linear weight of `table` by its stored name in `layout`.
    static func index(_ table: WeightTable, _ layout: CheckpointLayout) -> [String: Target] {
        var targets: [String: Target] = [:]
        for entry in table.entries where entry.engineName.hasSuffix(".weight") && entry.shape.count == 2 {
            let layer = String(entry.engineName.dropLast(".weight".count))
            var offset = 0
            for source in entry.sources(layout) where source.name.hasSuffix(".weight") {
                let name = String(source.name.dropLast(".weight".count))
                let place = Place(layer: layer, offset: offset, sourceRows: source.rows)
                targets[name, default: Target(totalRows: source.shape[0], inFeatures: entry.shape[1], places: [])].places.append(place)
                offset += source.rows.count
            }
        }
        return targets
    }

    func target(_ component: LoRAComponent, _ layout: CheckpointLayout, _ name: String) -> Target? {
        component == .clip ? clip[name] : transformer[layout]?[name]
    }

    /// The engine updates of one pair, at the file's scale alpha / rank. The pair must fit its
    /// target: down [rank, inFeatures], up [rows, rank] with rows the target's (or `pair.rows`'s)
    /// count; a LoRA made for another width fails here, naming the key and both shapes.
    func deltas(for pair: LoRAPair, file: String) throws -> [(layer: String, delta: LowRankDelta)] {
        guard let target = target(pair.component, pair.layout, pair.target) else {
            throw WeightsError.invalidLoRA(file: file, key: pair.key, reason: "names '\(pair.target)', which is no layer of this model")
        }
        let rank = pair.down.shape[0]
        guard pair.down.shape[1] == target.inFeatures else {
            throw misfit(file, pair.key, pair.down.shape, [rank, target.inFeatures], pair.target)
        }
        let rows = pair.rows ?? 0..<target.totalRows
        guard pair.up.shape[0] == rows.count else {
            throw misfit(file, pair.upKey, pair.up.shape, [rows.count, rank], pair.target)
        }
        let scale = (pair.alpha ?? Float(rank)) / Float(rank)
        // The update on the stored tensor's rows, cut along the blocks it feeds.
        let whole = LowRankDelta(down: pair.down.floats(), up: pair.up.floats(), rank: rank, inFeatures: target.inFeatures,
                                 rows: rows, scale: scale)
        return target.places.compactMap { place in
            whole.restricted(to: place.sourceRows).map { (place.layer, $0.shifted(by: place.offset)) }
        }
    }

    private func misfit(_ file: String, _ key: String, _ actual: [Int], _ expected: [Int], _ target: String) -> WeightsError {
        .invalidLoRA(file: file, key: key,
                     reason: "has shape \(actual), expected \(expected) to fit '\(target)' of this model (a LoRA for another model or width?)")
    }
}
