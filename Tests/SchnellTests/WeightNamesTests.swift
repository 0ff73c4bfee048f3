import Foundation
import XCTest
@testable import Schnell

/// The name tables. FLUX's against the real FLUX.1 checkpoints' tensor names and shapes, from
/// manifests the generator wrote from diffusers' full-size model (built on torch's meta device)
/// and the single-file names that diffusers' own converter maps back to it; every family's
/// entries against their own sources.
final class WeightNamesTests: XCTestCase {
    func manifest(_ name: String) throws -> [String: [String: [Int]]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("transformer/manifest-\(name).json")))
        return try JSONDecoder().decode([String: [String: [Int]]].self, from: data)
    }

    func testRealSchnellAndDevNamesAndShapes() throws {
        for (name, guidance) in [("flux1-schnell", false), ("flux1-dev", true)] {
            let expected = try manifest(name)
            let table = FluxWeightNames.table(.flux1(guidance: guidance))
            for layout in [CheckpointLayout.diffusers, .original] {
                let ours = Dictionary(uniqueKeysWithValues: table.expectedTensors(layout).map { ($0.name, $0.shape) })
                let theirs = expected[layout.rawValue] ?? [:]
                XCTAssertEqual(Set(ours.keys).symmetricDifference(theirs.keys), [], "\(name) \(layout) names")
                for (tensor, shape) in theirs where ours[tensor] != shape {
                    XCTFail("\(name) \(layout) \(tensor): ours \(ours[tensor] ?? []) vs real \(shape)")
                }
            }
        }
    }

    func testRealModelParameterCounts() throws {
        // FLUX.1-dev's published size is 11,901,408,320 parameters; schnell lacks the guidance
        // embedder (256 x 3072 + 3072 x 3072 weights and two 3072 biases).
        for (guidance, parameters) in [(true, 11_901_408_320), (false, 11_901_408_320 - 256 * 3072 - 3072 * 3072 - 2 * 3072)] {
            let table = FluxWeightNames.table(.flux1(guidance: guidance))
            XCTAssertEqual(table.expectedTensors(.diffusers).reduce(0) { $0 + $1.shape.reduce(1, *) }, parameters)
            XCTAssertEqual(table.expectedTensors(.original).reduce(0) { $0 + $1.shape.reduce(1, *) }, parameters)
        }
    }

    /// Engine names looked up in both layouts, fused and split sources included.
    func testLookupsInBothLayouts() {
        let table = FluxWeightNames.table(.flux1(guidance: false))
        XCTAssertEqual(table.checkpointName(of: "img_in.weight", layout: .diffusers), "x_embedder.weight")
        XCTAssertEqual(table.checkpointName(of: "img_in.weight", layout: .original), "img_in.weight")
        XCTAssertNil(table.checkpointName(of: "guidance_in.in.weight", layout: .diffusers), "schnell has no guidance embedder")
        let qkv = table.entries.first { $0.engineName == "double.3.img_qkv.weight" }
        XCTAssertEqual(qkv?.shape, [3 * 3072, 3072])
        XCTAssertEqual(qkv?.sources(.diffusers).map(\.name), ["transformer_blocks.3.attn.to_q.weight",
                                                             "transformer_blocks.3.attn.to_k.weight",
                                                             "transformer_blocks.3.attn.to_v.weight"])
        XCTAssertEqual(qkv?.sources(.original).map(\.name), ["double_blocks.3.img_attn.qkv.weight"])
        // The original final layer stores (shift, scale); the engine reads (scale, shift).
        let modulation = table.entries.first { $0.engineName == "final.modulation.bias" }
        XCTAssertEqual(modulation?.sources(.original).map(\.rows), [3072..<6144, 0..<3072])
        XCTAssertEqual(modulation?.sources(.diffusers).map(\.rows), [0..<6144])
    }

    /// Every engine tensor of every family is exactly its sources stacked: rows add up, each
    /// source's rows lie inside the stored tensor and hold as many elements per row as the
    /// engine's (so resolving can view them without copying).
    func testEveryEntryFitsItsSources() {
        let tables = [("FLUX.1-dev", FluxWeightNames.table(.flux1(guidance: true))), ("VAE", VAEWeightNames.table(.flux1)),
                      ("CLIP-L", CLIPWeightNames.table(.clipL)), ("T5-XXL", T5WeightNames.table(.t5XXL))]
        for (name, table) in tables {
            XCTAssertEqual(Set(table.entries.map(\.engineName)).count, table.entries.count, "\(name): engine names are unique")
            for entry in table.entries {
                let engineRow = entry.shape.dropFirst().reduce(1, *)
                for layout in CheckpointLayout.allCases {
                    let sources = entry.sources(layout)
                    XCTAssertEqual(sources.reduce(0) { $0 + $1.rows.count }, entry.shape[0], "\(name) \(entry.engineName) \(layout)")
                    for source in sources {
                        XCTAssertTrue(source.rows.upperBound <= source.shape[0], "\(name) \(source.name)")
                        XCTAssertEqual(source.shape.dropFirst().reduce(1, *), engineRow, "\(name) \(source.name)")
                    }
                }
            }
        }
    }

    /// CLIP and T5 single files name their tensors as transformers does; T5's token table may
    /// sit under either of its two names.
    func testTextEncodersShareNamesAcrossLayouts() {
        let clip = CLIPWeightNames.table(.clipL)
        XCTAssertEqual(clip.expectedTensors(.diffusers), clip.expectedTensors(.original))
        XCTAssertEqual(clip.checkpointName(of: "layers.11.fc2.weight", layout: .original), "encoder.layers.11.mlp.fc2.weight")
        let t5 = T5WeightNames.table(.t5XXL)
        let embedding = t5.entries.first { $0.engineName == "token_embedding" }?.sources(.diffusers).first
        XCTAssertEqual(embedding?.name, "shared.weight")
        XCTAssertEqual(embedding?.aliases, ["encoder.embed_tokens.weight"])
        XCTAssertEqual(t5.checkpointName(of: "blocks.23.input.weight", layout: .diffusers),
                       "encoder.block.23.layer.1.DenseReluDense.wi_0.weight")
    }
}
