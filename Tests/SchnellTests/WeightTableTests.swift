import Foundation
import XCTest
@testable import Schnell

/// The resolver every loader goes through (Sources/Schnell/Weights/WeightTable.swift), on a
/// hand-made table over zero-filled files: shapes, aliases, ignored and stray tensors, and views
/// of fused and 1x1-convolution sources.
final class WeightTableTests: XCTestCase {
    /// A linear layer stored as q and k in the diffusers layout and as one fused 1x1 convolution
    /// in the original one, and a norm whose tensor may also be saved under a second name.
    let table = WeightTable(
        entries: WeightEntry.linear("proj", inFeatures: 2, diffusers: [.whole("a.q", 3), .whole("a.k", 3)],
                                    original: [.whole("a.qk", 6)], originalAxes: [1, 1])
            + [.tensor("norm", [2], "n.weight", aliases: ["n_copy.weight"])],
        ignored: ["buffer"])

    private func checkpoint(_ specs: [TensorSpec]) throws -> WeightStore {
        let path = try TextEncoderFixtures.zeroCheckpoint(specs)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return try WeightStore(path: path)
    }

    func testResolvesBothLayouts() throws {
        let diffusers = try checkpoint([
            TensorSpec("m.a.q.weight", [3, 2]), TensorSpec("m.a.q.bias", [3]), TensorSpec("m.a.k.weight", [3, 2]),
            TensorSpec("m.a.k.bias", [3]), TensorSpec("m.n.weight", [2]), TensorSpec("m.buffer", [5]),
            TensorSpec("elsewhere.x", [1]),
        ])
        XCTAssertEqual(table.problems(in: diffusers, layout: .diffusers, prefix: "m.").count, 0,
                       "ignored names and names outside the prefix are not stray")
        let joined = try table.resolve(from: diffusers, layout: .diffusers, prefix: "m.")
        let projection = try joined.linear("proj")
        XCTAssertEqual(projection.blocks.map(\.weight.name), ["m.a.q.weight", "m.a.k.weight"])
        XCTAssertEqual(projection.outFeatures, 6)
        XCTAssertEqual(try joined.tensor("norm").name, "m.n.weight")

        let original = try checkpoint([TensorSpec("a.qk.weight", [6, 2, 1, 1]), TensorSpec("a.qk.bias", [6]),
                                       TensorSpec("n_copy.weight", [2])])
        let fused = try table.resolve(from: original, layout: .original)
        let block = try XCTUnwrap(fused.linear("proj").blocks.first)
        XCTAssertEqual(block.weight.shape, [6, 2], "a 1x1 convolution viewed as a linear weight")
        XCTAssertEqual(try fused.tensor("norm").name, "n_copy.weight", "the second name serves when the first is absent")
    }

    func testListsEveryProblemAndThrowsTheFirst() throws {
        let store = try checkpoint([
            TensorSpec("a.q.weight", [3, 3]), TensorSpec("a.q.bias", [3]), TensorSpec("a.k.weight", [3, 2]),
            TensorSpec("n.weight", [2]), TensorSpec("n_copy.weight", [3]), TensorSpec("stray", [1]),
        ])
        let file = store.path
        XCTAssertEqual(table.problems(in: store, layout: .diffusers), [
            .wrongShape(name: "a.q.weight", file: file, expected: [3, 2], actual: [3, 3]),
            .missingTensor(name: "a.k.bias", file: file),
            .wrongShape(name: "n_copy.weight", file: file, expected: [2], actual: [3]),
            .unexpectedTensors(names: ["stray"], file: file),
        ])
        XCTAssertThrowsError(try table.resolve(from: store, layout: .diffusers)) { error in
            XCTAssertEqual(error as? WeightsError, .wrongShape(name: "a.q.weight", file: file, expected: [3, 2], actual: [3, 3]))
        }
    }

    func testExpectedTensorsListEachCheckpointTensorOnce() {
        XCTAssertEqual(table.expectedTensors(.original, prefix: "m."),
                       [TensorSpec("m.a.qk.weight", [6, 2, 1, 1]), TensorSpec("m.a.qk.bias", [6]), TensorSpec("m.n.weight", [2])])
        XCTAssertEqual(table.checkpointName(of: "proj.weight", layout: .diffusers), "a.q.weight")
    }
}
