import SchnellKernels
import XCTest
@testable import Schnell

/// The CPU tiers: names, switching, and one test per tier, skipped (saying so) on a machine
/// that lacks it. The kernel tests (KernelTests, ConvolutionKernelTests) run every kernel at
/// every tier the machine has through `atEveryTier`; the per-tier tests here check what
/// `--precision bf16` means at that tier: below AVX512-BF16, bf16-stored weights are widened
/// to float32 and the math is float32 (relative L2 within 1e-5 of the float32 reference on the
/// widened weights); with AVX512-BF16 the activations are rounded to bf16 too (farther than
/// 1e-5 from float32, within 1e-2).
final class CPUTierTests: XCTestCase {
    private var random = TestRandom(state: 23)
    private let f32 = Int32(SCHNELL_F32.rawValue), bf16 = Int32(SCHNELL_BF16.rawValue)
    private let precisionF32 = Int32(SCHNELL_PRECISION_F32.rawValue), precisionBF16 = Int32(SCHNELL_PRECISION_BF16.rawValue)

    func testNamesRoundTripAndSwitchingChangesTheTierInUse() throws {
        XCTAssertEqual(CPUTier.allCases.map(\.description), ["generic", "avx2", "avx512", "avx512bf16"])
        for tier in CPUTier.allCases { XCTAssertEqual(CPUTier(name: tier.description), tier) }
        XCTAssertNil(CPUTier(name: "avx3"))
        let saved = CPUTier.current
        var visited: [CPUTier] = []
        atEveryTier { tier in
            XCTAssertEqual(CPUTier.current, tier)
            XCTAssertEqual(schnell_cpu_level(), tier.rawValue)
            visited.append(tier)
        }
        XCTAssertEqual(visited.first, .generic)
        XCTAssertEqual(visited.last, CPUTier.supported)
        XCTAssertEqual(CPUTier.current, saved, "atEveryTier goes back to the tier in use")
        if let lacking = CPUTier(rawValue: CPUTier.supported.rawValue + 1) {
            XCTAssertThrowsError(try CPUTier.use(lacking))
            XCTAssertEqual(CPUTier.current, saved, "a refused tier changes nothing")
        }
        XCTAssertEqual(schnell_set_cpu_level(7), -1)
        XCTAssertEqual(schnell_set_cpu_level(-1), -1)
        XCTAssertNil(schnell_cpu_level_name(7))
        XCTAssertEqual(CPUTier.current, saved)
    }

    func testGenericTier() throws { try checkBF16Precision(at: .generic) }
    func testAVX2Tier() throws { try checkBF16Precision(at: .avx2) }
    func testAVX512Tier() throws { try checkBF16Precision(at: .avx512) }
    func testAVX512BF16Tier() throws { try checkBF16Precision(at: .avx512bf16) }

    /// A linear layer and a 3x3 convolution (Winograd-sized and not) with bf16-stored weights at
    /// both precisions, at `tier`, against the float32 reference on the widened weights.
    private func checkBF16Precision(at tier: CPUTier) throws {
        guard CPUTier.supported.rawValue >= tier.rawValue else {
            throw XCTSkip("this CPU lacks the \(tier) tier (it supports up to \(CPUTier.supported)); no kernel test ran at it")
        }
        let saved = CPUTier.current
        try CPUTier.use(tier)
        defer { try? CPUTier.use(saved) }
        let native = tier == .avx512bf16

        let (rows, k, n) = (37, 130, 70)
        let x = random.values(rows * k), weights = random.values(n * k), bias = random.values(n)
        var stored = [UInt16](repeating: 0, count: weights.count)
        schnell_f32_to_bf16(weights, &stored, weights.count)
        var reference = [Float](repeating: 0, count: rows * n), atF32 = reference, atBF16 = reference
        schnell_linear_reference(x, rows, k, stored, bf16, bias, f32, n, &reference, n)
        schnell_linear(x, rows, k, stored, bf16, bias, f32, n, &atF32, n, precisionF32)
        schnell_linear(x, rows, k, stored, bf16, bias, f32, n, &atBF16, n, precisionBF16)
        XCTAssertLessThan(relativeL2(atF32, reference), 1e-5, "linear, f32 precision, tier \(tier)")
        check(atBF16, against: reference, native: native, "linear, bf16 precision, tier \(tier)")

        for (channels, height, width, outChannels) in [(6, 6, 64, 13), (5, 7, 19, 4)] {
            var shape = schnell_conv2d_shape(in_channels: channels, height: height, width: width, out_channels: outChannels,
                                             kernel_h: 3, kernel_w: 3, stride: 1, pad_top: 1, pad_bottom: 1, pad_left: 1,
                                             pad_right: 1)
            let image = random.values(channels * height * width)
            let taps = random.values(outChannels * channels * 9), convBias = random.values(outChannels)
            var storedTaps = [UInt16](repeating: 0, count: taps.count)
            schnell_f32_to_bf16(taps, &storedTaps, taps.count)
            var expected = [Float](repeating: .nan, count: outChannels * height * width), fast = expected
            XCTAssertEqual(schnell_conv2d_reference(image, storedTaps, bf16, convBias, f32, &expected, &shape), 0)
            XCTAssertEqual(schnell_conv2d(image, storedTaps, bf16, convBias, f32, &fast, &shape, precisionBF16), 0)
            // An odd depth (5 x 9) keeps even the native tier on float32 math.
            check(fast, against: expected, native: native && channels % 2 == 0,
                  "conv \(channels)x\(height)x\(width), bf16 precision, tier \(tier)")
        }
    }

    private func check(_ actual: [Float], against reference: [Float], native: Bool, _ what: String) {
        let error = relativeL2(actual, reference)
        if native {
            XCTAssertGreaterThan(error, 1e-5, "\(what): activations are rounded to bf16")
            XCTAssertLessThan(error, 1e-2, "\(what): by bf16's rounding only")
        } else {
            XCTAssertLessThan(error, 1e-5, "\(what): float32 math on the widened weights")
        }
    }
}
