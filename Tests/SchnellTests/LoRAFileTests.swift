import Foundation
import XCTest
@testable import Schnell

/// LoRA files read against the bundled tiny model (inner 128, MLP 512, 1 double and 2 single
/// blocks, CLIP 16 wide with 2 layers): the fixtures of generate_lora.py (each loaded by
/// diffusers' converters when made) and files written here. Values are compared exactly: the
/// deltas hold the file's numbers converted to float32.
final class LoRAFileTests: XCTestCase {
    static let model = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Weights/tiny-flux-schnell")
    var transformer: TransformerConfig!
    var clip: CLIPTextConfig!
    var folder: URL!

    override func setUpWithError() throws {
        transformer = try TransformerConfig(contentsOf: Self.model.appendingPathComponent("transformer/config.json").path)
        clip = try CLIPTextConfig.read(path: Self.model.appendingPathComponent("text_encoder/config.json").path)
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-lora-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    func load(_ path: String, skipUnknown: Bool = false) throws -> LoRAAdapter {
        try LoRAAdapter.load(path: path, transformer: transformer, clip: clip, skipUnknown: skipUnknown)
    }

    func fixture(_ name: String) -> String { Fixtures.path("lora/\(name).safetensors") }

    func values(_ path: String, _ key: String) throws -> [Float] {
        try XCTUnwrap(SafeTensorsFile(path: path).tensors[key], "\(key) in \(path)").floats()
    }

    /// A float32 safetensors file of `tensors` (name -> shape; values 0.01 · (index + 1) with
    /// the name's length as offset, so every tensor differs) and optional metadata.
    func write(_ name: String, _ tensors: [String: [Int]], metadata: [String: String] = [:],
               values: [String: [Float]] = [:]) throws -> String {
        var header: [String: Any] = metadata.isEmpty ? [:] : ["__metadata__": metadata]
        var data: [UInt8] = []
        for (key, shape) in tensors.sorted(by: { $0.key < $1.key }) {
            let count = shape.reduce(1, *)
            let numbers = values[key] ?? (0..<count).map { Float($0 + 1 + key.count) * 0.01 }
            let bytes = numbers.withUnsafeBytes { Array($0) }
            header[key] = ["dtype": "F32", "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
            data += bytes
        }
        let json = try JSONSerialization.data(withJSONObject: header)
        var file = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        file += Array(json) + data
        let path = folder.appendingPathComponent(name + ".safetensors").path
        try Data(file).write(to: URL(fileURLWithPath: path))
        return path
    }

    func assertRefused(_ path: String, skipUnknown: Bool = false, mentioning words: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(path, skipUnknown: skipUnknown), file: file, line: line) { error in
            let message = "\(error)"
            for word in words + [path] {
                XCTAssertTrue(message.contains(word), "'\(message)' should mention '\(word)'", file: file, line: line)
            }
        }
    }

    func rows(_ deltas: [LowRankDelta]?) -> [Range<Int>] { (deltas ?? []).map(\.rows) }

    // MARK: formats

    func testPEFTFileGivesRowBlocksOfTheFusedLayers() throws {
        let path = fixture("peft")
        let adapter = try load(path)
        XCTAssertEqual(adapter.name, "peft")
        XCTAssertEqual(adapter.format, .diffusers)
        XCTAssertTrue(adapter.clipDeltas.isEmpty)
        XCTAssertTrue(adapter.skippedKeys.isEmpty)
        // 28 diffusers layers, q/k/v (+ proj_mlp) joined: 10 double-block layers, 3 per single block, 2 final.
        XCTAssertEqual(adapter.transformerDeltas.count, 10 + 2 * 3 + 2)
        XCTAssertEqual(rows(adapter.transformerDeltas["double.0.img_qkv"]), [0..<128, 128..<256, 256..<384])
        XCTAssertEqual(rows(adapter.transformerDeltas["double.0.txt_qkv"]), [0..<128, 128..<256, 256..<384])
        XCTAssertEqual(rows(adapter.transformerDeltas["single.1.linear1"]), [0..<128, 128..<256, 256..<384, 384..<896])
        XCTAssertEqual(rows(adapter.transformerDeltas["final.modulation"]), [0..<256])
        XCTAssertEqual(rows(adapter.transformerDeltas["double.0.img_mod"]), [0..<768])
        XCTAssertEqual(rows(adapter.transformerDeltas["single.0.linear2"]), [0..<128])
        // lora_alpha 8 and r 4 come only from diffusers' lora_adapter_metadata.
        for delta in adapter.transformerDeltas.values.joined() {
            XCTAssertEqual(delta.scale, 2)
            XCTAssertEqual(delta.rank, 4)
        }
        let toK = try XCTUnwrap(adapter.transformerDeltas["double.0.img_qkv"]?[1])
        XCTAssertEqual(toK.inFeatures, 128)
        XCTAssertEqual(toK.down, try values(path, "transformer.transformer_blocks.0.attn.to_k.lora_A.weight"))
        XCTAssertEqual(toK.up, try values(path, "transformer.transformer_blocks.0.attn.to_k.lora_B.weight"))
        let mlp = try XCTUnwrap(adapter.transformerDeltas["single.1.linear1"]?[3])
        XCTAssertEqual(mlp.up, try values(path, "transformer.single_transformer_blocks.1.proj_mlp.lora_B.weight"))
        XCTAssertEqual(adapter.transformerDeltas["single.0.linear2"]?[0].inFeatures, 640)

        let small = try load(fixture("peft-small"))
        XCTAssertEqual(rows(small.transformerDeltas["double.0.img_qkv"]), [0..<128, 256..<384])
        XCTAssertEqual(Set(small.transformerDeltas.values.joined().map(\.scale)), [1])
    }

    func testKohyaFileGivesWholeFusedLayersScaledByAlphaOverRank() throws {
        let path = fixture("kohya")
        let adapter = try load(path)
        XCTAssertEqual(adapter.format, .kohya)
        XCTAssertEqual(adapter.transformerDeltas.count, 10 + 2 * 2)
        let qkv = try XCTUnwrap(adapter.transformerDeltas["double.0.img_qkv"])
        XCTAssertEqual(rows(qkv), [0..<384])
        XCTAssertEqual(qkv[0].scale, 2.0 / 4)
        XCTAssertEqual(qkv[0].down, try values(path, "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"))
        XCTAssertEqual(qkv[0].up, try values(path, "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"))
        XCTAssertEqual(adapter.transformerDeltas["double.0.txt_mod"]?[0].scale, 2.0 / 4)
        XCTAssertEqual(adapter.transformerDeltas["double.0.txt_mlp_out"]?[0].inFeatures, 512)
        XCTAssertEqual(rows(adapter.transformerDeltas["single.1.mod"]), [0..<384])
        XCTAssertEqual(adapter.transformerDeltas["single.1.mod"]?[0].scale, 8.0 / 4)
    }

    func testKohyaTextEncoderFile() throws {
        let path = fixture("kohya-te")
        let adapter = try load(path)
        XCTAssertEqual(adapter.format, .kohya)
        XCTAssertTrue(adapter.transformerDeltas.isEmpty)
        XCTAssertEqual(Set(adapter.clipDeltas.keys), ["layers.0.qkv", "layers.0.out", "layers.0.fc1", "layers.0.fc2",
                                                       "layers.1.qkv", "layers.1.out", "layers.1.fc1", "layers.1.fc2"])
        let qkv = try XCTUnwrap(adapter.clipDeltas["layers.1.qkv"])
        // q, k, v with alphas 1, 4, 2 over rank 2.
        XCTAssertEqual(rows(qkv), [0..<16, 16..<32, 32..<48])
        XCTAssertEqual(qkv.map(\.scale), [0.5, 2, 1])
        XCTAssertEqual(adapter.clipDeltas["layers.0.fc1"]?[0].scale, 1.5)
        XCTAssertEqual(qkv[0].up, try values(path, "lora_te1_text_model_encoder_layers_1_self_attn_q_proj.lora_up.weight"))
        XCTAssertEqual(adapter.clipDeltas["layers.0.fc2"]?[0].inFeatures, 32)
    }

    func testXLabsFileUpdatesTheAttentionRowsOfLinear1() throws {
        let path = fixture("xlabs")
        let adapter = try load(path)
        XCTAssertEqual(adapter.format, .xlabs)
        XCTAssertEqual(Set(adapter.transformerDeltas.keys), ["double.0.img_qkv", "double.0.txt_qkv", "double.0.img_proj",
                                                              "double.0.txt_proj", "single.0.linear1", "single.1.linear1",
                                                              "single.0.linear2", "single.1.linear2"])
        XCTAssertEqual(rows(adapter.transformerDeltas["single.1.linear1"]), [0..<384])
        XCTAssertEqual(adapter.transformerDeltas["single.1.linear2"]?[0].inFeatures, 640)
        XCTAssertEqual(Set(adapter.transformerDeltas.values.joined().map(\.scale)), [1])
        XCTAssertEqual(adapter.transformerDeltas["double.0.txt_qkv"]?[0].up,
                       try values(path, "double_blocks.0.processor.qkv_lora2.up.weight"))
        XCTAssertEqual(adapter.transformerDeltas["double.0.img_proj"]?[0].down,
                       try values(path, "double_blocks.0.processor.proj_lora1.down.weight"))
    }

    /// BFL names, with and without `diffusion_model.`: the original final layer stores
    /// (shift, scale), the engine (scale, shift), so its update arrives in two swapped halves.
    func testBFLFileSplitsTheFinalModulationIntoSwappedHalves() throws {
        let path = try write("bfl", [
            "diffusion_model.final_layer.adaLN_modulation.1.lora_A.weight": [2, 128],
            "diffusion_model.final_layer.adaLN_modulation.1.lora_B.weight": [256, 2],
            "single_blocks.0.linear1.lora_A.weight": [2, 128], "single_blocks.0.linear1.lora_B.weight": [896, 2],
            "single_blocks.0.linear1.alpha": [],
        ], values: ["single_blocks.0.linear1.alpha": [1]])
        let adapter = try load(path)
        XCTAssertEqual(adapter.format, .bfl)
        let halves = try XCTUnwrap(adapter.transformerDeltas["final.modulation"])
        XCTAssertEqual(rows(halves), [0..<128, 128..<256])
        let up = try values(path, "diffusion_model.final_layer.adaLN_modulation.1.lora_B.weight")
        XCTAssertEqual(halves[0].up, Array(up[256...]))  // engine scale <- stored rows 128..<256
        XCTAssertEqual(halves[1].up, Array(up[..<256]))
        XCTAssertEqual(rows(adapter.transformerDeltas["single.0.linear1"]), [0..<896])
        XCTAssertEqual(adapter.transformerDeltas["single.0.linear1"]?[0].scale, 0.5)
    }

    /// Keys diffusers 0.42 cannot load on the tiny model (so not in the kohya fixture): the final
    /// layer and the single blocks' linear1; and kohya's diffusers-named variant.
    func testKohyaFinalLayerLinear1AndDiffusersNames() throws {
        let path = try write("kohya-more", [
            "lora_unet_final_layer_adaLN_modulation_1.lora_down.weight": [4, 128],
            "lora_unet_final_layer_adaLN_modulation_1.lora_up.weight": [256, 4],
            "lora_unet_single_blocks_1_linear1.lora_down.weight": [4, 128],
            "lora_unet_single_blocks_1_linear1.lora_up.weight": [896, 4],
            "lora_unet_single_blocks_1_linear1.alpha": [1],
            "lora_transformer_transformer_blocks_0_attn_to_out_0.lora_down.weight": [4, 128],
            "lora_transformer_transformer_blocks_0_attn_to_out_0.lora_up.weight": [128, 4],
        ], values: ["lora_unet_single_blocks_1_linear1.alpha": [8]])
        let adapter = try load(path)
        XCTAssertEqual(adapter.format, .kohya)
        XCTAssertEqual(rows(adapter.transformerDeltas["final.modulation"]), [0..<128, 128..<256])
        XCTAssertEqual(rows(adapter.transformerDeltas["single.1.linear1"]), [0..<896])
        XCTAssertEqual(adapter.transformerDeltas["single.1.linear1"]?[0].scale, 2)
        XCTAssertEqual(rows(adapter.transformerDeltas["double.0.img_proj"]), [0..<128])
    }

    func testDiffusersTextEncoderAndOlderSuffixes() throws {
        let path = try write("older", [
            "transformer_blocks.0.attn.to_v.lora.down.weight": [2, 128],
            "transformer_blocks.0.attn.to_v.lora.up.weight": [128, 2],
            "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_A.weight": [2, 16],
            "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_B.weight": [32, 2],
            "text_encoder.encoder.layers.0.self_attn.v_proj.lora_A.weight": [2, 16],
            "text_encoder.encoder.layers.0.self_attn.v_proj.lora_B.weight": [16, 2],
        ])
        let adapter = try load(path)
        XCTAssertEqual(adapter.format, .diffusers)
        XCTAssertEqual(rows(adapter.transformerDeltas["double.0.img_qkv"]), [256..<384])
        XCTAssertEqual(rows(adapter.clipDeltas["layers.1.fc1"]), [0..<32])
        XCTAssertEqual(rows(adapter.clipDeltas["layers.0.qkv"]), [32..<48])
    }

    /// Every fixture against diffusers' own reading of it (layer-deltas.safetensors): for each
    /// diffusers layer the LoRA reaches, (alpha / rank) B (A x) on a probe x equals the engine
    /// deltas' rows for that layer; and the engine has deltas on no other layer. Tolerance:
    /// relative L2 1e-5 (float32 sums in another order; the file values are exact in float32).
    func testEngineDeltasMatchDiffusersLayerByLayer() throws {
        let reference = try SafeTensorsFile(path: fixture("layer-deltas"))
        let targets = LoRATargets(transformer: transformer, clip: clip)
        for file in ["peft", "peft-small", "kohya", "kohya-te", "xlabs"] {
            let adapter = try load(fixture(file))
            var reached = Set<String>()
            for key in reference.tensors.keys.sorted() where key.hasPrefix(file + ":") {
                let module = String(key.dropFirst(file.count + 1))
                let component: LoRAComponent = module.hasPrefix("text_encoder.") ? .clip : .transformer
                var name = String(module.drop { $0 != "." }.dropFirst())
                // transformers 5 names CLIP's modules without `text_model.`.
                if component == .clip, !name.hasPrefix("text_model.") { name = "text_model." + name }
                let target = try XCTUnwrap(targets.target(component, .diffusers, name), key)
                XCTAssertEqual(target.places.count, 1, key)
                let place = target.places[0]
                reached.insert("\(component.rawValue):\(place.layer)")
                let deltas = (component == .clip ? adapter.clipDeltas : adapter.transformerDeltas)[place.layer] ?? []
                let probe = try XCTUnwrap(reference.tensors["probe_\(target.inFeatures)"], key).floats()
                var output = [Float](repeating: 0, count: place.sourceRows.count)
                for delta in deltas {
                    XCTAssertEqual(delta.inFeatures, target.inFeatures, key)
                    let projected = (0..<delta.rank).map { r in
                        (0..<delta.inFeatures).reduce(Float(0)) { $0 + delta.down[r * delta.inFeatures + $1] * probe[$1] }
                    }
                    for row in delta.rows.clamped(to: place.offset..<(place.offset + output.count)) {
                        let upRow = row - delta.rows.lowerBound
                        output[row - place.offset] += delta.scale * (0..<delta.rank).reduce(Float(0)) {
                            $0 + delta.up[upRow * delta.rank + $1] * projected[$1]
                        }
                    }
                }
                let expected = try XCTUnwrap(reference.tensors[key]).floats()
                XCTAssertLessThan(relativeL2(output, expected), 1e-5, key)
            }
            let engineLayers = Set(adapter.transformerDeltas.keys.map { "transformer:" + $0 } + adapter.clipDeltas.keys.map { "clip:" + $0 })
            XCTAssertEqual(engineLayers, reached, "\(file): engine layers with deltas vs layers diffusers reached")
        }
    }

    // MARK: what is refused

    func testUnknownKeysAreRefusedOrSkipped() throws {
        let path = try write("unknown", [
            "lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": [4, 128],
            "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": [128, 4],
            "lora_unet_double_blocks_0_img_attn_norm.lora_down.weight": [4, 128],
            "lora_unet_double_blocks_0_img_attn_norm.lora_up.weight": [128, 4],
        ])
        assertRefused(path, mentioning: ["'lora_unet_double_blocks_0_img_attn_norm.lora_down.weight'", "no layer of this model"])
        let adapter = try load(path, skipUnknown: true)
        XCTAssertEqual(adapter.skippedKeys, ["lora_unet_double_blocks_0_img_attn_norm.lora_down.weight",
                                             "lora_unet_double_blocks_0_img_attn_norm.lora_up.weight"])
        XCTAssertEqual(Array(adapter.transformerDeltas.keys), ["double.0.img_proj"])
    }

    func testALoRAForMoreBlocksOrT5OrAnotherFormatIsUnknown() throws {
        let deeper = try write("deeper", ["transformer.transformer_blocks.1.attn.to_q.lora_A.weight": [4, 128],
                                          "transformer.transformer_blocks.1.attn.to_q.lora_B.weight": [128, 4]])
        assertRefused(deeper, mentioning: ["'transformer.transformer_blocks.1.attn.to_q.lora_A.weight'", "no layer"])
        let t5 = try write("t5", ["lora_te2_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": [4, 32]])
        assertRefused(t5, mentioning: ["'lora_te2_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight'", "T5"])
        let dora = try write("dora", ["transformer.proj_out.lora_magnitude_vector": [64]])
        assertRefused(dora, mentioning: ["'transformer.proj_out.lora_magnitude_vector'", "not a LoRA down, up or alpha"])
        let empty = try write("empty", ["lora_te2_x.alpha": [1]])
        assertRefused(empty, skipUnknown: true, mentioning: ["no LoRA pair"])
    }

    func testMissingHalvesAndStrayAlphas() throws {
        let noUp = try write("no-up", ["transformer.proj_out.lora_A.weight": [4, 128]])
        assertRefused(noUp, mentioning: ["'transformer.proj_out.lora_A.weight'", "no matching up"])
        let noDown = try write("no-down", ["lora_unet_double_blocks_0_img_mlp_0.lora_up.weight": [512, 4],
                                           "lora_unet_double_blocks_0_img_mlp_0.alpha": [1]])
        assertRefused(noDown, mentioning: ["'lora_unet_double_blocks_0_img_mlp_0.lora_up.weight'", "no matching down"])
        let onlyAlpha = try write("only-alpha", ["lora_unet_double_blocks_0_img_mlp_0.alpha": [1]])
        assertRefused(onlyAlpha, mentioning: ["'lora_unet_double_blocks_0_img_mlp_0.alpha'", "no matching down"])
    }

    func testRankShapeAndAlphaProblems() throws {
        let rank = try write("rank", ["transformer.proj_out.lora_A.weight": [4, 128], "transformer.proj_out.lora_B.weight": [64, 3]])
        assertRefused(rank, mentioning: ["'transformer.proj_out.lora_B.weight'", "rank 3", "rank 4", "[64, 3]", "[4, 128]"])
        let rankZero = try write("rank0", ["transformer.proj_out.lora_A.weight": [0, 128], "transformer.proj_out.lora_B.weight": [64, 0]])
        assertRefused(rankZero, mentioning: ["'transformer.proj_out.lora_A.weight'", "rank 0"])
        let twoDowns = try write("two-downs", ["transformer.proj_out.lora_A.weight": [4, 128], "transformer.proj_out.lora.down.weight": [4, 128],
                                               "transformer.proj_out.lora_B.weight": [64, 4]])
        assertRefused(twoDowns, mentioning: ["'transformer.proj_out.lora_A.weight'", "second down", "'transformer.proj_out.lora.down.weight'"])
        let threeD = try write("3d", ["transformer.proj_out.lora_A.weight": [4, 128, 1], "transformer.proj_out.lora_B.weight": [64, 4]])
        assertRefused(threeD, mentioning: ["'transformer.proj_out.lora_A.weight'", "[4, 128, 1]", "2-D"])
        let pair = ["lora_unet_final_layer_linear.lora_down.weight": [4, 128], "lora_unet_final_layer_linear.lora_up.weight": [64, 4]]
        let vectorAlpha = try write("alpha-vector", pair.merging(["lora_unet_final_layer_linear.alpha": [2]]) { a, _ in a })
        assertRefused(vectorAlpha, mentioning: ["'lora_unet_final_layer_linear.alpha'", "one finite number"])
        let infiniteAlpha = try write("alpha-inf", pair.merging(["lora_unet_final_layer_linear.alpha": []]) { a, _ in a },
                                      values: ["lora_unet_final_layer_linear.alpha": [.infinity]])
        assertRefused(infiniteAlpha, mentioning: ["'lora_unet_final_layer_linear.alpha'", "one finite number"])
    }

    /// A LoRA trained for a wider model (here 256 wide, FLUX.1's is 3072) fails on the first
    /// pair, naming the key and both shapes.
    func testALoRAForAnotherWidthIsRefused() throws {
        let wider = try write("wider", ["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": [4, 256],
                                        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": [768, 4]])
        assertRefused(wider, mentioning: ["'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight'", "[4, 256]", "expected [4, 128]",
                                          "double_blocks.0.img_attn.qkv"])
        let tallUp = try write("tall", ["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": [4, 128],
                                        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": [768, 4]])
        assertRefused(tallUp, mentioning: ["'lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight'", "[768, 4]", "expected [384, 4]"])
        // XLabs' single-block qkv covers q | k | v only: 384 rows, not linear1's 896.
        let xlabs = try write("xlabs-rows", ["single_blocks.0.processor.qkv_lora.down.weight": [4, 128],
                                             "single_blocks.0.processor.qkv_lora.up.weight": [896, 4]])
        assertRefused(xlabs, mentioning: ["'single_blocks.0.processor.qkv_lora.up.weight'", "expected [384, 4]"])
    }

    func testTruncatedFileIsRefused() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: fixture("kohya")))
        let path = folder.appendingPathComponent("cut.safetensors").path
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: path))
        assertRefused(path, mentioning: ["truncated"])
    }

    func testOneFileOneFormatAndPEFTOptionsSchnellLacks() throws {
        let mixed = try write("mixed", ["lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": [4, 128],
                                        "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": [128, 4],
                                        "double_blocks.0.processor.proj_lora2.down.weight": [4, 128],
                                        "double_blocks.0.processor.proj_lora2.up.weight": [128, 4]])
        assertRefused(mixed, mentioning: ["'double_blocks.0.processor.proj_lora2.down.weight'", "one format"])
        let pair = ["transformer.proj_out.lora_A.weight": [4, 128], "transformer.proj_out.lora_B.weight": [64, 4]]
        let rsLoRA = try write("rslora", pair, metadata: [LoRAFileReader.adapterMetadataKey:
                                                            #"{"transformer.lora_alpha": 8, "transformer.use_rslora": true}"#])
        assertRefused(rsLoRA, mentioning: ["transformer.use_rslora"])
        let alpha = try write("alpha", pair, metadata: [LoRAFileReader.adapterMetadataKey: #"{"transformer.lora_alpha": 2}"#])
        XCTAssertEqual(try load(alpha).transformerDeltas["final.linear"]?[0].scale, 0.5)
    }
}
