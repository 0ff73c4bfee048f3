import Foundation
import XCTest
@testable import Schnell

/// FLUX's VAE against diffusers 0.42.1 `AutoencoderKL` on tiny random models with FLUX's
/// structure (Tests/Fixtures/generate_vae.py), loaded from both checkpoint layouts.
/// Tolerance: relative L2 error < 1e-4 in float32, per output.
final class AutoencoderKLTests: XCTestCase {
    static let tolerance = 1e-4
    let backend = CPUBackend()

    static func fixture(_ name: String) -> String { Fixtures.path("vae/\(name)") }

    private func reference(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Self.fixture(name) + "/parity.safetensors")
    }

    private func assertMatches(_ actual: Tensor, _ expected: WeightTensor, _ what: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        let error = relativeL2(backend.download(actual), expected.floats())
        XCTAssertLessThan(error, Self.tolerance, "\(what): relative L2 error \(error)", file: file, line: line)
        print("\(what): relative L2 error \(error)")
    }

    private func checkParity(_ name: String, model: AutoencoderKL, layout: String) throws {
        let golden = try reference(name)
        guard let latents = golden.tensors["latents"], let decoded = golden.tensors["decoded"],
              let image = golden.tensors["image"], let mean = golden.tensors["encoded_mean"],
              let logVariance = golden.tensors["encoded_logvar"] else {
            return XCTFail("\(name): parity file lacks a tensor")
        }
        let output = try model.decode(backend.upload(latents))
        assertMatches(output, decoded, "\(name) \(layout) decode")
        let encoded = try model.encode(backend.upload(image))
        assertMatches(encoded.mean, mean, "\(name) \(layout) encode mean")
        assertMatches(encoded.logVariance, logVariance, "\(name) \(layout) encode log-variance")
        assertMatches(try model.encodeMean(backend.upload(image)), mean, "\(name) \(layout) encodeMean")
    }

    func testDiffusersLayoutMatchesDiffusers() throws {
        for name in ["tiny", "tiny-bf16"] {
            let model = try AutoencoderKL.load(from: Self.fixture(name) + "/vae", backend: backend)
            XCTAssertEqual(model.config.latentChannels, 16)
            XCTAssertEqual(model.config.scalingFactor, 0.3611)
            try checkParity(name, model: model, layout: "diffusers")
        }
    }

    /// A pipeline folder is accepted too: its `vae/` subfolder is used.
    func testPipelineFolderFindsItsVAE() throws {
        let model = try AutoencoderKL.load(from: Self.fixture("tiny"), backend: backend)
        XCTAssertEqual(model.config.blockOutChannels, [8, 16, 16, 16])
        try checkParity("tiny", model: model, layout: "pipeline folder")
    }

    func testOriginalSingleFileMatchesDiffusers() throws {
        for name in ["tiny", "tiny-bf16"] {
            let config = try AutoencoderConfig(contentsOf: Self.fixture(name) + "/vae/config.json")
            let model = try AutoencoderKL.load(from: Self.fixture(name) + "/ae.safetensors", config: config, backend: backend)
            try checkParity(name, model: model, layout: "ae.safetensors")
        }
    }

    /// The real FLUX.1 VAE's names and shapes (manifest written by generate_vae.py from diffusers'
    /// model and checked against diffusers' own single-file conversion) load in both layouts with
    /// FLUX.1's config. The files are sparse: headers with zero-filled data that takes no disk.
    func testRealFluxNamesAndShapesLoadInBothLayouts() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("manifest-flux1.json")))
        let manifest = try JSONDecoder().decode([String: [String: [Int]]].self, from: data)
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("schnell-vae-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for layout in ["diffusers", "original"] {
            let tensors = try XCTUnwrap(manifest[layout])
            XCTAssertEqual(tensors.count, 244, "FLUX.1's ae.safetensors holds 244 tensors")
            let table = VAEWeightNames.table(.flux1).expectedTensors(try XCTUnwrap(CheckpointLayout(rawValue: layout)))
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: table.map { ($0.name, $0.shape) }), tensors, "\(layout) names")
            let file = folder.appendingPathComponent("\(layout).safetensors").path
            try writeSparseBFloat16File(tensors, to: file)
            let model = try AutoencoderKL.load(from: file, backend: backend)
            XCTAssertEqual(model.config, .flux1)
            XCTAssertEqual(model.decoder.mid.attention?.qkv.outFeatures, 3 * 512)
            XCTAssertEqual(model.decoder.upBlocks[0].resnets.count, 3)
            XCTAssertEqual(model.encoder.downBlocks[0].downsample?.padding,
                           Conv2d.Padding(top: 0, bottom: 1, left: 0, right: 1))
        }
    }

    func testOriginalNamesFollowTheReversedUpBlocks() {
        let table = VAEWeightNames.table(.flux1)
        let pairs = [("decoder.up.0.resnet.2.conv1.weight", "decoder.up_blocks.0.resnets.2.conv1.weight",
                      "decoder.up.3.block.2.conv1.weight"),
                     ("decoder.up.2.upsample.bias", "decoder.up_blocks.2.upsamplers.0.conv.bias",
                      "decoder.up.1.upsample.conv.bias"),
                     ("encoder.down.1.resnet.0.shortcut.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                      "encoder.down.1.block.0.nin_shortcut.weight"),
                     ("encoder.down.0.downsample.weight", "encoder.down_blocks.0.downsamplers.0.conv.weight",
                      "encoder.down.0.downsample.conv.weight"),
                     ("decoder.mid.attention.out.weight", "decoder.mid_block.attentions.0.to_out.0.weight",
                      "decoder.mid.attn_1.proj_out.weight"),
                     ("decoder.mid.second.norm2.bias", "decoder.mid_block.resnets.1.norm2.bias",
                      "decoder.mid.block_2.norm2.bias"),
                     ("encoder.norm_out.weight", "encoder.conv_norm_out.weight", "encoder.norm_out.weight")]
        for (engine, diffusers, original) in pairs {
            XCTAssertEqual(table.checkpointName(of: engine, layout: .diffusers), diffusers)
            XCTAssertEqual(table.checkpointName(of: engine, layout: .original), original)
        }
        // The original file stores the attention projections as 1x1 convolutions.
        let original = Dictionary(uniqueKeysWithValues: table.expectedTensors(.original).map { ($0.name, $0.shape) })
        XCTAssertEqual(original["decoder.mid.attn_1.q.weight"], [512, 512, 1, 1])
        XCTAssertEqual(original["decoder.mid.attn_1.q.bias"], [512])
        let diffusers = Dictionary(uniqueKeysWithValues: table.expectedTensors(.diffusers).map { ($0.name, $0.shape) })
        XCTAssertEqual(diffusers["decoder.mid_block.attentions.0.to_q.weight"], [512, 512])
    }

    func testLatentScalingRoundTrips() throws {
        let model = try AutoencoderKL.load(from: Self.fixture("tiny") + "/vae", backend: backend)
        let values = (0..<32).map { Float($0) / 7 - 2 }
        let latents = backend.upload(values, shape: [16, 1, 2])
        let unscaled = model.unscaledLatents(latents)
        XCTAssertEqual(backend.download(unscaled)[5], values[5] / 0.3611 + 0.1159, accuracy: 1e-5)
        let back = model.scaledLatents(unscaled)
        XCTAssertLessThan(relativeL2(backend.download(back), values), 1e-6)
    }

    func testGroupsMustDivideEveryWidth() {
        var config = AutoencoderConfig.flux1
        config.normGroups = 3
        XCTAssertThrowsError(try config.validate(file: "vae/config.json")) { error in
            XCTAssertEqual(error as? WeightsError, .invalidConfig(
                file: "vae/config.json", reason: "block width 128 is not divisible by norm_num_groups 3"))
        }
    }

    func testWrongShapesMissingAndUnexpectedTensorsAreRefused() throws {
        let aeFile = Self.fixture("tiny") + "/ae.safetensors"
        let tiny = try AutoencoderConfig(contentsOf: Self.fixture("tiny") + "/vae/config.json")

        var wider = tiny
        wider.blockOutChannels = [8, 16, 16, 24]
        XCTAssertThrowsError(try AutoencoderKL.load(from: aeFile, config: wider, backend: backend)) { error in
            guard case let .wrongShape(name, file, _, _)? = error as? WeightsError else {
                return XCTFail("expected wrongShape, got \(error)")
            }
            XCTAssertEqual(name, "encoder.down.3.block.0.conv1.weight", "the first layer whose width changes")
            XCTAssertEqual(file, aeFile)
        }

        var deeper = tiny
        deeper.layersPerBlock = 2
        XCTAssertThrowsError(try AutoencoderKL.load(from: aeFile, config: deeper, backend: backend)) { error in
            XCTAssertEqual(error as? WeightsError,
                           .missingTensor(name: "encoder.down.0.block.1.norm1.weight", file: aeFile))
        }

        var withoutAttention = tiny
        withoutAttention.midBlockAttention = false
        XCTAssertThrowsError(try AutoencoderKL.load(from: aeFile, config: withoutAttention, backend: backend)) { error in
            guard case let .unexpectedTensors(names, file)? = error as? WeightsError else {
                return XCTFail("expected unexpectedTensors, got \(error)")
            }
            XCTAssertEqual(names.count, 20, "norm, q, k, v, proj_out weights and biases, in encoder and decoder")
            XCTAssertTrue(names.contains("decoder.mid.attn_1.q.weight"))
            XCTAssertEqual(file, aeFile)
        }

        XCTAssertThrowsError(try AutoencoderKL.load(from: Self.fixture("tiny") + "/parity.safetensors", backend: backend)) { error in
            guard case .unrecognisedModel? = error as? WeightsError else {
                return XCTFail("expected unrecognisedModel, got \(error)")
            }
        }
    }

    func testInputShapesAreChecked() throws {
        let model = try AutoencoderKL.load(from: Self.fixture("tiny") + "/vae", backend: backend)
        XCTAssertThrowsError(try model.decode(backend.upload([Float](repeating: 0, count: 96), shape: [4, 6, 4])))
        XCTAssertThrowsError(try model.encodeMean(backend.upload([Float](repeating: 0, count: 960), shape: [3, 20, 16])))
    }
}

/// A safetensors file with the given bfloat16 tensors, all zero, written sparsely.
private func writeSparseBFloat16File(_ tensors: [String: [Int]], to path: String) throws {
    var header: [String: Any] = [:]
    var offset = 0
    for (name, shape) in tensors.sorted(by: { $0.key < $1.key }) {
        let bytes = shape.reduce(2, *)
        header[name] = ["dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]]
        offset += bytes
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
    var length = UInt64(json.count).littleEndian
    var contents = Data(bytes: &length, count: 8)
    contents.append(json)
    guard FileManager.default.createFile(atPath: path, contents: contents) else {
        throw CocoaError(.fileWriteUnknown)
    }
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try handle.truncate(atOffset: UInt64(contents.count + offset))
    try handle.close()
}
