import Foundation
import XCTest
@testable import Schnell

/// The name table against the real FLUX.1 checkpoints' tensor names and shapes, from manifests
/// the generator wrote from diffusers' full-size model (built on torch's meta device) and the
/// single-file names that diffusers' own converter maps back to it.
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
}
