import Foundation
import Schnell
import SchnellKernels

/// A rank-`rank` LoRA on every linear layer of the transformer blocks (BFL names with
/// `.lora_A` / `.lora_B`, as the file formats are read), on the pipeline folder at `path`:
/// the time to read it, to merge it into copies of the float layers, and one denoising step at
/// `size` x `size` (256 T5 tokens) without it, merged, and with the updates added at run time.
/// Prints each round and the medians.
func benchmarkLoRA(path: String, size: Int, rank: Int, repeats: Int, threads: Int) throws {
    let backend = CPUBackend(threads: threads, precision: .f32)
    let pipeline = try FluxPipeline.load(PipelineFiles(model: path), backend: backend)
    let config = pipeline.transformer.config, inner = config.innerDim, mlp = config.mlpHidden
    func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        let value = try body()
        return (value, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    var layers: [(name: String, inFeatures: Int, outFeatures: Int)] = []
    for index in 0..<config.numLayers {
        for stream in ["img", "txt"] {
            layers += [("double_blocks.\(index).\(stream)_mod.lin", inner, 6 * inner), ("double_blocks.\(index).\(stream)_attn.qkv", inner, 3 * inner),
                       ("double_blocks.\(index).\(stream)_attn.proj", inner, inner), ("double_blocks.\(index).\(stream)_mlp.0", inner, mlp),
                       ("double_blocks.\(index).\(stream)_mlp.2", mlp, inner)]
        }
    }
    for index in 0..<config.numSingleLayers {
        layers += [("single_blocks.\(index).modulation.lin", inner, 3 * inner), ("single_blocks.\(index).linear1", inner, 3 * inner + mlp),
                   ("single_blocks.\(index).linear2", inner + mlp, inner)]
    }
    var state: UInt32 = 7
    func values(_ count: Int, scale: Float) -> [Float] {
        (0..<count).map { _ in
            state = state &* 1664525 &+ 1013904223
            return Float(Int32(bitPattern: state)) / Float(Int32.max) * scale
        }
    }
    var tensors: [(name: String, shape: [Int], values: [Float])] = []
    for layer in layers {
        tensors.append(("\(layer.name).lora_A.weight", [rank, layer.inFeatures], values(rank * layer.inFeatures, scale: 0.02)))
        tensors.append(("\(layer.name).lora_B.weight", [layer.outFeatures, rank], values(layer.outFeatures * rank, scale: 0.02)))
    }
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-bench-lora-r\(rank).safetensors").path
    try writeSafeTensors(tensors, to: file)
    defer { try? FileManager.default.removeItem(atPath: file) }
    let (adapter, readSeconds) = try timed { try pipeline.loadLoRA(path: file) }
    let deltas = adapter.transformerDeltas
    let fileMB = Double((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0) / 1e6

    let (latents, text, pooled, rotary) = stepInputs(pipeline, backend: backend, size: size)
    func step(_ model: FluxTransformer) -> Double {
        timed { _ = model(latents: latents, text: text, pooled: pooled, timestep: 0.7, guidance: nil, rotary: rotary) }.1
    }

    var plain: [Double] = [], merged: [Double] = [], runtime: [Double] = [], mergeSeconds: [Double] = []
    var runtimeBuild: [Double] = []
    for round in 1...max(repeats, 1) {
        let (mergedModel, merge) = try timed { try pipeline.transformer.adapted(deltas, mode: .merge) }
        let (runtimeModel, build) = try timed { try pipeline.transformer.adapted(deltas, mode: .runtime) }
        let results = (step(pipeline.transformer), step(mergedModel), step(runtimeModel))
        print(String(format: "round %d: merge %.3f s, step plain %.3f s, merged %.3f s, run time %.3f s", round, merge, results.0,
                     results.1, results.2))
        plain.append(results.0)
        merged.append(results.1)
        runtime.append(results.2)
        mergeSeconds.append(merge)
        runtimeBuild.append(build)
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print(String(format: "\nrank-%d LoRA on %d layers (%.1f MB file, read in %.3f s), %dx%d, %@, medians of %d: merge %.3f s (run-time setup %.4f s); step plain %.3f s, merged %.3f s (%+.2f%%), run time %.3f s (%+.2f%%)",
                 rank, layers.count, fileMB, readSeconds, size, size, path as NSString, plain.count, median(mergeSeconds), median(runtimeBuild),
                 median(plain), median(merged), 100 * (median(merged) / median(plain) - 1), median(runtime),
                 100 * (median(runtime) / median(plain) - 1)))
}

/// A safetensors file of `tensors`, in order, stored as `dtype` (f32, or bf16 rounded to nearest even).
func writeSafeTensors(_ tensors: [(name: String, shape: [Int], values: [Float])], dtype: DType = .f32, to path: String) throws {
    precondition(dtype == .f32 || dtype == .bf16, "writeSafeTensors writes f32 or bf16")
    let data = tensors.map { tensor -> [UInt8] in
        guard dtype == .bf16 else { return tensor.values.withUnsafeBytes { Array($0) } }
        var half = [UInt16](repeating: 0, count: tensor.values.count)
        schnell_f32_to_bf16(tensor.values, &half, tensor.values.count)
        return half.withUnsafeBytes { Array($0) }
    }
    var entries: [String] = []
    var offset = 0
    for (tensor, bytes) in zip(tensors, data) {
        entries.append("\"\(tensor.name)\":{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes.count)]}")
        offset += bytes.count
    }
    var header = Array("{\(entries.joined(separator: ","))}".utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var file = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
    file.reserveCapacity(file.count + offset)
    for bytes in data { file += bytes }
    try Data(file).write(to: URL(fileURLWithPath: path))
}
