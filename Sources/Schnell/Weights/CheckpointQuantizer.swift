import Foundation

/// `schnell quantize`: a FLUX transformer or a T5 encoder, from any layout Schnell reads, written
/// as the GGUF files self-hosters share. The transformer gets BFL names without prefix
/// (`double_blocks.0.img_attn.qkv.weight`, as city96's FLUX GGUFs) and `general.architecture
/// flux`; T5 gets llama.cpp's names (`enc.blk.0.attn_q.weight`, as city96's T5 GGUFs) and
/// `t5encoder`. Tensors are assembled through the name table: each stored tensor of the target
/// names is made of rows of engine tensors, which the source checkpoint's own names resolve, so
/// diffusers' separate q, k, v become one `qkv` and the final layer's (scale, shift) its
/// (shift, scale), row block by row block, never the whole model in memory.
public enum CheckpointQuantizer {
    /// One stored tensor of the output: its rows, in pieces taken from engine tensors.
    struct Output {
        let name: String
        let shape: [Int]
        let dtype: DType
        var pieces: [(targetRows: Range<Int>, engineName: String, engineRows: Range<Int>)]
    }

    public static func write(_ checkpoint: Checkpoint, to path: String, quantization: WeightQuantization,
                             progress: @escaping (String) -> Void = { _ in }) throws {
        let table: WeightTable, targetLayout: CheckpointLayout, architecture: String
        var outputName: (String) -> String = { $0 }
        switch checkpoint.family {
        case .transformer:
            table = FluxWeightNames.table(try TransformerConfig(checkpoint: checkpoint))
            targetLayout = .original
            architecture = "flux"
        case .t5:
            let config = try T5Config(checkpoint: checkpoint)
            table = T5WeightNames.table(config)
            targetLayout = .diffusers
            architecture = "t5encoder"
            outputName = { T5WeightNames.llamaCppName(transformers: $0, gated: config.isGated) ?? $0 }
        case .vae, .clip:
            throw WeightsError.unrecognisedModel(
                path: checkpoint.store.path,
                reason: "\(checkpoint.family.name): only the FLUX transformer and the T5 encoder are quantized (CLIP and the VAE are small and stay safetensors)")
        }
        let mapped = try table.resolve(from: checkpoint.store, layout: checkpoint.layout, prefix: checkpoint.prefix)
        var outputs: [String: Output] = [:]
        var order: [String] = []
        for entry in table.entries {
            var engineRow = 0
            for source in entry.sources(targetLayout) {
                let rows = engineRow..<(engineRow + source.rows.count)
                engineRow += source.rows.count
                if outputs[source.name] == nil {
                    order.append(source.name)
                    outputs[source.name] = Output(name: outputName(source.name), shape: source.shape,
                                                  dtype: quantization.storedType(engineName: entry.engineName, shape: source.shape),
                                                  pieces: [])
                }
                outputs[source.name]?.pieces.append((source.rows, entry.engineName, rows))
            }
        }
        let tensors = order.compactMap { outputs[$0] }.map { output in
            GGUFWriter.TensorInfo(name: output.name, shape: output.shape, dtype: output.dtype) { destination in
                progress(output.name)
                let width = output.shape.count >= 2 ? output.shape.dropFirst().reduce(1, *) : 1
                let rowBytes = output.dtype.byteCount(of: width) ?? 0
                for piece in output.pieces {
                    let sources = try engineRows(mapped, piece.engineName, piece.engineRows)
                    WeightQuantization.quantizeRows(sources, width: width, to: output.dtype,
                                                    destination: destination + piece.targetRows.lowerBound * rowBytes)
                }
            }
        }
        try GGUFWriter.write(to: path, metadata: [("general.architecture", architecture)], tensors: tensors)
    }

    /// Where each of an engine tensor's rows `rows` lies in the source checkpoint: its stacked
    /// source views, row by row (pointer, dtype, scale).
    static func engineRows(_ mapped: MappedWeights, _ engineName: String, _ rows: Range<Int>) throws -> [RowSource] {
        guard let parts = mapped.parts[engineName] else {
            throw WeightsError.missingTensor(name: engineName, file: "engine table")
        }
        var located: [RowSource] = []
        var first = 0
        for part in parts {
            let count = part.shape.first ?? 1
            let width = part.shape.count >= 2 ? part.shape.dropFirst().reduce(1, *) : 1
            let rowBytes = part.dtype.byteCount(of: width) ?? 0
            for row in rows.clamped(to: first..<(first + count)) {
                let local = row - first
                located.append(RowSource(pointer: part.pointer + local * rowBytes, dtype: part.dtype, scale: part.scale?.value(row: local)))
            }
            first += count
        }
        guard located.count == rows.count else {
            throw WeightsError.missingTensor(name: "\(engineName) rows \(rows)", file: "engine table")
        }
        return located
    }
}
