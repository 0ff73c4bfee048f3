import Foundation
import SchnellKernels

extension Linear {
    /// Whether every block is a plain float weight (f32, f16 or bf16, no fp8 scale), so a LoRA
    /// can be merged into a copy of it.
    public var isMergeable: Bool {
        blocks.allSatisfy { [.f32, .f16, .bf16].contains($0.weight.dtype) && $0.weight.scale == nil }
    }

    /// The layer with `deltas` added to its output at run time (after those it already has).
    public func addingLowRank(_ deltas: [LowRankDelta]) throws -> Linear {
        try Linear(blocks: blocks, lowRank: lowRank + deltas)
    }

    /// The layer with `deltas` merged into copies of the blocks they touch, kept in each block's
    /// stored dtype (bf16 is rounded once, after the sum in float32, as a merge in torch is); the
    /// other blocks stay views of the memory map, which is never written.
    public func merging(_ deltas: [LowRankDelta]) throws -> Linear {
        guard isMergeable else {
            let stored = blocks.map(\.weight.dtype.rawValue).joined(separator: ", ")
            throw WeightsError.invalidConfig(file: blocks.first?.weight.file ?? "",
                                             reason: "\(blocks.first?.weight.name ?? "a layer") is stored as \(stored); a LoRA can be merged only into f32, f16 or bf16 weights (use the run-time mode)")
        }
        var start = 0
        var merged: [Block] = []
        for block in blocks {
            let rows = start..<(start + block.weight.shape[0])
            start = rows.upperBound
            let touching = deltas.compactMap { $0.restricted(to: rows) }
            guard !touching.isEmpty else {
                merged.append(block)
                continue
            }
            merged.append(Block(weight: try Self.merged(block.weight, touching), bias: block.bias))
        }
        return try Linear(blocks: merged, lowRank: lowRank)
    }

    /// `weight` [rows, in] plus each delta, in memory the engine owns, in the weight's dtype. It
    /// goes a block of rows at a time (about 1 MB of float32): converted, updated while in cache,
    /// and stored, one pass over the memory.
    private static func merged(_ weight: WeightTensor, _ deltas: [LowRankDelta]) throws -> WeightTensor {
        let rows = weight.shape[0], inFeatures = weight.shape[1], dtype = weight.dtype
        guard let rowBytes = dtype.byteCount(of: inFeatures), let sourceRowBytes = weight.dtype.byteCount(of: inFeatures) else {
            throw WeightsError.wrongShape(name: weight.name, file: weight.file, expected: [rows, inFeatures], actual: weight.shape)
        }
        let chunkRows = max(1, (1 << 20) / (4 * max(inFeatures, 1)))
        var scratch = dtype == .f32 ? [] : [Float](repeating: 0, count: chunkRows * inFeatures)
        let memory = try MappedFile(anonymousBytes: rows * rowBytes, name: weight.file) { destination in
            for first in stride(from: 0, to: rows, by: chunkRows) {
                let chunk = first..<min(first + chunkRows, rows)
                scratch.withUnsafeMutableBufferPointer { scratch in
                    let values = dtype == .f32 ? (destination + first * rowBytes).assumingMemoryBound(to: Float.self) : scratch.baseAddress!
                    schnell_convert_to_f32(weight.pointer + first * sourceRowBytes, weight.dtype.kernelCode, values, chunk.count * inFeatures)
                    for delta in deltas {
                        guard let part = delta.restricted(to: chunk) else { continue }
                        part.down.withUnsafeBufferPointer { down in
                            part.up.withUnsafeBufferPointer { up in
                                schnell_lowrank_merge(values + part.rows.lowerBound * inFeatures, part.rows.count, inFeatures,
                                                      down.baseAddress, part.rank, up.baseAddress, part.scale)
                            }
                        }
                    }
                    if dtype != .f32 {
                        schnell_quantize_reference(values, dtype.kernelCode, destination + first * rowBytes, chunk.count * inFeatures)
                    }
                }
            }
        }
        return WeightTensor(name: weight.name, dtype: dtype, shape: weight.shape, file: weight.file, mapping: memory, byteOffset: 0)
    }
}

/// Where a model's layers come from while it is built: a checkpoint as it loads
/// (`LayerWeights`), or an already built model's layers with LoRA updates (`AdaptedLayers`).
protocol LayerSource {
    func linear(_ name: String) throws -> Linear
    func vector(_ name: String) throws -> Tensor
}

extension LayerWeights: LayerSource {}

/// Every layer a model was built with, by engine name, so an adapted copy can reuse them.
final class BuiltLayers: LayerSource, @unchecked Sendable {
    private let source: any LayerSource
    // Written only while the model is built, on the building thread; read-only afterwards.
    private(set) var linears: [String: Linear] = [:]
    private(set) var vectors: [String: Tensor] = [:]

    init(recording source: any LayerSource) {
        self.source = source
    }

    func linear(_ name: String) throws -> Linear {
        let layer = try source.linear(name)
        linears[name] = layer
        return layer
    }

    func vector(_ name: String) throws -> Tensor {
        let tensor = try source.vector(name)
        vectors[name] = tensor
        return tensor
    }
}

/// A built model's layers with LoRA updates: each updated layer merged or extended per `mode`,
/// prepared by the backend; the others (and every vector) are the model's own.
struct AdaptedLayers: LayerSource {
    let base: BuiltLayers
    let deltas: [String: [LowRankDelta]]
    let mode: LoRAMode
    let backend: any Backend

    func linear(_ name: String) throws -> Linear {
        guard let layer = base.linears[name] else {
            throw WeightsError.missingTensor(name: name, file: "the loaded model")
        }
        guard let updates = deltas[name], !updates.isEmpty else { return layer }
        switch mode {
        case .runtime:
            return try layer.addingLowRank(updates)
        case .merge:
            return try backend.prepare(layer.merging(updates))
        case .auto:
            let float32 = layer.blocks.allSatisfy { $0.weight.dtype == .f32 && $0.weight.scale == nil }
            return float32 ? try backend.prepare(layer.merging(updates)) : try layer.addingLowRank(updates)
        }
    }

    func vector(_ name: String) throws -> Tensor {
        guard let tensor = base.vectors[name] else {
            throw WeightsError.missingTensor(name: name, file: "the loaded model")
        }
        return tensor
    }
}

extension Array where Element == AppliedLoRA {
    /// The updates of all these LoRAs by engine layer, each scaled by its request scale.
    func deltas(_ component: KeyPath<LoRAAdapter, [String: [LowRankDelta]]>) -> [String: [LowRankDelta]] {
        var combined: [String: [LowRankDelta]] = [:]
        for applied in self where applied.scale != 0 {
            for (layer, updates) in applied.adapter[keyPath: component] {
                combined[layer, default: []] += updates.map { $0.scaled(by: applied.scale) }
            }
        }
        return combined
    }
}

/// The pipeline's models with the last request's LoRAs applied, kept so that the next request
/// with the same LoRAs, scales and mode reuses them; a different set replaces them (the base
/// models are never touched, so a request without LoRAs needs nothing rebuilt).
final class AdaptedModelCache: @unchecked Sendable {
    struct Key: Equatable {
        var loras: [AppliedLoRA]
        var mode: LoRAMode
    }

    private let lock = NSLock()
    private var key: Key?
    private var models: (transformer: FluxTransformer, clip: CLIPTextModel)?

    /// The adapted models for `key`, and whether this call built them (with `build`).
    func get(_ key: Key, build: () throws -> (transformer: FluxTransformer, clip: CLIPTextModel))
        rethrows -> (transformer: FluxTransformer, clip: CLIPTextModel, built: Bool) {
        try lock.withLock {
            if let models, self.key == key { return (models.transformer, models.clip, false) }
            // Drop the previous set before building, so two merged copies are never held at once.
            models = nil
            let built = try build()
            self.key = key
            models = built
            return (built.transformer, built.clip, true)
        }
    }
}
