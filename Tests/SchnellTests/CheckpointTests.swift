import Foundation
import XCTest
@testable import Schnell

/// The one folder resolver and family recognition every loader and `schnell inspect` use
/// (Sources/Schnell/Weights/Checkpoint.swift), on the committed fixtures.
final class CheckpointTests: XCTestCase {
    func testLocatesFilesComponentFoldersAndPipelineFolders() throws {
        let file = Fixtures.path("vae/tiny/ae.safetensors")
        XCTAssertEqual(try ModelFolder.locate(path: file, component: "vae"), ModelFolder(weightsPath: file, configPath: nil))

        let component = Fixtures.path("vae/tiny/vae")
        XCTAssertEqual(try ModelFolder.locate(path: component, component: "vae"),
                       ModelFolder(weightsPath: component, configPath: component + "/config.json"))

        let pipeline = Fixtures.path("pipeline/tiny-flux-dev")
        XCTAssertEqual(try ModelFolder.locate(path: pipeline, component: "text_encoder_2"),
                       ModelFolder(weightsPath: pipeline + "/text_encoder_2", configPath: pipeline + "/text_encoder_2/config.json"))

        let singleFiles = Fixtures.path("pipeline/tiny-flux-schnell-files")
        XCTAssertEqual(try ModelFolder.locate(path: singleFiles, component: "vae"),
                       ModelFolder(weightsPath: singleFiles, configPath: nil), "a folder without the component is read itself")

        let missing = Fixtures.path("no-such-model")
        XCTAssertThrowsError(try ModelFolder.locate(path: missing, component: "vae")) { error in
            XCTAssertEqual(error as? WeightsError, .cannotOpen(file: missing, reason: "no such file or folder"))
        }
    }

    func testRecognisesEachFamilyLayoutAndPrefix() throws {
        let cases: [(String, ModelFamily, CheckpointLayout, String)] = [
            ("transformer/tiny-schnell", .transformer, .diffusers, ""),
            ("pipeline/tiny-flux-schnell-files/flux1-tiny-schnell.safetensors", .transformer, .original, ""),
            ("pipeline/tiny-flux-schnell-files/ae.safetensors", .vae, .original, ""),
            ("vae/tiny/vae", .vae, .diffusers, ""),
            ("pipeline/tiny-flux-schnell-files/clip_l.safetensors", .clip, .diffusers, "text_model."),
            ("text_encoders/clip_quick_gelu/text_encoder", .clip, .diffusers, ""),
            ("pipeline/tiny-flux-schnell-files/t5xxl.safetensors", .t5, .diffusers, ""),
        ]
        for (path, family, layout, prefix) in cases {
            let checkpoint = try Checkpoint.recognise(path: Fixtures.path(path))
            XCTAssertEqual(checkpoint.family, family, path)
            XCTAssertEqual(checkpoint.layout, layout, path)
            XCTAssertEqual(checkpoint.prefix, prefix, path)
        }
        let golden = Fixtures.path("vae/tiny/parity.safetensors")
        XCTAssertThrowsError(try Checkpoint.recognise(path: golden)) { error in
            guard case .unrecognisedModel(golden, _)? = error as? WeightsError else { return XCTFail("\(error)") }
        }
    }

    func testRefusesAnotherFamilyNamingItsMarkers() {
        let vae = Fixtures.path("pipeline/tiny-flux-schnell-files/ae.safetensors")
        XCTAssertThrowsError(try Checkpoint(path: vae, family: .transformer)) { error in
            XCTAssertEqual(error as? WeightsError, .unrecognisedModel(
                path: vae, reason: "no FLUX transformer tensors ('img_in.weight' or 'x_embedder.weight')"))
        }
    }

    /// A transformer nested under `model.diffusion_model.` in a file that also holds other
    /// components: found under its prefix, its configuration read back from the shapes through
    /// the name table, and the other components' tensors not taken for strays.
    func testNestedTransformerIsReadUnderItsPrefix() throws {
        let config = TransformerConfig(inChannels: 8, outChannels: 8, patchSize: 1, numLayers: 1, numSingleLayers: 2,
                                       headDim: 8, heads: 3, jointAttentionDim: 16, pooledProjectionDim: 12,
                                       guidanceEmbeds: true, axesDimsRope: nil)
        let table = FluxWeightNames.table(config)
        let path = try TextEncoderFixtures.zeroCheckpoint(
            table.expectedTensors(.original, prefix: "model.diffusion_model.") + [TensorSpec("first_stage_model.decoder.conv_in.weight", [4])])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let checkpoint = try Checkpoint.recognise(path: path)
        XCTAssertEqual(checkpoint.family, .transformer)
        XCTAssertEqual(checkpoint.prefix, "model.diffusion_model.")
        XCTAssertEqual(try TransformerConfig(checkpoint: checkpoint), config)
        XCTAssertEqual(table.problems(in: checkpoint.store, layout: checkpoint.layout, prefix: checkpoint.prefix), [])
    }
}
