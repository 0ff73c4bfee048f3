import CBLAS
import Foundation
import SchnellKernels

/// The VAE decoder's 3x3 convolutions (Cin -> Cout) at `side` x `side`: GFLOP/s of OpenBLAS
/// sgemm on the same GEMM with the im2col matrix already built (the reference rate), the im2col +
/// sgemm path, the implicit GEMM in float32, and (bf16 weights) with bf16 activations.
func benchmarkConvolutions(side: Int, seconds: (() -> Void) -> Double) {
    print("\nconv 3x3 at \(side)x\(side): GFLOP/s (best of the repeats)")
    print("  Cin  Cout   sgemm   im2col+sgemm   implicit f32   ratio   implicit bf16   ratio")
    for (inChannels, outChannels) in [(512, 512), (256, 256), (256, 128), (128, 128)] {
        var shape = schnell_conv2d_shape(in_channels: inChannels, height: side, width: side,
                                         out_channels: outChannels, kernel_h: 3, kernel_w: 3, stride: 1,
                                         pad_top: 1, pad_bottom: 1, pad_left: 1, pad_right: 1)
        let pixels = side * side, depth = inChannels * 9
        let flops = 2.0 * Double(outChannels * depth) * Double(pixels)
        let x = (0..<(inChannels * pixels)).map { Float($0 % 13) * 0.05 - 0.3 }
        let weights = (0..<(outChannels * depth)).map { Float($0 % 11) * 0.01 - 0.05 }
        var bf16Weights = [UInt16](repeating: 0, count: weights.count)
        schnell_f32_to_bf16(weights, &bf16Weights, weights.count)
        let columns = [Float](repeating: 0.1, count: depth * pixels)
        var y = [Float](repeating: 0, count: outChannels * pixels)
        let f32 = Int32(SCHNELL_F32.rawValue), bf16 = Int32(SCHNELL_BF16.rawValue)
        let sgemm = flops / seconds {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(outChannels), Int32(pixels), Int32(depth),
                        1, weights, Int32(depth), columns, Int32(pixels), 0, &y, Int32(pixels))
        } / 1e9
        let precisionF32 = Int32(SCHNELL_PRECISION_F32.rawValue), precisionBF16 = Int32(SCHNELL_PRECISION_BF16.rawValue)
        let im2col = flops / seconds { _ = schnell_conv2d_sgemm(x, weights, f32, nil, f32, &y, &shape) } / 1e9
        let implicit = flops / seconds { _ = schnell_conv2d(x, weights, f32, nil, f32, &y, &shape, precisionF32) } / 1e9
        let implicitBF16 = flops / seconds {
            _ = schnell_conv2d(x, bf16Weights, bf16, nil, f32, &y, &shape, precisionBF16)
        } / 1e9
        print(String(format: "%5d %5d %7.0f %14.0f %14.0f %7.2f %15.0f %7.2f", inChannels, outChannels, sgemm, im2col,
                     implicit, implicit / sgemm, implicitBF16, implicitBF16 / sgemm))
    }
}
