import XCTest
@testable import Schnell

/// CLIPTextModel against transformers' CLIPTextModel (float32 forward on the same weights,
/// rounded to their storage dtype first). Tolerance: relative L2 error 1e-4 per output.
final class CLIPTextModelTests: XCTestCase {
    let backend = CPUBackend()
    static let tolerance = 1e-4

    /// quick_gelu, eos_token_id 2 (pooled at the largest id), float32 weights, one file.
    func testQuickGeluLegacyEndTokenFolder() throws {
        try checkParity(fixture: "clip_quick_gelu", model: CLIPTextModel.load(
            path: TextEncoderFixtures.path("clip_quick_gelu", "text_encoder"), backend: backend))
    }

    /// gelu, eos_token_id 500 (pooled at its first occurrence), bf16 weights in three shards.
    func testGeluRealEndTokenShardedBF16Folder() throws {
        let model = try CLIPTextModel.load(path: TextEncoderFixtures.path("clip_gelu_bf16"), backend: backend)
        XCTAssertEqual(model.tokenEmbedding.dtype, .bf16)
        try checkParity(fixture: "clip_gelu_bf16", model: model)
    }

    /// Single files with `text_model.` names; tiny widths need the config (heads cannot be inferred).
    func testSingleFiles() throws {
        for fixture in ["clip_quick_gelu", "clip_gelu_bf16"] {
            let config = try CLIPTextConfig.read(path: TextEncoderFixtures.path(fixture, "text_encoder", "config.json"))
            let model = try CLIPTextModel.load(path: TextEncoderFixtures.path(fixture, "clip_l.safetensors"),
                                               config: config, backend: backend)
            try checkParity(fixture: fixture, model: model)
        }
    }

    func testPoolingRuleDiffersBetweenFixtures() throws {
        // The fixtures are built so the two rules pick different tokens; each model must use its own.
        let ids = try TextEncoderFixtures.inputIds("clip_gelu_bf16")
        let model = try CLIPTextModel.load(path: TextEncoderFixtures.path("clip_gelu_bf16"), backend: backend)
        XCTAssertEqual(model.pooledPosition(ids), ids.firstIndex(of: 500))
        XCTAssertNotEqual(model.pooledPosition(ids), ids.firstIndex(of: ids.max() ?? 0))
    }

    func testInferredConfigFromSingleFile() throws {
        let store = try WeightStore(path: TextEncoderFixtures.path("clip_quick_gelu", "clip_l.safetensors"))
        XCTAssertThrowsError(try CLIPTextConfig.inferred(from: store, prefix: "text_model.")) { error in
            XCTAssertTrue("\(error)".contains("head count"), "\(error)")
        }
        XCTAssertThrowsError(try CLIPTextModel.load(
            path: TextEncoderFixtures.path("clip_quick_gelu", "clip_l.safetensors"), backend: backend))
    }

    /// Sizes come from the shapes, heads from CLIP's 64-wide heads; the position-id buffer and
    /// a full CLIP checkpoint's projection and logit scale are skipped, anything else refused.
    func testInferredConfigRoundTrip() throws {
        let config = CLIPTextConfig(vocabularySize: 300, hiddenSize: 128, intermediateSize: 96, layerCount: 3,
                                    headCount: 2, maxPositions: 40, hiddenActivation: "quick_gelu",
                                    layerNormEpsilon: 1e-5, endTokenId: 2)
        let extras = [TensorSpec("text_model.embeddings.position_ids", [1, 40]), TensorSpec("logit_scale", []),
                      TensorSpec("text_projection.weight", [128, 128])]
        let path = try TextEncoderFixtures.zeroCheckpoint(
            CLIPWeightNames.table(config).expectedTensors(.diffusers, prefix: "text_model.") + extras)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let model = try CLIPTextModel.load(path: path, backend: backend)
        XCTAssertEqual(model.config, config)
        XCTAssertEqual(try model.encode(ids: [1, 2, 299]).hidden.shape, [3, 128])

        let stray = try TextEncoderFixtures.zeroCheckpoint(
            CLIPWeightNames.table(config).expectedTensors(.diffusers) + [TensorSpec("vision_model.post_layernorm.weight", [8])])
        defer { try? FileManager.default.removeItem(atPath: stray) }
        XCTAssertThrowsError(try CLIPTextModel.load(path: stray, backend: backend)) { error in
            XCTAssertEqual(error as? WeightsError, .unexpectedTensors(names: ["vision_model.post_layernorm.weight"], file: stray))
        }
    }

    func testManifestOfCLIPL() throws {
        let manifest = try TextEncoderFixtures.manifest("clip_l_manifest.json")
        let specs = CLIPWeightNames.table(.clipL).expectedTensors(.diffusers, prefix: "text_model.")
        XCTAssertEqual(specs.count, manifest.count)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.shape) }), manifest)
    }

    func testRefusesWrongShapesAndStrayTensors() throws {
        let store = try WeightStore(path: TextEncoderFixtures.path("clip_quick_gelu", "text_encoder"))
        var config = try CLIPTextConfig.read(path: TextEncoderFixtures.path("clip_quick_gelu", "text_encoder", "config.json"))
        config.intermediateSize = 65
        XCTAssertThrowsError(try CLIPTextModel(weights: store, config: config, backend: backend)) { error in
            guard case let WeightsError.wrongShape(name, _, expected, actual) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "encoder.layers.0.mlp.fc1.weight")
            XCTAssertEqual(expected, [65, 32])
            XCTAssertEqual(actual, [64, 32])
        }
        config.intermediateSize = 64
        config.layerCount = 1
        XCTAssertThrowsError(try CLIPTextModel(weights: store, config: config, backend: backend)) { error in
            guard case let WeightsError.unexpectedTensors(names, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(names.contains("encoder.layers.1.mlp.fc1.weight"))
        }
        config.layerCount = 3
        XCTAssertThrowsError(try CLIPTextModel(weights: store, config: config, backend: backend)) { error in
            XCTAssertEqual(error as? WeightsError, .missingTensor(name: "encoder.layers.2.self_attn.q_proj.weight", file: store.path))
        }
    }

    func testRefusesBadIds() throws {
        let model = try CLIPTextModel.load(path: TextEncoderFixtures.path("clip_quick_gelu"), backend: backend)
        XCTAssertThrowsError(try model.encode(ids: [1, 1000])) { error in
            XCTAssertEqual(error as? TextEncoderError, .tokenOutOfRange(id: 1000, position: 1, vocabularySize: 1000))
        }
        XCTAssertThrowsError(try model.encode(ids: Array(repeating: 1, count: 78)))
        XCTAssertThrowsError(try model.encode(ids: []))
    }

    private func checkParity(fixture: String, model: CLIPTextModel, file: StaticString = #filePath, line: UInt = #line) throws {
        let ids = try TextEncoderFixtures.inputIds(fixture)
        let (hidden, pooled) = try model.encode(ids: ids)
        let expectedHidden = try TextEncoderFixtures.expected(fixture, "last_hidden_state")
        let expectedPooled = try TextEncoderFixtures.expected(fixture, "pooler_output")
        XCTAssertEqual(hidden.shape, expectedHidden.shape, file: file, line: line)
        XCTAssertEqual(pooled.shape, expectedPooled.shape, file: file, line: line)
        let hiddenError = relativeL2(backend.download(hidden), expectedHidden.floats())
        let pooledError = relativeL2(backend.download(pooled), expectedPooled.floats())
        print("\(fixture) (\(model.tokenEmbedding.file)): hidden error \(hiddenError), pooled error \(pooledError)")
        XCTAssertLessThan(hiddenError, Self.tolerance, file: file, line: line)
        XCTAssertLessThan(pooledError, Self.tolerance, file: file, line: line)
    }
}
