import XCTest
import SchnellKernels
@testable import Schnell

/// The native AVX512-BF16 linear (Kernels/cpu/gemm_bf16.c) against its plain reference, which
/// rounds the activations to bf16 the same way and accumulates in double. Sizes include ones
/// that are not multiples of the micro-tile (6 rows x 64 columns), the column block (256) or
/// the k block (1024), odd k and single rows. Tolerance: max |fast - reference| / max(1, |reference|)
/// <= 1e-5 (fp32 accumulation over k <= 2,049 terms of magnitude <= 1).
final class BF16GEMMTests: XCTestCase {
    var random = TestRandom(state: 7)
    let tolerance: Float = 1e-5

    struct Case {
        let x: [Float], weight: [UInt16], biasF32: [Float], biasBF16: [UInt16]
        let rows: Int, k: Int, n: Int
    }

    func makeCase(rows: Int, k: Int, n: Int) -> Case {
        let x = random.values(rows * k), weights = random.values(n * k), bias = random.values(n)
        var weight = [UInt16](repeating: 0, count: weights.count)
        schnell_f32_to_bf16(weights, &weight, weights.count)
        var biasBF16 = [UInt16](repeating: 0, count: n)
        schnell_f32_to_bf16(bias, &biasBF16, n)
        return Case(x: x, weight: weight, biasF32: bias, biasBF16: biasBF16, rows: rows, k: k, n: n)
    }

    func maxError(_ actual: [Float], _ expected: [Float]) -> Float {
        zip(actual, expected).reduce(0) { max($0, abs($1.0 - $1.1) / max(1, abs($1.1))) }
    }

    func testNativeKernelMatchesReference() throws {
        if schnell_cpu_level() < SCHNELL_CPU_AVX512_BF16 {
            var y = [Float](repeating: 3, count: 4)
            XCTAssertEqual(schnell_linear_bf16([1, 2], 1, 2, [0, 0, 0, 0], nil, 0, 2, &y, 2), -1)
            XCTAssertEqual(y, [3, 3, 3, 3], "an unsupported CPU leaves y untouched")
        }
        try requireAVX512BF16(for: "the native bf16 linear")
        // Rows below 6 take the unpacked few-rows path; 6 and more the packed micro-kernel.
        let sizes = [(1, 7, 5), (1, 3, 300), (2, 1, 17), (3, 1031, 70), (5, 33, 65), (6, 64, 64), (7, 128, 129),
                     (13, 511, 256), (67, 301, 133), (97, 1031, 300), (40, 1024, 513), (12, 2049, 64)]
        for (rows, k, n) in sizes {
            let c = makeCase(rows: rows, k: k, n: n)
            let stride = n + 3
            for (label, withBias) in [("no bias", 0), ("f32 bias", 1), ("bf16 bias", 2)] {
                var fast = [Float](repeating: 42, count: rows * stride)
                var reference = fast
                c.biasF32.withUnsafeBytes { f32 in
                    c.biasBF16.withUnsafeBytes { bf16 in
                        let bias: UnsafeRawPointer? = withBias == 0 ? nil : (withBias == 1 ? f32.baseAddress : bf16.baseAddress)
                        let dtype: Int32 = withBias == 2 ? 2 : 0
                        XCTAssertEqual(schnell_linear_bf16(c.x, rows, k, c.weight, bias, dtype, n, &fast, stride), 0)
                        schnell_linear_bf16_reference(c.x, rows, k, c.weight, bias, dtype, n, &reference, stride)
                    }
                }
                let error = maxError(fast, reference)
                XCTAssertLessThanOrEqual(error, tolerance, "\(rows)x\(k)x\(n), \(label): max error \(error)")
                for r in 0..<rows {
                    XCTAssertEqual(Array(fast[(r * stride + n)..<((r + 1) * stride)]), [42, 42, 42],
                                   "\(rows)x\(k)x\(n): columns past n are left alone")
                }
            }
        }
    }

    func testLinearTakesBF16PathOnlyAtTheBF16Precision() throws {
        try requireAVX512BF16(for: "the bf16 precision of schnell_linear")
        let (rows, k, n) = (37, 515, 70)
        let c = makeCase(rows: rows, k: k, n: n)
        var bf16Reference = [Float](repeating: 0, count: rows * n)
        var f32Reference = bf16Reference
        schnell_linear_bf16_reference(c.x, rows, k, c.weight, c.biasF32, 0, n, &bf16Reference, n)
        schnell_linear_reference(c.x, rows, k, c.weight, 2, c.biasF32, 0, n, &f32Reference, n)
        // Rounding the activations to bf16 moves results by far more than the tolerance.
        XCTAssertGreaterThan(maxError(bf16Reference, f32Reference), 1e-4)

        var y = [Float](repeating: 0, count: rows * n)
        schnell_linear(c.x, rows, k, c.weight, 2, c.biasF32, 0, n, &y, n, Int32(SCHNELL_PRECISION_BF16.rawValue))
        XCTAssertLessThanOrEqual(maxError(y, bf16Reference), tolerance, "bf16 precision")
        schnell_linear(c.x, rows, k, c.weight, 2, c.biasF32, 0, n, &y, n, Int32(SCHNELL_PRECISION_F32.rawValue))
        // The float32 path (gemm_f32.c) sums each output's 515 products in one float32 chain: its
        // error walks to ~3e-6 and reaches 1e-5 on the worst of these 2,590 outputs (sums of
        // |x w| ~ 130), against the reference's double accumulation.
        XCTAssertLessThanOrEqual(maxError(y, f32Reference), 2e-5, "float32 precision: the float32 path")
    }
}
