import SchnellKernels
import Schnell
import XCTest

/// The image kernels in Kernels/cpu/conv.c against their `_reference` loops, on sizes that are
/// not multiples of the vector width, at every CPU tier the machine supports (`atEveryTier`). Tolerance: relative L2 error 1e-5 (float32 sums in a
/// different order; the references accumulate in double).
/// The kernels' precision argument, per call.
private let precisionF32 = Int32(SCHNELL_PRECISION_F32.rawValue), precisionBF16 = Int32(SCHNELL_PRECISION_BF16.rawValue)

final class ConvolutionKernelTests: XCTestCase {
    private var random = TestRandom(state: 7)

    private func randomFloats(_ count: Int) -> [Float] { random.values(count) }

    private func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Double = 1e-5,
                             _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
        let error = relativeL2(actual, expected)
        XCTAssertLessThan(error, tolerance, "\(what) at tier \(CPUTier.current): relative L2 error \(error)", file: file, line: line)
    }

    private typealias Convolution = (UnsafePointer<Float>?, UnsafeRawPointer?, Int32, UnsafeRawPointer?, Int32,
                                     UnsafeMutablePointer<Float>?, UnsafePointer<schnell_conv2d_shape>?) -> Int32

    /// schnell_conv2d (the implicit GEMM on AVX-512) and schnell_conv2d_sgemm (im2col + OpenBLAS)
    /// against schnell_conv2d_reference, with float32 and bf16 weights.
    private func checkConv(inChannels: Int, height: Int, width: Int, outChannels: Int, kernel: Int,
                           stride: Int, padding: (top: Int, bottom: Int, left: Int, right: Int),
                           bfloat16Weights: Bool = false, paths: [(String, Convolution)]? = nil) {
        var shape = schnell_conv2d_shape(
            in_channels: inChannels, height: height, width: width, out_channels: outChannels,
            kernel_h: kernel, kernel_w: kernel, stride: stride, pad_top: padding.top,
            pad_bottom: padding.bottom, pad_left: padding.left, pad_right: padding.right)
        let outHeight = schnell_conv2d_out_height(&shape), outWidth = schnell_conv2d_out_width(&shape)
        let x = randomFloats(inChannels * height * width)
        let weights = randomFloats(outChannels * inChannels * kernel * kernel)
        var stored = [UInt16](repeating: 0, count: weights.count)
        schnell_f32_to_bf16(weights, &stored, weights.count)
        let bias = randomFloats(outChannels)
        let f32 = Int32(SCHNELL_F32.rawValue), dtype = Int32((bfloat16Weights ? SCHNELL_BF16 : SCHNELL_F32).rawValue)
        var reference = [Float](repeating: .nan, count: outChannels * outHeight * outWidth)
        let what = "conv \(inChannels)x\(height)x\(width) -> \(outChannels), k\(kernel) s\(stride) pad \(padding)"
        func run(_ convolution: Convolution, into output: inout [Float]) -> Int32 {
            bfloat16Weights ? convolution(x, stored, dtype, bias, f32, &output, &shape)
                : convolution(x, weights, dtype, bias, f32, &output, &shape)
        }
        XCTAssertEqual(run(schnell_conv2d_reference, into: &reference), 0)
        let implicitGEMM: Convolution = { schnell_conv2d($0, $1, $2, $3, $4, $5, $6, precisionF32) }
        for (name, convolution) in paths ?? [("schnell_conv2d", implicitGEMM), ("sgemm", schnell_conv2d_sgemm)] {
            var fast = [Float](repeating: .nan, count: reference.count)
            XCTAssertEqual(run(convolution, into: &fast), 0, "\(name) \(what)")
            assertClose(fast, reference, "\(name) \(what)")
        }
    }

    func testConvolutionMatchesReference() {
        atEveryTier { _ in
            checkConv(inChannels: 5, height: 13, width: 17, outChannels: 7, kernel: 3, stride: 1,
                      padding: (1, 1, 1, 1))
            checkConv(inChannels: 19, height: 9, width: 23, outChannels: 33, kernel: 1, stride: 1,
                      padding: (0, 0, 0, 0))
            checkConv(inChannels: 3, height: 11, width: 6, outChannels: 5, kernel: 3, stride: 1,
                      padding: (0, 0, 0, 0))
            checkConv(inChannels: 6, height: 8, width: 5, outChannels: 4, kernel: 5, stride: 1,
                      padding: (2, 1, 0, 3))
            checkConv(inChannels: 4, height: 10, width: 14, outChannels: 9, kernel: 3, stride: 1,
                      padding: (1, 1, 1, 1), bfloat16Weights: true)
        }
    }

    /// The implicit GEMM's edges: output rows wider than a 64-pixel panel and not a multiple of
    /// it, panels spanning several rows, a depth over two k blocks (576 + 9 > 512 floats,
    /// > 1024 bf16 pairs' worth), output channels not a multiple of the 6-row micro-panel.
    func testImplicitGEMMBlockEdges() {
        atEveryTier { _ in
            checkConv(inChannels: 65, height: 7, width: 150, outChannels: 13, kernel: 3, stride: 1,
                      padding: (1, 1, 1, 1))
            checkConv(inChannels: 130, height: 5, width: 21, outChannels: 8, kernel: 3, stride: 1,
                      padding: (1, 1, 1, 1), bfloat16Weights: true)
            checkConv(inChannels: 3, height: 300, width: 1, outChannels: 2, kernel: 1, stride: 1,
                      padding: (0, 0, 0, 0))
            // A depth of 1,024 floats (4 KB): the weights are read from padded rows.
            checkConv(inChannels: 1024, height: 3, width: 20, outChannels: 7, kernel: 1, stride: 1,
                      padding: (0, 0, 0, 0))
        }
    }

    /// The encoder's downsampling: stride 2 with zero padding only at the bottom and right.
    func testStrideTwoWithAsymmetricPadding() {
        atEveryTier { _ in
            checkConv(inChannels: 6, height: 12, width: 10, outChannels: 6, kernel: 3, stride: 2,
                      padding: (0, 1, 0, 1))
            checkConv(inChannels: 5, height: 13, width: 7, outChannels: 3, kernel: 3, stride: 2,
                      padding: (0, 1, 0, 1))
            checkConv(inChannels: 2, height: 9, width: 11, outChannels: 4, kernel: 2, stride: 2,
                      padding: (1, 0, 1, 0))
            checkConv(inChannels: 4, height: 140, width: 140, outChannels: 7, kernel: 3, stride: 2,
                      padding: (0, 1, 0, 1))
        }
    }

    /// A column matrix larger than the sgemm path's 64 MB scratch bound (1152 x 70 x 400 floats
    /// = 129 MB), so that path computes the output in bands of 36 rows.
    func testConvolutionInBands() {
        atEveryTier { _ in
            checkConv(inChannels: 128, height: 70, width: 400, outChannels: 2, kernel: 3, stride: 1,
                      padding: (1, 1, 1, 1), paths: [("sgemm", schnell_conv2d_sgemm)])
        }
    }

    /// 3x3 convolutions whose width is a multiple of 32 take Winograd F(2x2, 3x3)
    /// (Kernels/cpu/conv_winograd.c). In float32 it matches the reference as tightly as the
    /// direct convolution (1e-5 relative L2). On the bf16 path its transformed inputs and filters
    /// are rounded to bf16, so it sits further from the bf16 reference: bound 1e-2, against
    /// measured errors of 3.9e-3 to 4.3e-3, the same order as rounding the input to bf16 at all.
    /// Sizes: partial 64-tile items, items spanning tile rows, two 256-channel chunks, odd Cin
    /// (float32 only: an odd depth keeps the bf16 path off). The AVX2 tier takes Winograd from 16
    /// input channels on widths that are multiples of 16: 48 and 16 wide, two of its 512-channel
    /// chunks, and a U over 8 MB (400 x 400 filters: 128-tile items).
    private static let winogradSizes = [(2, 2, 32, 5), (6, 6, 64, 13), (260, 4, 32, 7), (8, 10, 96, 6), (3, 4, 32, 4),
                                        (16, 4, 48, 7), (20, 6, 16, 9), (520, 2, 16, 5), (400, 2, 272, 400)]

    private func checkWinograd(inChannels: Int, height: Int, width: Int, outChannels: Int, bf16Activations: Bool) {
        let f32 = Int32(SCHNELL_F32.rawValue), bf16 = Int32(SCHNELL_BF16.rawValue)
        var shape = schnell_conv2d_shape(in_channels: inChannels, height: height, width: width,
                                         out_channels: outChannels, kernel_h: 3, kernel_w: 3, stride: 1,
                                         pad_top: 1, pad_bottom: 1, pad_left: 1, pad_right: 1)
        let x = randomFloats(inChannels * height * width)
        let weights = randomFloats(outChannels * inChannels * 9), bias = randomFloats(outChannels)
        let what = "Winograd conv \(inChannels)x\(height)x\(width) -> \(outChannels)"
        var fast = [Float](repeating: .nan, count: outChannels * height * width), reference = fast
        if bf16Activations {
            var stored = [UInt16](repeating: 0, count: weights.count)
            schnell_f32_to_bf16(weights, &stored, weights.count)
            XCTAssertEqual(schnell_conv2d(x, stored, bf16, bias, f32, &fast, &shape, precisionBF16), 0)
            XCTAssertEqual(schnell_conv2d_bf16_reference(x, stored, bias, f32, &reference, &shape), 0)
            assertClose(fast, reference, tolerance: 1e-2, "\(what), bf16")
        } else {
            XCTAssertEqual(schnell_conv2d(x, weights, f32, bias, f32, &fast, &shape, precisionF32), 0)
            XCTAssertEqual(schnell_conv2d_reference(x, weights, f32, bias, f32, &reference, &shape), 0)
            assertClose(fast, reference, "\(what), float32")
        }
    }

    func testWinogradMatchesReference() {
        atEveryTier { _ in
            for (inChannels, height, width, outChannels) in Self.winogradSizes {
                checkWinograd(inChannels: inChannels, height: height, width: width, outChannels: outChannels,
                              bf16Activations: false)
            }
        }
    }

    func testWinogradBF16MatchesReference() throws {
        try requireAVX512BF16(for: "the bf16 Winograd convolution")
        for (inChannels, height, width, outChannels) in Self.winogradSizes where inChannels % 2 == 0 {
            checkWinograd(inChannels: inChannels, height: height, width: width, outChannels: outChannels,
                          bf16Activations: true)
        }
    }

    /// At the bf16 precision, a bf16 weight runs the AVX512-BF16 implicit GEMM; it must match
    /// the reference that rounds x to bf16 first (relative L2 1e-5, fp32 vs double sums), and
    /// differ from the float32 result by about bf16's rounding (2^-9 relative), not more.
    func testBF16ActivationsMatchTheirReference() throws {
        try requireAVX512BF16(for: "the bf16 implicit-GEMM convolution")
        for (inChannels, height, width, outChannels, kernel, padding) in
            [(16, 9, 70, 13, 3, 1), (130, 6, 66, 7, 3, 1), (24, 5, 19, 5, 1, 0), (3, 4, 5, 2, 3, 1)] {
            var shape = schnell_conv2d_shape(
                in_channels: inChannels, height: height, width: width, out_channels: outChannels,
                kernel_h: kernel, kernel_w: kernel, stride: 1, pad_top: padding, pad_bottom: padding,
                pad_left: padding, pad_right: padding)
            let count = outChannels * schnell_conv2d_out_height(&shape) * schnell_conv2d_out_width(&shape)
            let x = randomFloats(inChannels * height * width)
            let weights = randomFloats(outChannels * inChannels * kernel * kernel)
            var stored = [UInt16](repeating: 0, count: weights.count)
            schnell_f32_to_bf16(weights, &stored, weights.count)
            let bias = randomFloats(outChannels)
            let f32 = Int32(SCHNELL_F32.rawValue), bf16 = Int32(SCHNELL_BF16.rawValue)
            var fast = [Float](repeating: .nan, count: count), reference = fast, exact = fast
            XCTAssertEqual(schnell_conv2d(x, stored, bf16, bias, f32, &fast, &shape, precisionBF16), 0)
            XCTAssertEqual(schnell_conv2d_reference(x, stored, bf16, bias, f32, &exact, &shape), 0)
            let what = "bf16 conv \(inChannels)x\(height)x\(width) -> \(outChannels) k\(kernel)"
            let depth = inChannels * kernel * kernel
            if depth % 2 == 0 {
                XCTAssertEqual(schnell_conv2d_bf16_reference(x, stored, bias, f32, &reference, &shape), 0)
                assertClose(fast, reference, what)
                let error = relativeL2(fast, exact)
                XCTAssertGreaterThan(error, 1e-5, "\(what): activations were rounded to bf16")
                XCTAssertLessThan(error, 1e-2, "\(what): only by bf16's rounding")
            } else {
                assertClose(fast, exact, "\(what): an odd depth stays on the float32 path")
            }
        }
    }

    /// The decoder's upsampling convolution, reading its input at half size: against the
    /// reference conv over the upsampled input built by the reference upsample, float32 and bf16
    /// activations, on source widths around the vector width. 3x3 kernels run by output phase
    /// (four 2x2 convolutions of x with summed taps); other kernels gather the upsampled input in
    /// place. On the bf16 path the phases' summed taps are rounded to bf16 once more (2^-9
    /// relative per weight), so there the bound is 4e-3 relative L2 against the bf16 reference,
    /// whose taps are summed in the convolution instead.
    private func checkUpsampledConvolution(channels: Int, height: Int, width: Int, outChannels: Int, kernel: Int,
                                           bf16Activations: Bool) {
        let f32 = Int32(SCHNELL_F32.rawValue), bf16 = Int32(SCHNELL_BF16.rawValue)
        let pad = kernel / 2
        var shape = schnell_conv2d_shape(in_channels: channels, height: 2 * height, width: 2 * width,
                                         out_channels: outChannels, kernel_h: kernel, kernel_w: kernel, stride: 1,
                                         pad_top: pad, pad_bottom: pad, pad_left: pad, pad_right: pad)
        let x = randomFloats(channels * height * width)
        let weights = randomFloats(outChannels * channels * kernel * kernel), bias = randomFloats(outChannels)
        var upsampled = [Float](repeating: .nan, count: x.count * 4)
        schnell_upsample_nearest2x_reference(x, &upsampled, channels, height, width)
        var fast = [Float](repeating: .nan, count: outChannels * 4 * height * width), reference = fast
        let what = "upsampled \(kernel)x\(kernel) conv \(channels)x\(height)x\(width) -> \(outChannels), bf16 \(bf16Activations)"
        if bf16Activations {
            var stored = [UInt16](repeating: 0, count: weights.count)
            schnell_f32_to_bf16(weights, &stored, weights.count)
            XCTAssertEqual(schnell_conv2d_upsampled(x, stored, bf16, bias, f32, &fast, &shape, precisionBF16), 0)
            XCTAssertEqual(schnell_conv2d_bf16_reference(upsampled, stored, bias, f32, &reference, &shape), 0)
            assertClose(fast, reference, tolerance: kernel == 3 ? 4e-3 : 1e-5, what)
        } else {
            XCTAssertEqual(schnell_conv2d_upsampled(x, weights, f32, bias, f32, &fast, &shape, precisionF32), 0)
            XCTAssertEqual(schnell_conv2d_reference(upsampled, weights, f32, bias, f32, &reference, &shape), 0)
            assertClose(fast, reference, what)
        }
    }

    func testUpsampledConvolutionMatchesUpsampleThenConvolution() {
        atEveryTier { _ in
            for (channels, height, width, outChannels, kernel) in
                [(5, 4, 7, 3, 3), (6, 3, 40, 7, 3), (2, 2, 1, 2, 3), (3, 4, 36, 5, 5), (4, 3, 20, 6, 1), (256, 3, 10, 7, 3)] {
                checkUpsampledConvolution(channels: channels, height: height, width: width, outChannels: outChannels,
                                          kernel: kernel, bf16Activations: false)
            }
            let f32 = Int32(SCHNELL_F32.rawValue)
            var odd = schnell_conv2d_shape(in_channels: 1, height: 5, width: 4, out_channels: 1, kernel_h: 1,
                                           kernel_w: 1, stride: 1, pad_top: 0, pad_bottom: 0, pad_left: 0, pad_right: 0)
            var output = [Float](repeating: 0, count: 20)
            XCTAssertEqual(schnell_conv2d_upsampled([1, 2, 3, 4, 5, 6], [Float(1)], f32, nil, f32, &output, &odd, precisionF32), -2,
                           "an odd upsampled height is refused")
        }
    }

    func testUpsampledConvolutionBF16MatchesUpsampleThenConvolution() throws {
        try requireAVX512BF16(for: "the bf16 upsampling convolution")
        for (channels, height, width, outChannels, kernel) in [(4, 5, 33, 13, 3), (6, 4, 34, 9, 5)] {
            checkUpsampledConvolution(channels: channels, height: height, width: width, outChannels: outChannels,
                                      kernel: kernel, bf16Activations: true)
        }
    }

    func testGroupNormMatchesReference() {
        atEveryTier { _ in
            for (channels, spatial, groups, silu) in [(12, 37, 4, false), (32, 5 * 7, 8, true),
                                                      (6, 1030, 3, true), (5, 3, 5, false)] {
                let x = randomFloats(channels * spatial).map { $0 * 3 + 0.5 }
                let weight = randomFloats(channels), bias = randomFloats(channels)
                var fast = [Float](repeating: .nan, count: x.count), reference = fast
                schnell_group_norm(x, &fast, channels, spatial, groups, 1e-6, weight, bias, silu ? 1 : 0)
                schnell_group_norm_reference(x, &reference, channels, spatial, groups, 1e-6, weight, bias,
                                             silu ? 1 : 0)
                assertClose(fast, reference, "group norm C=\(channels) HW=\(spatial) G=\(groups) silu=\(silu)")
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { buffer in
                    schnell_group_norm(buffer.baseAddress, buffer.baseAddress, channels, spatial, groups, 1e-6, weight, bias,
                                       silu ? 1 : 0)
                }
                XCTAssertEqual(inPlace, fast, "in place, the same values as out of place")
                var plain = [Float](repeating: .nan, count: x.count)
                schnell_group_norm(x, &plain, channels, spatial, groups, 1e-6, nil, nil, 0)
                let perGroup = channels / groups * spatial
                let firstGroup = plain[0..<perGroup]
                let mean = firstGroup.reduce(0, +) / Float(perGroup)
                XCTAssertEqual(mean, 0, accuracy: 1e-5, "a normalised group has mean 0")
            }
            // The one-pass variance is taken about the mean of a group's first 1,024 values. Group 0:
            // those sit near 0, the rest near 300. Group 1: every value is 300 +- 0.01, where moments
            // about 0 in float would cancel every digit of the variance.
            let (channels, spatial) = (4, 2500)
            let x = randomFloats(channels * spatial).enumerated().map { index, value -> Float in
                if index >= 5000 { return 300 + value * 0.01 }
                return index < 1024 ? value : 300 + value * 0.1
            }
            var fast = [Float](repeating: .nan, count: x.count), reference = fast
            schnell_group_norm(x, &fast, channels, spatial, 2, 1e-6, nil, nil, 0)
            schnell_group_norm_reference(x, &reference, channels, spatial, 2, 1e-6, nil, nil, 0)
            assertClose(fast, reference, "group norm of groups far from zero")
        }
    }

    func testUpsampleMatchesReference() {
        atEveryTier { _ in
            for (channels, height, width) in [(3, 5, 7), (2, 1, 17), (4, 6, 33)] {
                let x = randomFloats(channels * height * width)
                var fast = [Float](repeating: .nan, count: x.count * 4), reference = fast
                schnell_upsample_nearest2x(x, &fast, channels, height, width)
                schnell_upsample_nearest2x_reference(x, &reference, channels, height, width)
                XCTAssertEqual(fast, reference, "upsample \(channels)x\(height)x\(width) is exact")
                XCTAssertEqual(fast[2 * width * 2 + 1], x[width], "output (row 2, column 1) = input (1, 0)")
            }
        }
    }

    func testTransposeMatchesReference() {
        atEveryTier { _ in
            for (rows, width, stride) in [(37, 70, 70), (5, 3, 9), (64, 33, 40)] {
                let x = randomFloats(rows * stride)
                var fast = [Float](repeating: .nan, count: rows * width), reference = fast
                schnell_transpose(x, stride, &fast, rows, width)
                schnell_transpose_reference(x, stride, &reference, rows, width)
                XCTAssertEqual(fast, reference, "transpose \(rows)x\(width) is exact")
                XCTAssertEqual(fast[1 * rows + 2], x[2 * stride + 1])
            }
        }
    }
}
