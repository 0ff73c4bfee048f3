import Foundation
import SchnellKernels
import XCTest
@testable import Schnell

/// LoRA updates as the engine applies them: the kernels against their reference loops, a layer's
/// run-time and merged forms against the plain formula, row-ranged updates through fused layers,
/// and whole models whose base stays exact while adapted copies come and go.
final class LoRAApplyTests: XCTestCase {
    private var random = TestRandom(state: 20)

    private func delta(rank: Int, inFeatures: Int, rows: Range<Int>, scale: Float) -> LowRankDelta {
        LowRankDelta(down: random.values(rank * inFeatures), up: random.values(rows.count * rank), rank: rank,
                     inFeatures: inFeatures, rows: rows, scale: scale)
    }

    /// x W^T + b + sum scale (x down^T) up^T over each delta's rows, in double.
    private func expected(_ x: [Float], rows: Int, weight: [Float], bias: [Float], _ deltas: [LowRankDelta]) -> [Double] {
        let inFeatures = x.count / rows, outFeatures = bias.count
        var out = [Double](repeating: 0, count: rows * outFeatures)
        for r in 0..<rows {
            for c in 0..<outFeatures {
                var sum = Double(bias[c])
                for i in 0..<inFeatures { sum += Double(x[r * inFeatures + i]) * Double(weight[c * inFeatures + i]) }
                for delta in deltas where delta.rows.contains(c) {
                    let local = c - delta.rows.lowerBound
                    var low = 0.0
                    for k in 0..<delta.rank {
                        var projected = 0.0
                        for i in 0..<inFeatures { projected += Double(x[r * inFeatures + i]) * Double(delta.down[k * inFeatures + i]) }
                        low += projected * Double(delta.up[local * delta.rank + k])
                    }
                    sum += Double(delta.scale) * low
                }
                out[r * outFeatures + c] = sum
            }
        }
        return out
    }

    private func maxRelativeError(_ actual: [Float], _ expected: [Double]) -> Double {
        let scale = expected.map(abs).max() ?? 1
        return zip(actual, expected).map { abs(Double($0) - $1) }.max()! / scale
    }

    func testKernelsMatchTheirReferences() {
        let rows = 7, inFeatures = 33, rank = 5, n = 19, stride = 24
        let x = random.values(rows * inFeatures), down = random.values(rank * inFeatures), up = random.values(n * rank)
        let start = random.values(rows * stride)
        var fast = start, reference = start
        XCTAssertEqual(schnell_lowrank_add(x, rows, inFeatures, down, rank, up, n, 0.7, &fast, stride), 0)
        schnell_lowrank_add_reference(x, rows, inFeatures, down, rank, up, n, 0.7, &reference, stride)
        XCTAssertLessThan(zip(fast, reference).map { abs($0 - $1) }.max()!, 1e-5)
        XCTAssertEqual(Array(fast[n..<stride]), Array(start[n..<stride]), "columns past n are left alone")

        let weight = random.values(n * inFeatures)
        var merged = weight, mergedReference = weight
        schnell_lowrank_merge(&merged, n, inFeatures, down, rank, up, -1.3)
        schnell_lowrank_merge_reference(&mergedReference, n, inFeatures, down, rank, up, -1.3)
        XCTAssertLessThan(zip(merged, mergedReference).map { abs($0 - $1) }.max()!, 1e-5)
        XCTAssertGreaterThan(zip(merged, weight).map { abs($0 - $1) }.max()!, 0.01, "the merge changed the weight")
    }

    /// A fused layer of two stored blocks (as q | k | v are), with updates on a row range that
    /// crosses the blocks: run time and merged give the formula's output, in f32 and bf16.
    func testRunTimeAndMergedLayersGiveTheFormula() throws {
        let backend = CPUBackend(threads: 1)
        let rows = 5, inFeatures = 24, first = 10, second = 14
        let weight = random.values((first + second) * inFeatures), bias = random.values(first + second)
        let x = random.values(rows * inFeatures)
        let deltas = [delta(rank: 4, inFeatures: inFeatures, rows: 6..<20, scale: 0.8),
                      delta(rank: 2, inFeatures: inFeatures, rows: 0..<3, scale: -0.5)]
        let want = expected(x, rows: rows, weight: weight, bias: bias, deltas)
        for dtype in [DType.f32, .bf16] {
            // The stored values as the layer holds them (bf16 rounds them).
            let stored = try WeightTensor(values: weight, shape: [first + second, inFeatures], dtype: dtype, name: "w", file: "test").floats()
            let storedWant = expected(x, rows: rows, weight: stored, bias: bias, deltas)
            let layer = try Linear(blocks: [
                Linear.Block(weight: WeightTensor(values: Array(weight[..<(first * inFeatures)]), shape: [first, inFeatures], dtype: dtype,
                                                  name: "w.0", file: "test"),
                             bias: WeightTensor(values: Array(bias[..<first]), shape: [first], dtype: .f32, name: "b.0", file: "test")),
                Linear.Block(weight: WeightTensor(values: Array(weight[(first * inFeatures)...]), shape: [second, inFeatures], dtype: dtype,
                                                  name: "w.1", file: "test"),
                             bias: WeightTensor(values: Array(bias[first...]), shape: [second], dtype: .f32, name: "b.1", file: "test")),
            ])
            let input = backend.upload(x, shape: [rows, inFeatures])
            let runtime = backend.download(backend.linear(input, try layer.addingLowRank(deltas)))
            XCTAssertLessThan(maxRelativeError(runtime, storedWant), 1e-5, "\(dtype) run time")
            let merged = try layer.merging(deltas)
            XCTAssertEqual(merged.blocks.map(\.weight.dtype), [dtype, dtype], "merged weights keep the stored dtype")
            XCTAssertTrue(merged.lowRank.isEmpty)
            let mergedOut = backend.download(backend.linear(input, merged))
            // bf16: the merged weight is rounded once more, about 2^-9 relative.
            XCTAssertLessThan(maxRelativeError(mergedOut, storedWant), dtype == .f32 ? 1e-5 : 1e-2, "\(dtype) merged")
            XCTAssertGreaterThan(maxRelativeError(backend.download(backend.linear(input, layer)), want), 1e-2,
                                 "the updates are large enough to tell apart")
            // The base layer is untouched by either form.
            XCTAssertEqual(try layer.blocks[0].weight.floats(), Array(stored[..<(first * inFeatures)]))
        }
    }

    func testUpdatesFollowARowSplitOfTheLayer() throws {
        let backend = CPUBackend(threads: 1)
        let rows = 3, inFeatures = 16, outFeatures = 20
        let weight = random.values(outFeatures * inFeatures), bias = random.values(outFeatures), x = random.values(rows * inFeatures)
        let layer = try Linear(weight: WeightTensor(values: weight, shape: [outFeatures, inFeatures], dtype: .f32, name: "w", file: "t"),
                               bias: WeightTensor(values: bias, shape: [outFeatures], dtype: .f32, name: "b", file: "t"))
            .addingLowRank([delta(rank: 3, inFeatures: inFeatures, rows: 4..<15, scale: 1.1)])
        let input = backend.upload(x, shape: [rows, inFeatures])
        let whole = backend.download(backend.linear(input, layer))
        for split in [0..<8, 8..<20, 15..<20] {
            let part = backend.download(backend.linear(input, try layer.outputs(split)))
            let columns = (0..<rows).flatMap { r in whole[(r * outFeatures + split.lowerBound)..<(r * outFeatures + split.upperBound)] }
            XCTAssertLessThan(zip(part, columns).map { abs($0 - $1) }.max()!, 1e-5, "\(split)")
        }
        XCTAssertEqual(try layer.outputs(15..<20).lowRank.count, 0, "no update reaches rows 15...")
    }

    func testRefusedUpdates() throws {
        let layer = try Linear(weight: WeightTensor(values: random.values(8 * 4), shape: [8, 4], dtype: .f32, name: "w", file: "t"), bias: nil)
        XCTAssertThrowsError(try layer.addingLowRank([delta(rank: 2, inFeatures: 5, rows: 0..<8, scale: 1)]))
        XCTAssertThrowsError(try layer.addingLowRank([delta(rank: 2, inFeatures: 4, rows: 4..<9, scale: 1)]))
        let quantized = try Linear(weight: WeightTensor(values: random.values(8 * 32), shape: [8, 32], dtype: .q8_0, name: "q", file: "t"),
                                   bias: nil)
        XCTAssertFalse(quantized.isMergeable)
        XCTAssertThrowsError(try quantized.merging([delta(rank: 2, inFeatures: 32, rows: 0..<8, scale: 1)])) { error in
            XCTAssertTrue("\(error)".contains("run-time mode"), "\(error)")
        }
    }

    // MARK: - Whole models

    static let pipeline = Result { try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend()) }

    /// An adapter with random updates on a double block's q|k|v (crossing q and k), a single
    /// block's fused linear1 (crossing q|k|v and the MLP input) and CLIP's first MLP.
    private func adapter(_ pipeline: FluxPipeline, name: String) -> LoRAAdapter {
        let inner = pipeline.transformer.config.innerDim, clipHidden = pipeline.clip.config.hiddenSize
        return LoRAAdapter(name: name, path: "\(name).safetensors", format: .diffusers,
                           transformerDeltas: ["double.0.img_qkv": [delta(rank: 4, inFeatures: inner, rows: (inner / 2)..<(3 * inner / 2), scale: 0.9)],
                                               "single.0.linear1": [delta(rank: 4, inFeatures: inner, rows: (2 * inner)..<(4 * inner), scale: 0.9)]],
                           clipDeltas: ["layers.0.fc1": [delta(rank: 2, inFeatures: clipHidden, rows: 0..<8, scale: 2)]],
                           skippedKeys: [])
    }

    func testRunTimeAndMergedTransformersAgreeAndTheBaseStaysExact() throws {
        let pipeline = try Self.pipeline.get()
        let base = pipeline.transformer, ops = CPUBackend(threads: 1)
        let lora = adapter(pipeline, name: "a")
        let tokens = 16, textTokens = 5
        let latents = random.values(tokens * base.config.inChannels), text = random.values(textTokens * base.config.jointAttentionDim)
        let pooled = random.values(base.config.pooledProjectionDim)
        let rotary = base.rotaryTable(textTokens: textTokens, gridHeight: 4, gridWidth: 4)
        func run(_ model: FluxTransformer) -> [Float] {
            ops.download(model(latents: ops.upload(latents, shape: [tokens, base.config.inChannels]),
                               text: ops.upload(text, shape: [textTokens, base.config.jointAttentionDim]),
                               pooled: ops.upload(pooled, shape: [pooled.count]), timestep: 0.6, guidance: nil, rotary: rotary))
        }
        let plain = run(base)
        let merged = run(try base.adapted(lora.transformerDeltas, mode: .merge))
        let runtime = run(try base.adapted(lora.transformerDeltas, mode: .runtime))
        // The tiny transformer is stored in bf16: merged weights are rounded to bf16 once more
        // (2^-9 relative each), run-time updates are not.
        XCTAssertLessThan(relativeL2(runtime, merged), 5e-3)
        XCTAssertGreaterThan(relativeL2(merged, plain), 0.1, "the LoRA changes the output")
        XCTAssertEqual(run(base), plain, "the base model is bit for bit as before")
    }

    func testRequestsSwitchingLoRAsGiveExactImages() throws {
        let pipeline = try Self.pipeline.get()
        let a = adapter(pipeline, name: "a"), b = adapter(pipeline, name: "b")
        var request = GenerationRequest(prompt: "a lighthouse", width: 32, height: 32, steps: 2, seed: 3)
        let plain = try pipeline.generate(request).images[0].rgb
        request.loras = [AppliedLoRA(a, scale: 0.8)]
        let first = try pipeline.generate(request)
        XCTAssertNotEqual(first.images[0].rgb, plain, "the LoRA changes the image")
        XCTAssertTrue(first.timings.contains { $0.stage == "lora" }, "the adapted models were built")
        let again = try pipeline.generate(request)
        XCTAssertEqual(again.images[0].rgb, first.images[0].rgb)
        XCTAssertFalse(again.timings.contains { $0.stage == "lora" }, "and reused")
        var without = request
        without.loras = []
        XCTAssertEqual(try pipeline.generate(without).images[0].rgb, plain, "no LoRA: the plain image, exactly")
        XCTAssertEqual(try pipeline.generate(request).images[0].rgb, first.images[0].rgb, "A again: itself, exactly")

        // Two at once equal one adapter holding both updates; scale 0 is no update.
        request.loras = [AppliedLoRA(a, scale: 0.8), AppliedLoRA(b, scale: 0.5)]
        let both = try pipeline.generate(request).images[0].rgb
        XCTAssertNotEqual(both, first.images[0].rgb)
        request.loras = [AppliedLoRA(a, scale: 0)]
        XCTAssertEqual(try pipeline.generate(request).images[0].rgb, plain)
        // The tiny transformer is bf16: auto adds the updates at run time; merge rounds them into bf16 copies.
        request.loras = [AppliedLoRA(a, scale: 0.8)]
        request.loraMode = .runtime
        XCTAssertEqual(try pipeline.generate(request).images[0].rgb, first.images[0].rgb, "auto is run time on bf16 layers")
        request.loraMode = .merge
        let merged = try pipeline.generate(request).images[0].rgb
        XCTAssertLessThanOrEqual(zip(merged, first.images[0].rgb).map { abs(Int($0) - Int($1)) }.max()!, 2,
                                 "merged (bf16-rounded) and run-time images within 2/255")
    }

    func testQuantizedBasesTakeUpdatesAtRunTime() throws {
        let pipeline = try FluxPipeline.load(PipelineFiles(model: FluxPipelineTests.bundled), backend: CPUBackend(), quantization: WeightQuantization(type: .q8_0))
        let lora = adapter(pipeline, name: "q")
        let adapted = try pipeline.transformer.adapted(lora.transformerDeltas, mode: .auto)
        let layer = try XCTUnwrap(adapted.layers.linears["double.0.img_qkv"])
        XCTAssertFalse(layer.isMergeable)
        XCTAssertEqual(layer.lowRank.count, 1, "auto adds the update at run time on a quantized layer")
        XCTAssertThrowsError(try pipeline.transformer.adapted(lora.transformerDeltas, mode: .merge))
    }
}
