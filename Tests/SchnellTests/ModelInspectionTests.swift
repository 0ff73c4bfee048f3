import Foundation
import XCTest
@testable import Schnell

/// `schnell inspect`'s reader (Sources/Schnell/Weights/ModelInspection.swift) on damaged
/// checkpoints: what loading would refuse is listed, and nothing traps.
final class ModelInspectionTests: XCTestCase {
    /// A scalar where the VAE's first decoder convolution should be is listed with both shapes.
    func testRankZeroTensorIsListedNotTrapped() throws {
        let vae = try DamagedCopy.folder(Fixtures.path("vae/tiny/vae"), for: self)
        try DamagedCopy.editHeader(vae.appendingPathComponent("diffusion_pytorch_model.safetensors")) { header, data in
            header["decoder.conv_in.weight"] = ["dtype": "F32", "shape": [Int](), "data_offsets": [data.count, data.count + 4]]
            data.append(Data(count: 4))
        }
        let report = try ModelInspector.inspect(path: vae.path)
        XCTAssertEqual(report.missing.count, 1, "\(report.missing)")
        XCTAssertTrue(report.missing.first?.hasPrefix("decoder.conv_in.weight (shape [], expected [") == true, "\(report.missing)")
        XCTAssertThrowsError(try AutoencoderKL.load(from: vae.path, backend: CPUBackend())) { error in
            guard case .wrongShape("decoder.conv_in.weight", _, _, [])? = error as? WeightsError else {
                return XCTFail("expected wrongShape of decoder.conv_in.weight, got \(error)")
            }
        }
    }
}
