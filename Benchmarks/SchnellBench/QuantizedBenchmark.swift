import CBLAS
import Foundation
import SchnellKernels

/// The linear on GGUF quantized blocks (gemm_quant.c), per type with a fast path, on the given
/// (K, N) shapes at M rows, as GFLOP/s-equivalent (2 M N K / s), beside OpenBLAS sgemm and the
/// native bf16 kernel (schnell_linear_bf16; "-" without AVX512-BF16) timed on the same shape just
/// before, so the ratios hold even on a machine shared with other work.
func benchmarkQuantizedLinears(m: Int, shapes: [(Int, Int)], seconds: (() -> Void) -> Double) {
    let types: [(name: String, dtype: schnell_dtype)] = [("Q8_0", SCHNELL_Q8_0), ("Q4_0", SCHNELL_Q4_0), ("Q4_1", SCHNELL_Q4_1),
                                                         ("Q5_0", SCHNELL_Q5_0), ("Q5_1", SCHNELL_Q5_1), ("Q2_K", SCHNELL_Q2_K),
                                                         ("Q3_K", SCHNELL_Q3_K),
                                                         ("Q4_K", SCHNELL_Q4_K), ("Q5_K", SCHNELL_Q5_K), ("Q6_K", SCHNELL_Q6_K)]
    let vnni = schnell_cpu_has_avx512_vnni() != 0 && Int(schnell_cpu_level()) >= SCHNELL_CPU_AVX512
    print("\nQuantized linear (gemm_quant.c\(vnni ? ", AVX512-VNNI" : "")), M = \(m): GFLOP/s-equivalent; ratios to sgemm / native bf16")
    print("   K      N   sgemm   bf16 native" + types.map { String(repeating: " ", count: 8) + $0.name + "   /sgemm  /bf16" }.joined())
    for (k, n) in shapes {
        let flops = 2.0 * Double(m) * Double(k) * Double(n)
        let x = (0..<(m * k)).map { Float(($0 * 7919) % 1000) / 500 - 1 }
        let weight = (0..<(n * k)).map { Float(($0 * 104_729) % 2000) / 1000 - 1 }
        var bf16Weight = [UInt16](repeating: 0, count: weight.count)
        schnell_f32_to_bf16(weight, &bf16Weight, weight.count)
        var y = [Float](repeating: 0, count: m * n)
        let sgemm = flops / seconds {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, x, Int32(k),
                        weight, Int32(k), 0, &y, Int32(n))
        } / 1e9
        let bf16: Double? = Int(schnell_cpu_level()) >= SCHNELL_CPU_AVX512_BF16
            ? flops / seconds { _ = schnell_linear_bf16(x, m, k, bf16Weight, nil, 0, n, &y, n) } / 1e9 : nil
        var line = String(format: "%5d %6d %7.0f ", k, n, sgemm) + (bf16.map { String(format: "%12.0f", $0) } ?? String(repeating: " ", count: 11) + "-")
        for type in types {
            let code = Int32(type.dtype.rawValue)
            let blockBytes = schnell_dtype_block_bytes(code)
            // Blocks of pseudo-random quants with small f16 values (0.01) where the type keeps d and m or
            // dmin (bytes 0-3; the last four for Q2_K, the last two for Q3_K and Q6_K): the rate does not
            // depend on them.
            let halfOffsets = type.dtype == SCHNELL_Q3_K || type.dtype == SCHNELL_Q6_K ? [blockBytes - 2]
                : type.dtype == SCHNELL_Q2_K ? [blockBytes - 4, blockBytes - 2] : [0, 2]
            var blocks = [UInt8](repeating: 0, count: schnell_dtype_row_bytes(code, k) * n)
            for start in stride(from: 0, to: blocks.count, by: blockBytes) {
                for i in 0..<blockBytes { blocks[start + i] = UInt8(truncatingIfNeeded: (start / blockBytes) &* 31 &+ i &* 17) }
                for offset in halfOffsets {
                    blocks[start + offset] = 0x1f
                    blocks[start + offset + 1] = 0x21
                }
            }
            let rate = flops / seconds { _ = schnell_linear_quantized(x, m, k, blocks, code, nil, 0, n, &y, n) } / 1e9
            line += String(format: " %11.0f %8.2f ", rate, rate / sgemm)
                + (bf16.map { String(format: "%6.2f", rate / $0) } ?? String(repeating: " ", count: 5) + "-")
        }
        print(line)
    }
}
