import Foundation
import SchnellKernels
import XCTest
@testable import Schnell

/// T5Encoder against transformers' T5EncoderModel (float32 forward on the same weights, rounded
/// to their storage dtype first). Tolerance: relative L2 error 1e-4.
final class T5EncoderTests: XCTestCase {
    let backend = CPUBackend()
    static let tolerance = 1e-4

    /// gated-gelu, 32 buckets / distance 128 (T5-XXL's), float32 weights in three shards, 64 ids.
    func testGatedGeluShardedFolder() throws {
        try checkParity(fixture: "t5_gated_gelu", model: T5Encoder.load(
            path: TextEncoderFixtures.path("t5_gated_gelu", "text_encoder_2"), backend: backend))
    }

    /// relu, 16 buckets / distance 20, heads * d_kv 64 != d_model 32, f16 weights, 256 ids.
    func testReluF16PipelineFolder() throws {
        let model = try T5Encoder.load(path: TextEncoderFixtures.path("t5_relu_f16"), backend: backend)
        XCTAssertEqual(model.tokenEmbedding.dtype, .f16)
        try checkParity(fixture: "t5_relu_f16", model: model)
    }

    /// Single files: the gated one holds both `shared.weight` and `encoder.embed_tokens.weight`,
    /// the ReLU one only `encoder.embed_tokens.weight`.
    func testSingleFiles() throws {
        let gated = try T5Encoder.load(path: TextEncoderFixtures.path("t5_gated_gelu", "t5xxl_fp16.safetensors"), backend: backend)
        XCTAssertEqual(gated.config, try T5Config.read(path: TextEncoderFixtures.path("t5_gated_gelu", "text_encoder_2", "config.json")))
        try checkParity(fixture: "t5_gated_gelu", model: gated)
        // Maximum distance and epsilon are not in the shapes: this one needs its config.
        let config = try T5Config.read(path: TextEncoderFixtures.path("t5_relu_f16", "text_encoder_2", "config.json"))
        let relu = try T5Encoder.load(path: TextEncoderFixtures.path("t5_relu_f16", "t5xxl_fp16.safetensors"),
                                      config: config, backend: backend)
        try checkParity(fixture: "t5_relu_f16", model: relu)
        let inferred = try T5Config.inferred(from: WeightStore(path: TextEncoderFixtures.path("t5_relu_f16", "t5xxl_fp16.safetensors")))
        XCTAssertEqual(inferred.headCount, 4)
        XCTAssertEqual(inferred.headSize, 16)
        XCTAssertEqual(inferred.feedForwardProjection, "relu")
        XCTAssertEqual(inferred.relativeAttentionBuckets, 16)
    }

    /// Heads from the position table, d_kv from q, gated from wi_0; the rest is T5-XXL's.
    func testInferredConfigRoundTrip() throws {
        let config = T5Config(vocabularySize: 200, modelSize: 48, headSize: 12, feedForwardSize: 40, layerCount: 3,
                              headCount: 6, relativeAttentionBuckets: 32, relativeAttentionMaxDistance: 128,
                              feedForwardProjection: "gated-gelu", layerNormEpsilon: 1e-6)
        let path = try TextEncoderFixtures.zeroCheckpoint(T5WeightNames.table(config).expectedTensors(.diffusers))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let model = try T5Encoder.load(path: path, backend: backend)
        XCTAssertEqual(model.config, config)
        XCTAssertEqual(try model.encode(ids: [0, 1, 199]).shape, [3, 48])

        let mismatched = try TextEncoderFixtures.zeroCheckpoint(
            T5WeightNames.table(config).expectedTensors(.diffusers) + [TensorSpec("encoder.embed_tokens.weight", [201, 48])])
        defer { try? FileManager.default.removeItem(atPath: mismatched) }
        XCTAssertThrowsError(try T5Encoder.load(path: mismatched, backend: backend)) { error in
            XCTAssertEqual(error as? WeightsError, .wrongShape(name: "encoder.embed_tokens.weight", file: mismatched,
                                                               expected: [200, 48], actual: [201, 48]))
        }
    }

    func testManifestOfT5XXL() throws {
        let manifest = try TextEncoderFixtures.manifest("t5_xxl_manifest.json")
        let specs = T5WeightNames.table(.t5XXL).expectedTensors(.diffusers)
        XCTAssertEqual(specs.count, manifest.count)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.shape) }), manifest)
    }

    /// Buckets for distances -600...600 as torch computes them, float32 rounding at the exact
    /// logarithmic edges (16, 32, 64 for 32 buckets / 128) included.
    func testRelativePositionBucketsMatchTorch() throws {
        struct Buckets: Decodable { let distances: [Int]; let buckets: [String: [Int32]] }
        let data = try Data(contentsOf: URL(fileURLWithPath: TextEncoderFixtures.path("t5_buckets.json")))
        let reference = try JSONDecoder().decode(Buckets.self, from: data)
        XCTAssertEqual(reference.buckets.count, 2)
        for (key, expected) in reference.buckets {
            let settings = key.split(separator: "_").compactMap { Int32($0) }
            let buckets = (reference.distances[0]...reference.distances[1]).map {
                schnell_relative_position_bucket($0, 1, settings[0], settings[1])
            }
            XCTAssertEqual(buckets, expected, key)
        }
    }

    /// The fast bias kernel against its reference loop, bf16 table, non-square.
    func testRelativePositionBiasKernelMatchesReference() {
        let heads = 5, buckets = 32, queryTokens = 37, keyTokens = 300
        var table = [UInt16](repeating: 0, count: buckets * heads)
        let values = (0..<buckets * heads).map { Float(($0 * 7919) % 211) / 50 - 2 }
        schnell_f32_to_bf16(values, &table, values.count)
        var fast = [Float](repeating: 0, count: heads * queryTokens * keyTokens)
        var reference = fast
        for bidirectional: Int32 in [1, 0] {
            schnell_relative_position_bias(table, Int32(SCHNELL_BF16.rawValue), heads, queryTokens, keyTokens,
                                           bidirectional, Int32(buckets), 128, &fast)
            schnell_relative_position_bias_reference(table, Int32(SCHNELL_BF16.rawValue), heads, queryTokens, keyTokens,
                                                     bidirectional, Int32(buckets), 128, &reference)
            XCTAssertEqual(fast, reference, "bidirectional \(bidirectional)")
        }
    }

    func testRefusesWrongShapesAndBadConfigs() throws {
        let store = try WeightStore(path: TextEncoderFixtures.path("t5_gated_gelu", "text_encoder_2"))
        var config = try T5Config.read(path: TextEncoderFixtures.path("t5_gated_gelu", "text_encoder_2", "config.json"))
        config.headCount = 8
        XCTAssertThrowsError(try T5Encoder(weights: store, config: config, backend: backend)) { error in
            guard case let WeightsError.wrongShape(name, file, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "encoder.block.0.layer.0.SelfAttention.q.weight")
            XCTAssertTrue(file.hasSuffix(".safetensors"), file)
        }
        config.headCount = 4
        config.feedForwardProjection = "relu"
        XCTAssertThrowsError(try T5Encoder(weights: store, config: config, backend: backend)) { error in
            XCTAssertEqual(error as? WeightsError,
                           .missingTensor(name: "encoder.block.0.layer.1.DenseReluDense.wi.weight", file: store.path))
        }
        config.feedForwardProjection = "gated-mish"
        XCTAssertThrowsError(try T5Encoder(weights: store, config: config, backend: backend)) { error in
            XCTAssertTrue("\(error)".contains("feed_forward_proj"), "\(error)")
        }
    }

    func testRefusesBadIds() throws {
        let model = try T5Encoder.load(path: TextEncoderFixtures.path("t5_gated_gelu"), backend: backend)
        XCTAssertThrowsError(try model.encode(ids: [5, -1])) { error in
            XCTAssertEqual(error as? TextEncoderError, .tokenOutOfRange(id: -1, position: 1, vocabularySize: 1000))
        }
    }

    private func checkParity(fixture: String, model: T5Encoder, file: StaticString = #filePath, line: UInt = #line) throws {
        let ids = try TextEncoderFixtures.inputIds(fixture)
        let hidden = try model.encode(ids: ids)
        let expected = try TextEncoderFixtures.expected(fixture, "last_hidden_state")
        XCTAssertEqual(hidden.shape, expected.shape, file: file, line: line)
        let error = relativeL2(backend.download(hidden), expected.floats())
        print("\(fixture) (\(model.tokenEmbedding.file)): hidden error \(error)")
        XCTAssertLessThan(error, Self.tolerance, file: file, line: line)
    }
}
