import XCTest
import SchnellKernels

/// The bf16 attention (Kernels/cpu/attention_bf16.c) against its plain reference, which rounds
/// Q, K, V and the unnormalised softmax weights to bf16 the same way and accumulates in double.
/// Sizes cross the 96-query block, the 64-token and 64-column panels and the 1,024-token chunk
/// of V, with odd head widths and token counts, bias and causal masks.
/// Tolerance: max |fast - reference| / max(1, |reference|) <= 1e-4 (measured: up to 2.4e-6). The
/// two differ in float32 accumulation order and in exp (a polynomial against libm, 2e-7
/// relative), which can move a softmax weight across a bf16 rounding boundary.
final class BF16AttentionTests: XCTestCase {
    var random = TestRandom(state: 11)
    let tolerance: Float = 1e-4

    struct Case {
        let q: [Float], k: [Float], v: [Float], bias: [Float]?
        let lq: Int, lk: Int, heads: Int, d: Int, causal: Bool
        var stride: Int { heads * d + 5 }
    }

    func makeCase(_ lq: Int, _ lk: Int, _ heads: Int, _ d: Int, bias: Bool, causal: Bool) -> Case {
        let stride = heads * d + 5
        return Case(q: random.values(lq * stride).map { $0 * 3 }, k: random.values(lk * stride).map { $0 * 3 },
                    v: random.values(lk * stride), bias: bias ? random.values(heads * lq * lk) : nil,
                    lq: lq, lk: lk, heads: heads, d: d, causal: causal)
    }

    typealias Attention = (UnsafePointer<Float>?, Int, UnsafePointer<Float>?, Int, UnsafePointer<Float>?, Int,
                           UnsafeMutablePointer<Float>?, Int, Int, Int, Int, Int, Float, UnsafePointer<Float>?,
                           Int32) -> Void

    func run(_ c: Case, _ attention: Attention) -> [Float] {
        var out = [Float](repeating: 0, count: c.lq * c.heads * c.d)
        attention(c.q, c.stride, c.k, c.stride, c.v, c.stride, &out, c.heads * c.d, c.lq, c.lk, c.heads, c.d,
                  0.3, c.bias, c.causal ? 1 : 0)
        return out
    }

    func maxError(_ actual: [Float], _ expected: [Float]) -> Float {
        zip(actual, expected).reduce(0) { max($0, abs($1.0 - $1.1) / max(1, abs($1.1))) }
    }

    func testNativeKernelMatchesReference() throws {
        if schnell_cpu_level() < SCHNELL_CPU_AVX512_BF16 {
            var out: [Float] = [7]
            XCTAssertEqual(schnell_attention_bf16([1], 1, [1], 1, [1], 1, &out, 1, 1, 1, 1, 1, 1, nil, 0), -1)
            XCTAssertEqual(out, [7], "an unsupported CPU leaves the output untouched")
        }
        try requireAVX512BF16(for: "the native bf16 attention")
        let cases = [makeCase(1, 1, 1, 4, bias: false, causal: false),
                     makeCase(17, 23, 3, 8, bias: true, causal: false),
                     makeCase(300, 300, 2, 16, bias: false, causal: true),
                     makeCase(77, 77, 4, 12, bias: true, causal: true),
                     makeCase(50, 131, 2, 7, bias: false, causal: false),
                     makeCase(100, 1100, 1, 130, bias: false, causal: false)]
        for c in cases {
            var fast = [Float](repeating: 0, count: c.lq * c.heads * c.d)
            XCTAssertEqual(schnell_attention_bf16(c.q, c.stride, c.k, c.stride, c.v, c.stride, &fast, c.heads * c.d,
                                                  c.lq, c.lk, c.heads, c.d, 0.3, c.bias, c.causal ? 1 : 0), 0)
            let reference = run(c, schnell_attention_bf16_reference)
            let error = maxError(fast, reference)
            XCTAssertLessThanOrEqual(error, tolerance, "\(c.lq)x\(c.lk)x\(c.heads)x\(c.d): max error \(error)")
        }
    }

    func testAttentionTakesBF16PathOnlyAtTheBF16Precision() throws {
        try requireAVX512BF16(for: "the bf16 precision of schnell_attention")
        let c = makeCase(130, 200, 3, 64, bias: false, causal: false)
        let bf16Reference = run(c, schnell_attention_bf16_reference)
        let f32Reference = run(c, schnell_attention_reference)
        // Rounding to bf16 moves results by far more than the float32 tolerance; with logits of
        // up to about 10 here, a 2^-9 rounding of q and k moves a logit by up to about 0.04.
        XCTAssertGreaterThan(maxError(bf16Reference, f32Reference), 1e-4)
        XCTAssertLessThan(maxError(bf16Reference, f32Reference), 5e-2)

        XCTAssertLessThanOrEqual(maxError(run(c, attention(precision: SCHNELL_PRECISION_BF16)), bf16Reference),
                                 tolerance, "bf16 precision")
        XCTAssertLessThanOrEqual(maxError(run(c, attention(precision: SCHNELL_PRECISION_F32)), f32Reference), 1e-5,
                                 "float32 precision: the float32 path")
    }

    /// schnell_attention at one precision, in the shape of the other attention kernels.
    func attention(precision: schnell_precision) -> Attention {
        { q, qs, k, ks, v, vs, out, os, lq, lk, heads, d, scale, bias, causal in
            schnell_attention(q, qs, k, ks, v, vs, out, os, lq, lk, heads, d, scale, bias, causal, Int32(precision.rawValue))
        }
    }
}
