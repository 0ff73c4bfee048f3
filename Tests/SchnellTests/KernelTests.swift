import XCTest
import SchnellKernels
@testable import Schnell

/// Each fast C kernel against its plain reference loop, on random inputs whose sizes include
/// ones that are not multiples of the vector width (16 floats), at every CPU tier the machine
/// supports (`atEveryTier`). Tolerances are stated per test.
final class KernelTests: XCTestCase {
    var random = TestRandom(state: 42)

    func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, _ label: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, label, file: file, line: line)
        var worst: Float = 0
        for (a, b) in zip(actual, expected) { worst = max(worst, abs(a - b) / max(1, abs(b))) }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(label) at tier \(CPUTier.current): max error \(worst)", file: file, line: line)
    }

    func testLinearMatchesReferenceForEveryDType() {
        atEveryTier { _ in
            for (rows, k, n) in [(1, 7, 5), (5, 300, 40), (17, 33, 65), (64, 256, 130), (97, 1031, 300)] {
                let x = random.values(rows * k), weights = random.values(n * k), bias = random.values(n)
                var bf16 = [UInt16](repeating: 0, count: weights.count)
                schnell_f32_to_bf16(weights, &bf16, weights.count)
                let f16 = weights.map { Float16($0).bitPattern }
                let cases: [(String, [UInt8], Int32)] = [("f32", weights.withUnsafeBytes { Array($0) }, 0),
                                                         ("bf16", bf16.withUnsafeBytes { Array($0) }, 2),
                                                         ("f16", f16.withUnsafeBytes { Array($0) }, 1)]
                for (name, bytes, dtype) in cases {
                    var fast = [Float](repeating: 0, count: rows * (n + 3))
                    var reference = fast
                    // Output rows wider than n (stride n + 3) as when blocks fill one fused output.
                    schnell_linear(x, rows, k, bytes, dtype, bias, 0, n, &fast, n + 3, Int32(SCHNELL_PRECISION_F32.rawValue))
                    schnell_linear_reference(x, rows, k, bytes, dtype, bias, 0, n, &reference, n + 3)
                    // float32 sums of k products against double ones: 1e-5 up to k = 256, 4e-5 at k = 1,031
                // (measured up to 1.9e-5 there, OpenBLAS's sgemm included).
                assertClose(fast, reference, tolerance: k > 256 ? 4e-5 : 1e-5, "linear \(name) \(rows)x\(k)x\(n)")
                }
            }
        }
    }

    func testConversionsMatchReference() {
        atEveryTier { _ in
            let values = random.values(1000).map { $0 * 300 }
            var bf16 = [UInt16](repeating: 0, count: values.count)
            schnell_f32_to_bf16(values, &bf16, values.count)
            let f16 = values.map { Float16($0).bitPattern }
            let f8: [UInt8] = (0..<256).map { UInt8($0) }
            for (dtype, bytes, count) in [(Int32(1), f16.withUnsafeBytes { Array($0) }, f16.count),
                                          (Int32(2), bf16.withUnsafeBytes { Array($0) }, bf16.count),
                                          (Int32(3), f8, f8.count)] {
                var fast = [Float](repeating: 0, count: count), reference = fast
                schnell_convert_to_f32(bytes, dtype, &fast, count)
                schnell_convert_to_f32_reference(bytes, dtype, &reference, count)
                XCTAssertEqual(fast.map(\.bitPattern), reference.map(\.bitPattern), "dtype \(dtype) must convert exactly at tier \(CPUTier.current)")
            }
            // Spot values: bf16 rounds to nearest even; e4m3 0x7e is 448, 0x01 the smallest subnormal.
            var rounded: UInt16 = 0
            schnell_f32_to_bf16([1.00390625], &rounded, 1)
            XCTAssertEqual(rounded, 0x3f80)
            var spot = [Float](repeating: 0, count: 2)
            schnell_convert_to_f32_reference([UInt8(0x7e), 0x01], 3, &spot, 2)
            XCTAssertEqual(spot, [448, 0.001953125])
        }
    }

    func testNormsMatchReference() {
        atEveryTier { _ in
            for (rows, dim) in [(1, 3), (5, 17), (33, 130)] {
                let x = random.values(rows * dim).map { $0 * 4 + 1 }
                let weight = random.values(dim), bias = random.values(dim)
                var fast = [Float](repeating: 0, count: x.count), reference = fast
                schnell_layer_norm(x, &fast, rows, dim, 1e-6, weight, bias)
                schnell_layer_norm_reference(x, &reference, rows, dim, 1e-6, weight, bias)
                assertClose(fast, reference, tolerance: 1e-5, "layer norm \(rows)x\(dim)")
                schnell_layer_norm_modulate(x, &fast, rows, dim, 1e-6, weight, bias)
                schnell_layer_norm_modulate_reference(x, &reference, rows, dim, 1e-6, weight, bias)
                assertClose(fast, reference, tolerance: 1e-5, "layer norm modulate \(rows)x\(dim)")
                schnell_rms_norm(x, &fast, rows, dim, 1e-6, weight)
                schnell_rms_norm_reference(x, &reference, rows, dim, 1e-6, weight)
                assertClose(fast, reference, tolerance: 1e-5, "rms norm \(rows)x\(dim)")
            }
        }
    }

    func testQKNormRopeMatchesReference() {
        atEveryTier { _ in
            for (tokens, heads, headDim, extra) in [(3, 1, 2, 0), (19, 3, 18, 5), (40, 2, 128, 64)] {
                let stride = heads * headDim + extra
                let x = random.values(tokens * stride), weight = random.values(headDim)
                let angles = random.values(tokens * headDim / 2).map { $0 * 10 }
                let cosTable = angles.flatMap { [cos($0), cos($0)] }, sinTable = angles.flatMap { [sin($0), sin($0)] }
                var fast = x, reference = x
                schnell_qk_norm_rope(&fast, tokens, heads, headDim, stride, weight, 1e-6, cosTable, sinTable)
                schnell_qk_norm_rope_reference(&reference, tokens, heads, headDim, stride, weight, 1e-6, cosTable, sinTable)
                assertClose(fast, reference, tolerance: 1e-5, "qk norm rope \(tokens)x\(heads)x\(headDim)")
                XCTAssertEqual(Array(fast[(heads * headDim)..<stride]), Array(x[(heads * headDim)..<stride]),
                               "columns past the heads are untouched")
            }
        }
    }

    func testAttentionMatchesReference() {
        atEveryTier { _ in
            // 300 query tokens cross the 256-row block boundary; bias and causal masks as CLIP/T5 use.
            for (lq, lk, heads, d, useBias, causal) in [(1, 1, 1, 4, false, false), (17, 23, 3, 8, true, false),
                                                        (300, 300, 2, 16, false, true), (77, 77, 4, 12, true, true)] {
                let stride = 3 * heads * d
                let qkv = random.values(max(lq, lk) * stride).map { $0 * 3 }
                let bias = useBias ? random.values(heads * lq * lk) : nil
                var fast = [Float](repeating: 0, count: lq * heads * d), reference = fast
                let kPointer = Array(qkv[(heads * d)...]), vPointer = Array(qkv[(2 * heads * d)...])
                schnell_attention(qkv, stride, kPointer, stride, vPointer, stride, &fast, heads * d,
                                  lq, lk, heads, d, 0.3, bias, causal ? 1 : 0, Int32(SCHNELL_PRECISION_F32.rawValue))
                schnell_attention_reference(qkv, stride, kPointer, stride, vPointer, stride, &reference, heads * d,
                                            lq, lk, heads, d, 0.3, bias, causal ? 1 : 0)
                assertClose(fast, reference, tolerance: 1e-5, "attention \(lq)x\(lk)x\(heads)x\(d)")
            }
        }
    }

    func testSoftmaxAndActivationsMatchReference() {
        atEveryTier { _ in
            for (rows, width) in [(1, 1), (3, 31), (9, 100)] {
                let x = random.values(rows * width).map { $0 * 12 }
                var fast = x, reference = x
                schnell_softmax(&fast, rows, width)
                schnell_softmax_reference(&reference, rows, width)
                assertClose(fast, reference, tolerance: 1e-6, "softmax \(rows)x\(width)")
                for kind in [SCHNELL_GELU_TANH, SCHNELL_GELU_ERF, SCHNELL_QUICK_GELU, SCHNELL_SILU, SCHNELL_RELU] {
                    var fast = x, reference = x
                    // Strided: only the first width - 1 columns of each row are activated.
                    schnell_activation(&fast, rows, max(width - 1, 1), width, Int32(kind.rawValue))
                    schnell_activation_reference(&reference, rows, max(width - 1, 1), width, Int32(kind.rawValue))
                    assertClose(fast, reference, tolerance: 2e-6, "activation \(kind) \(rows)x\(width)")
                    let b = random.values(rows * width)
                    var gatedFast = [Float](repeating: 0, count: rows * width), gatedReference = gatedFast
                    schnell_gated_activation(x, width, b, width, &gatedFast, rows, width, Int32(kind.rawValue))
                    schnell_gated_activation_reference(x, width, b, width, &gatedReference, rows, width, Int32(kind.rawValue))
                    assertClose(gatedFast, gatedReference, tolerance: 2e-6, "gated activation \(kind)")
                }
                let y = random.values(rows * width), gate = random.values(width)
                var addFast = x, addReference = x
                schnell_gated_add(&addFast, width, y, width, gate, rows, width)
                schnell_gated_add_reference(&addReference, width, y, width, gate, rows, width)
                assertClose(addFast, addReference, tolerance: 1e-6, "gated add \(rows)x\(width)")
            }
        }
    }

    func testParallelForCoversEveryIndexOnce() {
        final class Counter: @unchecked Sendable { var hits = [Int32](repeating: 0, count: 10_007) }
        let counter = Counter()
        schnell_set_threads(2)
        withExtendedLifetime(counter) {
            schnell_parallel_for(counter.hits.count, 3, { context, begin, end in
                let counter = Unmanaged<Counter>.fromOpaque(context!).takeUnretainedValue()
                for i in begin..<end { counter.hits[i] += 1 }
            }, Unmanaged.passUnretained(counter).toOpaque())
        }
        XCTAssertTrue(counter.hits.allSatisfy { $0 == 1 })
    }
}
