import XCTest
import SchnellKernels
@testable import Schnell

/// The linear on quantized blocks (Kernels/cpu/gemm_quant.c) at every CPU tier against
/// schnell_linear_quantized_reference (the same int8 math in plain loops), and against float32
/// on the dequantized weight within the error that rounding the activations to int8 allows.
///
/// Tolerances:
///   fast vs reference: max |fast - reference| / max(1, max |reference|) <= 1e-5 (normwise: with
///   the offset types' m * sum(x) terms, single outputs are small differences of large block
///   terms). Both quantize the activations to the same int8 values and compute the same integer
///   block sums; only the float sum over the (at most 64) block terms differs: fused
///   multiply-adds, a partial sum per 1,024 values of k. The worst seen is about 1e-6.
///   vs float32: per output, |quantized - float32| <= sum over blocks of (d_x / 2) * sum |w| over
///   the block (each activation moves by at most half its block's step d_x = amax / 127), plus
///   1e-4 * max(1, |float32|) for the float sums.
final class QuantizedLinearTests: XCTestCase {
    var random = TestRandom(state: 11)
    let tolerance: Float = 1e-5
    let q8_0 = Int32(SCHNELL_Q8_0.rawValue)
    /// The types with a fast path; all but Q8_0 are tested on random blocks.
    let types: [schnell_dtype] = [SCHNELL_Q8_0, SCHNELL_Q4_0, SCHNELL_Q4_1, SCHNELL_Q5_0, SCHNELL_Q5_1, SCHNELL_Q2_K,
                                  SCHNELL_Q3_K, SCHNELL_Q4_K, SCHNELL_Q5_K, SCHNELL_Q6_K]

    // (rows, k, n): single and odd row counts (below and above the 6-row micro-tiles), n not a
    // multiple of the 16- or 32-column panels or the 256-column block, k past one 1,024-value block.
    // The K types (256-value super-blocks) take the sizes whose k allows them.
    let sizes = [(1, 32, 5), (1, 96, 300), (5, 64, 17), (6, 128, 33), (7, 256, 70), (13, 1056, 257),
                 (97, 512, 300), (40, 2048, 64), (2, 1280, 40)]

    /// Q8_0 blocks of `values` (a multiple of 32): d = amax / 127 stored as f16, q = round(x / d).
    static func quantizeQ8_0(_ values: [Float]) -> [UInt8] {
        var bytes: [UInt8] = []
        for start in stride(from: 0, to: values.count, by: 32) {
            let block = values[start..<(start + 32)]
            let d = (block.map { abs($0) }.max() ?? 0) / 127
            let inverse = d == 0 ? 0 : 1 / d
            let bits = Float16(d).bitPattern
            bytes += [UInt8(bits & 0xff), UInt8(bits >> 8)]
            bytes += block.map { UInt8(bitPattern: Int8(($0 * inverse).rounded())) }
        }
        return bytes
    }

    /// Random blocks of `dtype` with small positive f16 values where the type keeps its d (and m or
    /// dmin): bytes 0-3, the last four for Q2_K, the last two for Q3_K and Q6_K. Any other bytes are
    /// valid quants and scales.
    func randomBlocks(dtype: Int32, count: Int) -> [UInt8] {
        let blockBytes = schnell_dtype_block_bytes(dtype)
        let halfOffsets = dtype == Int32(SCHNELL_Q3_K.rawValue) || dtype == Int32(SCHNELL_Q6_K.rawValue)
            ? [blockBytes - 2] : dtype == Int32(SCHNELL_Q2_K.rawValue) ? [blockBytes - 4, blockBytes - 2] : [0, 2]
        var bytes: [UInt8] = []
        for _ in 0..<count {
            var block = (0..<blockBytes).map { _ in UInt8(truncatingIfNeeded: Int((random.next() + 1) * 128)) }
            for offset in halfOffsets {
                let bits = Float16(0.01 + abs(random.next()) * 0.05).bitPattern
                block[offset] = UInt8(bits & 0xff)
                block[offset + 1] = UInt8(bits >> 8)
            }
            bytes += block
        }
        return bytes
    }

    func weight(dtype: Int32, n: Int, k: Int) -> [UInt8] {
        if dtype == q8_0 { return Self.quantizeQ8_0(random.values(n * k)) }
        return randomBlocks(dtype: dtype, count: n * k / schnell_dtype_block_values(dtype))
    }

    func maxError(_ actual: [Float], _ expected: [Float]) -> Float {
        let scale = max(1, expected.reduce(0) { max($0, abs($1)) })
        return zip(actual, expected).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
    }

    func testFastKernelsMatchTheReferenceAtEveryTier() {
        atEveryTier { tier in
            for dtype in types.map({ Int32($0.rawValue) }) {
                for (rows, k, n) in sizes where k % schnell_dtype_block_values(dtype) == 0 {
                    let x = random.values(rows * k).map { $0 * 3 }, bias = random.values(n)
                    let w = weight(dtype: dtype, n: n, k: k)
                    let stride = n + 3
                    for withBias in [false, true] {
                        var fast = [Float](repeating: 42, count: rows * stride)
                        var reference = fast
                        let label = "\(tier), dtype \(dtype), \(rows)x\(k)x\(n)\(withBias ? ", bias" : "")"
                        XCTAssertEqual(schnell_linear_quantized(x, rows, k, w, dtype, withBias ? bias : nil, 0, n,
                                                                &fast, stride), 0, label)
                        schnell_linear_quantized_reference(x, rows, k, w, dtype, withBias ? bias : nil, 0, n,
                                                           &reference, stride)
                        let error = maxError(fast, reference)
                        XCTAssertLessThanOrEqual(error, tolerance, "\(label): max error \(error)")
                        for r in 0..<rows {
                            XCTAssertEqual(Array(fast[(r * stride + n)..<((r + 1) * stride)]), [42, 42, 42],
                                           "\(label): columns past n are left alone")
                        }
                    }
                }
            }
        }
    }

    func testQ8_0IsWithinActivationRoundingOfFloat32() {
        atEveryTier { tier in
            for (rows, k, n) in sizes {
                let x = random.values(rows * k), bias = random.values(n)
                let w = Self.quantizeQ8_0(random.values(n * k))
                // The weight as float32: d * q per block.
                var dequantized = [Float](repeating: 0, count: n * k)
                for block in 0..<(n * k / 32) {
                    let d = Float(Float16(bitPattern: UInt16(w[34 * block]) | UInt16(w[34 * block + 1]) << 8))
                    for i in 0..<32 { dequantized[32 * block + i] = d * Float(Int8(bitPattern: w[34 * block + 2 + i])) }
                }
                var quantized = [Float](repeating: 0, count: rows * n), float32 = quantized
                XCTAssertEqual(schnell_linear_quantized(x, rows, k, w, q8_0, bias, 0, n, &quantized, n), 0)
                schnell_linear_reference(x, rows, k, dequantized, 0, bias, 0, n, &float32, n)
                // Per block: half the activation step, and the weight's sum of magnitudes.
                let blocks = k / 32
                let halfSteps = (0..<(rows * blocks)).map { x[(32 * $0)..<(32 * $0 + 32)].map { abs($0) }.max()! / 254 }
                let weightSums = (0..<(n * blocks)).map { dequantized[(32 * $0)..<(32 * $0 + 32)].reduce(0) { $0 + abs($1) } }
                for r in 0..<rows {
                    for j in 0..<n {
                        var bound: Float = 0
                        for block in 0..<blocks { bound += halfSteps[r * blocks + block] * weightSums[j * blocks + block] }
                        let expected = float32[r * n + j]
                        bound += 1e-4 * max(1, abs(expected))
                        XCTAssertLessThanOrEqual(abs(quantized[r * n + j] - expected), bound,
                                                 "\(tier), \(rows)x\(k)x\(n), row \(r) column \(j)")
                    }
                }
            }
        }
    }

    func testLinearSendsBlockWeightsToTheQuantizedKernel() {
        let (rows, k, n) = (9, 256, 40)
        let x = random.values(rows * k), bias = random.values(n)
        let w = Self.quantizeQ8_0(random.values(n * k))
        var viaLinear = [Float](repeating: 0, count: rows * n), direct = viaLinear
        schnell_linear(x, rows, k, w, q8_0, bias, 0, n, &viaLinear, n, Int32(SCHNELL_PRECISION_F32.rawValue))
        XCTAssertEqual(schnell_linear_quantized(x, rows, k, w, q8_0, bias, 0, n, &direct, n), 0)
        XCTAssertEqual(viaLinear, direct)
    }

    func testFloatTypesAndPartialBlocksAreLeftToTheFallback() {
        let k = 256
        let weight = [UInt8](repeating: 0, count: 210)  // one Q6_K row
        var y: [Float] = [7]
        for dtype in [SCHNELL_F32, SCHNELL_BF16] {
            XCTAssertEqual(schnell_linear_quantized(random.values(k), 1, k, weight, Int32(dtype.rawValue), nil, 0, 1,
                                                    &y, 1), -1, "dtype \(dtype.rawValue)")
        }
        XCTAssertEqual(y, [7], "y is untouched")
        XCTAssertEqual(schnell_linear_quantized(random.values(48), 1, 48, weight, q8_0, nil, 0, 1, &y, 1), -1,
                       "k must be whole blocks")
        XCTAssertEqual(schnell_linear_quantized(random.values(k / 2), 1, k / 2, weight, Int32(SCHNELL_Q4_K.rawValue), nil,
                                                0, 1, &y, 1), -1, "k must be whole super-blocks")
    }
}
