import Foundation
import XCTest
@testable import Schnell

/// Counts and sizes in model configurations (Sources/Schnell/Models/ConfigLimits.swift and each
/// `*Config.swift`) are checked before anything is sized from them: a config.json of a copy of
/// the committed tiny dev pipeline with one value damaged is refused at once, naming the file
/// and the key, through `schnell inspect`'s reader, which builds the same name tables the
/// loaders build.
final class ConfigLimitsTests: XCTestCase {
    /// The pipeline copy and the error that inspecting `component` after `edit` gives.
    func inspectionError(_ component: String, _ edit: @escaping (inout [String: Any]) -> Void) throws -> (config: String, error: Error?) {
        let pipeline = try DamagedCopy.folder(Fixtures.path("pipeline/tiny-flux-dev"), for: self)
        let config = pipeline.appendingPathComponent(component).appendingPathComponent("config.json")
        try DamagedCopy.editJSON(config, edit)
        let start = Date()
        defer {
            // Refused before a table is sized from the count: well under a second even on a loaded
            // machine, where allocating 10^9 layers would take minutes or end in the OOM killer.
            XCTAssertLessThan(Date().timeIntervalSince(start), 5, "\(component) took too long to refuse")
        }
        do {
            _ = try ModelInspector.inspect(path: pipeline.appendingPathComponent(component).path)
            return (config.path, nil)
        } catch {
            return (config.path, error)
        }
    }

    func testLayerCountsOfABillionAreRefusedNamingTheFile() throws {
        let cases: [(String, String, String)] = [
            ("transformer", "num_layers", "0...1024"), ("transformer", "num_single_layers", "0...1024"),
            ("text_encoder_2", "num_layers", "1...1024"), ("text_encoder", "num_hidden_layers", "1...1024"),
            ("vae", "layers_per_block", "1...1024"),
        ]
        for (component, key, range) in cases {
            let (config, error) = try inspectionError(component) { $0[key] = 1_000_000_000 }
            XCTAssertEqual(error as? WeightsError,
                           .invalidConfig(file: config, reason: "'\(key)' is 1000000000; it must be in \(range)"), "\(component) \(key)")
        }
    }

    /// A count within the limits but not what the weights hold is refused before the table is
    /// built, naming both files and the blocks' names.
    func testLayerCountsAreCheckedAgainstTheBlocksPresent() throws {
        let cases: [(String, String, Int, String)] = [
            ("transformer", "num_layers", 2, "transformer_blocks.N"),
            ("transformer", "num_single_layers", 1, "single_transformer_blocks.N"),
            ("text_encoder_2", "num_layers", 2, "encoder.block.N"),
            ("text_encoder", "num_hidden_layers", 2, "encoder.layers.N"),
            ("vae", "layers_per_block", 1, "encoder.down_blocks.0.resnets.N"),
        ]
        for (component, key, present, blocks) in cases {
            let (config, error) = try inspectionError(component) { $0[key] = present + 1 }
            guard case let .invalidConfig(file, reason)? = error as? WeightsError else {
                XCTFail("\(component) \(key): expected invalidConfig, got \(String(describing: error))")
                continue
            }
            XCTAssertEqual(file, config)
            XCTAssertTrue(reason.hasPrefix("'\(key)' is \(present + 1) but ") && reason.hasSuffix(" holds \(present) blocks named \(blocks)"),
                          reason)
        }
        let (config, error) = try inspectionError("vae") { $0["block_out_channels"] = [8, 16, 16, 16, 16] }
        XCTAssertTrue((error as? WeightsError).map { "\($0)".hasPrefix("\(config): invalid configuration: 'block_out_channels' is 5 but ") } == true,
                      "\(String(describing: error))")
    }

    /// 2^62 heads or head width used to trap in `heads * headDim`; now each is refused by name.
    func testHugeWidthsAreRefusedNotTrapped() throws {
        let huge = 1 << 62
        let cases: [(String, String)] = [
            ("transformer", "num_attention_heads"), ("transformer", "attention_head_dim"), ("transformer", "joint_attention_dim"),
            ("text_encoder_2", "num_heads"), ("text_encoder_2", "d_kv"), ("text_encoder_2", "relative_attention_max_distance"),
            ("text_encoder", "num_attention_heads"), ("text_encoder", "vocab_size"), ("vae", "latent_channels"),
        ]
        for (component, key) in cases {
            let (config, error) = try inspectionError(component) { $0[key] = huge }
            XCTAssertEqual(error as? WeightsError,
                           .invalidConfig(file: config, reason: "'\(key)' is \(huge); it must be in 1...16777216"), "\(component) \(key)")
        }
        let (config, error) = try inspectionError("transformer") {
            $0["num_attention_heads"] = 1 << 13
            $0["attention_head_dim"] = 1 << 12
            $0["axes_dims_rope"] = [1 << 10, 1 << 10, 1 << 11]
        }
        XCTAssertEqual(error as? WeightsError, .invalidConfig(
            file: config, reason: "the hidden size num_attention_heads x attention_head_dim = 8192 x 4096 is more than 16777216"))
    }

    /// Values of the wrong kind are refused, not replaced by FLUX.1's defaults.
    func testWrongKindsAreRefusedNotDefaulted() throws {
        let cases: [(String, String, Any, String)] = [
            ("transformer", "out_channels", "64", "'out_channels' must be an integer"),
            ("transformer", "num_layers", true, "'num_layers' must be an integer"),
            ("transformer", "guidance_embeds", "yes", "'guidance_embeds' must be true or false"),
            ("transformer", "axes_dims_rope", [true, 2, 4], "'axes_dims_rope' must be a list of integers"),
            ("vae", "mid_block_add_attention", 1, "'mid_block_add_attention' is not true or false"),
        ]
        for (component, key, value, reason) in cases {
            let (config, error) = try inspectionError(component) { $0[key] = value }
            XCTAssertEqual(error as? WeightsError, .invalidConfig(file: config, reason: reason), "\(component) \(key)")
        }
    }

    /// A transformer single file whose img_in.weight has no rows used to divide by zero working
    /// out the MLP ratio (hidden width 0).
    func testZeroHiddenWidthInferredFromShapesIsRefused() throws {
        let specs = [TensorSpec("img_in.weight", [0, 64]), TensorSpec("double_blocks.0.img_attn.norm.query_norm.scale", [2]),
                     TensorSpec("txt_in.weight", [0, 8]), TensorSpec("vector_in.in_layer.weight", [0, 8]),
                     TensorSpec("final_layer.linear.weight", [64, 0]), TensorSpec("double_blocks.0.img_mlp.0.weight", [0, 0])]
        let path = try TextEncoderFixtures.zeroCheckpoint(specs)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try ModelInspector.inspect(path: path)) { error in
            XCTAssertEqual(error as? WeightsError,
                           .invalidConfig(file: path, reason: "hidden width 0 is not a positive multiple of the head width 2"))
        }
    }

    /// A single file has no config: the layer count comes from tensor names, and a name numbered
    /// 10^9 is refused by the same limit rather than sizing a table of 10^9 layers.
    func testLayerCountInferredFromNamesIsBounded() throws {
        let specs = [TensorSpec("text_model.embeddings.token_embedding.weight", [10, 64]),
                     TensorSpec("text_model.embeddings.position_embedding.weight", [4, 64]),
                     TensorSpec("text_model.encoder.layers.0.mlp.fc1.weight", [8, 64]),
                     TensorSpec("text_model.encoder.layers.999999999.mlp.fc1.weight", [1])]
        let path = try TextEncoderFixtures.zeroCheckpoint(specs)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try ModelInspector.inspect(path: path)) { error in
            XCTAssertEqual(error as? WeightsError,
                           .invalidConfig(file: path, reason: "'num_hidden_layers' is 1000000000; it must be in 1...1024"))
        }
    }
}
