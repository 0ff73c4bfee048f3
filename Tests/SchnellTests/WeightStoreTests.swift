import Foundation
import XCTest
@testable import Schnell

/// The conventions `WeightStore` resolves once for every model: ComfyUI's scaled fp8 (scales
/// attached to their weights, input scales and the marker dropped) and llama.cpp's T5 names.
final class WeightStoreTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// A safetensors file of raw tensors (name, dtype, shape, bytes), in the order given.
    func write(_ name: String, _ tensors: [(String, String, [Int], [UInt8])]) throws -> String {
        var header: [String: Any] = [:], data: [UInt8] = []
        for (tensorName, dtype, shape, bytes) in tensors {
            header[tensorName] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
            data += bytes
        }
        let json = try JSONSerialization.data(withJSONObject: header)
        let path = folder.appendingPathComponent(name).path
        try Data(withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + data).write(to: URL(fileURLWithPath: path))
        return path
    }

    func f32(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    /// fp8 E4M3 bytes of 1, 2, 3, 4 (sign, 4 exponent bits of bias 7, 3 mantissa bits).
    let e4m3OneToFour: [UInt8] = [0x38, 0x40, 0x44, 0x48]

    func testScalarScaleWeight() throws {
        let path = try write("scalar.safetensors", [
            ("l.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("l.scale_weight", "F32", [], f32([0.5])),
            ("l.scale_input", "F32", [], f32([3])), ("scaled_fp8", "F8_E4M3", [0], []),
            ("m.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("m.weight_scale", "F32", [1], f32([-2])),
            ("m.input_scale", "F32", [], f32([7])), ("bias", "F32", [2], f32([1, 2])),
        ])
        let store = try WeightStore(path: path)
        XCTAssertEqual(store.names, ["l.weight", "m.weight", "bias"], "scales, input scales and the marker leave the store")
        XCTAssertEqual(store.scaledWeightCount, 2)
        XCTAssertEqual(try store.tensor("l.weight").floats(), [0.5, 1, 1.5, 2])
        XCTAssertEqual(try store.tensor("m.weight").floats(), [-2, -4, -6, -8])
        XCTAssertEqual(try store.tensor("l.weight").scale, ScaleVector(values: [0.5]))
        XCTAssertNil(try store.tensor("bias").scale)
    }

    /// `.weight_scale` with one value per row, as [rows] and as [rows, 1].
    func testPerRowWeightScale() throws {
        for (index, shape) in [[2], [2, 1]].enumerated() {
            let path = try write("rows-\(index).safetensors", [
                ("l.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("l.weight_scale", "F32", shape, f32([10, -1])),
            ])
            let weight = try WeightStore(path: path).tensor("l.weight")
            XCTAssertEqual(weight.floats(), [10, 20, -3, -4], "scale shape \(shape)")
            XCTAssertEqual(weight.rows(1..<2).floats(), [-3, -4], "a row view keeps its row's scale")
        }
    }

    func testScaleWithoutItsWeightIsNamed() throws {
        let path = try write("orphan.safetensors", [
            ("l.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("gone.scale_weight", "F32", [], f32([1])),
        ])
        XCTAssertThrowsError(try WeightStore(path: path)) { error in
            XCTAssertEqual(error as? WeightsError, .unexpectedTensors(names: ["gone.scale_weight"], file: path))
            XCTAssertTrue("\(error)".contains("'gone.scale_weight'") && "\(error)".contains(path), "\(error)")
        }
    }

    func testBadScalesAreRefused() throws {
        for (index, value) in [Float.nan, .infinity, -.infinity].enumerated() {
            let path = try write("nonfinite-\(index).safetensors", [
                ("l.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("l.scale_weight", "F32", [], f32([value])),
            ])
            XCTAssertThrowsError(try WeightStore(path: path)) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("'l.scale_weight'") && message.contains("not finite") && message.contains(path), message)
            }
        }
        // Three scales for two rows.
        let path = try write("rows.safetensors", [
            ("l.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("l.weight_scale", "F32", [3], f32([1, 2, 3])),
        ])
        XCTAssertThrowsError(try WeightStore(path: path)) { error in
            XCTAssertEqual(error as? WeightsError, .wrongShape(name: "l.weight_scale", file: path, expected: [2], actual: [3]))
        }
    }

    func testTwoScalesForOneWeightAreRefused() throws {
        let path = try write("two.safetensors", [
            ("l.weight", "F8_E4M3", [2, 2], e4m3OneToFour), ("l.scale_weight", "F32", [], f32([2])),
            ("l.weight_scale", "F32", [], f32([3])),
        ])
        XCTAssertThrowsError(try WeightStore(path: path)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("two scales") && message.contains("'l.weight_scale'") && message.contains(path), message)
        }
    }

    /// E5M2: sign, 5 exponent bits of bias 15, 2 mantissa bits (torch.float8_e5m2).
    func testE5M2IsRead() throws {
        let path = try write("e5m2.safetensors", [
            ("w", "F8_E5M2", [5], [0x3c, 0x40, 0xc0, 0x38, 0x42]), ("w2.weight", "F8_E5M2", [1, 2], [0x3c, 0x42]),
            ("w2.scale_weight", "F32", [], f32([4])),
        ])
        let store = try WeightStore(path: path)
        XCTAssertEqual(try store.tensor("w").dtype, .f8e5m2)
        XCTAssertEqual(try store.tensor("w").floats(), [1, 2, -2, 0.5, 3])
        XCTAssertEqual(try store.tensor("w2.weight").floats(), [4, 12])
    }

    /// The CPU backend's linear layer on a scaled fp8 weight (the GEMM on the stored values, then
    /// each output column scaled, then the bias) against the same layer on the float weight
    /// scale * values. Tolerance 1e-6 relative L2: the products are the same floats, summed before
    /// the scale instead of after, so only float32 rounding differs (measured 0 with one scale,
    /// 1.1e-7 with one per row).
    func testLinearOnAScaledWeightEqualsTheFloatLinear() throws {
        var random = TestRandom(state: 11)
        let (rows, inFeatures, outFeatures) = (5, 40, 6)
        // Every finite E4M3 byte but the largest magnitudes, either sign (0x7f and 0xff are NaN).
        let weightBytes = (0..<(outFeatures * inFeatures)).map { _ in UInt8(truncatingIfNeeded: Int((random.next() + 1) * 60)) | (random.next() < 0 ? 0x80 : 0) }
        let scales = (0..<outFeatures).map { Float($0 + 1) * 0.37 }
        let bias = random.values(outFeatures)
        for (index, scale) in [[Float(0.125)], scales].enumerated() {
            let path = try write("linear-\(index).safetensors", [
                ("l.weight", "F8_E4M3", [outFeatures, inFeatures], weightBytes),
                ("l.weight_scale", "F32", [scale.count], f32(scale)), ("l.bias", "F32", [outFeatures], f32(bias)),
            ])
            let store = try WeightStore(path: path)
            let scaled = try Linear(weight: store.tensor("l.weight"), bias: store.tensor("l.bias"))
            let values = try store.tensor("l.weight").floats()
            XCTAssertEqual(values[inFeatures], Float(try store.tensor("l.weight").rows(1..<2).floats()[0]))
            let plain = try SafeTensorsFixture.write(["w": (values, [outFeatures, inFeatures]), "b": (bias, [outFeatures])])
            let float = try Linear(weight: XCTUnwrap(plain.tensors["w"]), bias: plain.tensors["b"])
            let backend = CPUBackend()
            let x = random.values(rows * inFeatures)
            let actual = backend.download(backend.linear(backend.upload(x, shape: [rows, inFeatures]), scaled))
            let expected = backend.download(backend.linear(backend.upload(x, shape: [rows, inFeatures]), float))
            XCTAssertLessThanOrEqual(relativeL2(actual, expected), 1e-6, "\(scale.count) scale(s)")
            // The scales must matter: the layer without them is far off.
            let unscaledValues = (0..<(outFeatures * inFeatures)).map { values[$0] / scale[scale.count == 1 ? 0 : $0 / inFeatures] }
            let unscaled = try SafeTensorsFixture.write(["w": (unscaledValues, [outFeatures, inFeatures]), "b": (bias, [outFeatures])])
            let wrong = backend.download(backend.linear(backend.upload(x, shape: [rows, inFeatures]),
                                                        try Linear(weight: XCTUnwrap(unscaled.tensors["w"]), bias: unscaled.tensors["b"])))
            XCTAssertGreaterThan(relativeL2(wrong, expected), 0.1)
        }
    }

    // MARK: llama.cpp's T5 names

    /// transformers -> llama.cpp -> transformers is the identity on every stored name of T5-XXL
    /// (gated) and of a ReLU T5; llama.cpp's names are distinct.
    func testLlamaCppNamesInvertTransformersNames() throws {
        var relu = T5Config.t5XXL
        relu.feedForwardProjection = "relu"
        relu.layerCount = 3
        for config in [T5Config.t5XXL, relu] {
            let names = T5WeightNames.table(config).entries.flatMap { $0.sources(.diffusers).map(\.name) }
            // The token table, the final norm, the position-bias table, and per block q, k, v, o, two
            // norms, the feed-forward output and one input (two when gated).
            XCTAssertEqual(names.count, 3 + (config.isGated ? 9 : 8) * config.layerCount)
            var llamaCppNames = Set<String>()
            for name in names {
                let llamaCpp = try XCTUnwrap(T5WeightNames.llamaCppName(transformers: name, gated: config.isGated), name)
                XCTAssertTrue(llamaCpp.hasPrefix("enc.blk.") || ["token_embd.weight", "enc.output_norm.weight"].contains(llamaCpp), llamaCpp)
                XCTAssertEqual(T5WeightNames.transformersName(llamaCpp: llamaCpp, gated: config.isGated), name)
                llamaCppNames.insert(llamaCpp)
            }
            XCTAssertEqual(llamaCppNames.count, names.count, "two tensors share a llama.cpp name")
        }
        XCTAssertEqual(T5WeightNames.llamaCppName(transformers: "encoder.block.3.layer.1.DenseReluDense.wi_1.weight", gated: true),
                       "enc.blk.3.ffn_up.weight")
        XCTAssertEqual(T5WeightNames.transformersName(llamaCpp: "enc.blk.3.ffn_up.weight", gated: false),
                       "encoder.block.3.layer.1.DenseReluDense.wi.weight")
        for other in ["enc.blk.01.attn_q.weight", "enc.blk.x.attn_q.weight", "enc.blk.0.attn_q.bias", "dec.blk.0.attn_q.weight",
                      "enc.blk.+1.attn_q.weight",
                      "enc.blk.0.attn_q.weight.extra", "enc.blk.0.ffn_sideways.weight"] {
            XCTAssertNil(T5WeightNames.transformersName(llamaCpp: other, gated: true), other)
        }
    }

    /// The committed T5 GGUF (llama.cpp names, t5encoder) opens as a T5 checkpoint under
    /// transformers' names and inspects as llama.cpp's layout.
    func testTinyT5GGUFOpensAsT5() throws {
        let path = Fixtures.path("quantized/tiny-t5-Q8_0.gguf")
        let checkpoint = try Checkpoint(path: path, family: .t5)
        XCTAssertTrue(checkpoint.store.contains("shared.weight"))
        XCTAssertTrue(checkpoint.store.contains("encoder.block.0.layer.0.SelfAttention.q.weight"))
        XCTAssertFalse(checkpoint.store.names.contains { $0.hasPrefix("enc.") || $0 == "token_embd.weight" })
        // Each tensor keeps its own (llama.cpp) name for messages.
        let feedForward = try checkpoint.store.tensor("encoder.block.1.layer.1.DenseReluDense.wi_1.weight")
        XCTAssertEqual([feedForward.name, feedForward.dtype.rawValue], ["enc.blk.1.ffn_up.weight", "Q8_0"])
        let report = try ModelInspector.inspect(path: path)
        let details = Dictionary(report.details, uniquingKeysWith: { first, _ in first })
        XCTAssertEqual(details["layout"], "llama.cpp names (GGUF)")
        XCTAssertEqual(details["format"], "GGUF v3 (general.architecture t5encoder)")
        XCTAssertEqual(report.missing, [])
        XCTAssertEqual(report.unexpected, [])
        let safetensors = try ModelInspector.inspect(path: Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Weights/tiny-flux-schnell/text_encoder_2").path)
        XCTAssertEqual(Dictionary(safetensors.details, uniquingKeysWith: { first, _ in first })["layout"], "transformers names")
    }
}
