import SchnellKernels

/// A kernel could not get its scratch memory.
public enum BackendError: Error, CustomStringConvertible, Equatable {
    case outOfMemory(op: String)

    public var description: String {
        switch self {
        case let .outOfMemory(op): return "\(op): not enough memory for the kernel's scratch buffers"
        }
    }
}

/// The channel-first image ops on the CPU (Kernels/cpu/conv.c).
extension CPUBackend {
    public func conv2d(_ x: Tensor, _ layer: Conv2d) throws -> Tensor {
        try convolve(x, layer, upsampled: false)
    }

    public func conv2dUpsampled(_ x: Tensor, _ layer: Conv2d) throws -> Tensor {
        try convolve(x, layer, upsampled: true)
    }

    /// `layer` over x, or over x upsampled x2 (nearest) read in place.
    private func convolve(_ x: Tensor, _ layer: Conv2d, upsampled: Bool) throws -> Tensor {
        precondition(x.shape.count == 3 && x.shape[0] == layer.inChannels,
                     "conv2d: input \(x.shape) does not have \(layer.inChannels) channels")
        let scale = upsampled ? 2 : 1
        var shape = schnell_conv2d_shape(
            in_channels: x.shape[0], height: scale * x.shape[1], width: scale * x.shape[2],
            out_channels: layer.outChannels, kernel_h: layer.kernelHeight, kernel_w: layer.kernelWidth,
            stride: layer.stride, pad_top: layer.padding.top, pad_bottom: layer.padding.bottom,
            pad_left: layer.padding.left, pad_right: layer.padding.right)
        let result = output([layer.outChannels, schnell_conv2d_out_height(&shape), schnell_conv2d_out_width(&shape)])
        let status = packed(x) { input in
            let run = upsampled ? schnell_conv2d_upsampled : schnell_conv2d
            return run(input, layer.weight.pointer, layer.weight.dtype.kernelCode, layer.bias?.pointer,
                       layer.bias?.dtype.kernelCode ?? 0, floats(result), &shape, kernelPrecision)
        }
        guard status == 0 else { throw BackendError.outOfMemory(op: "conv2d '\(layer.weight.name)'") }
        return result
    }

    public func groupNorm(_ x: Tensor, groups: Int, eps: Float, weight: Tensor?, bias: Tensor?,
                          silu: Bool) -> Tensor {
        let result = output(x.shape)
        groupNorm(x, into: result, groups: groups, eps: eps, weight: weight, bias: bias, silu: silu)
        return result
    }

    public func groupNormInPlace(_ x: Tensor, groups: Int, eps: Float, weight: Tensor?, bias: Tensor?, silu: Bool) {
        precondition(x.isContiguous, "groupNormInPlace: x must be contiguous")
        groupNorm(x, into: x, groups: groups, eps: eps, weight: weight, bias: bias, silu: silu)
    }

    /// schnell_group_norm reads each group whole before writing it, so output may be x.
    private func groupNorm(_ x: Tensor, into result: Tensor, groups: Int, eps: Float, weight: Tensor?,
                           bias: Tensor?, silu: Bool) {
        let channels = x.shape[0]
        precondition(groups > 0 && channels % groups == 0, "groupNorm: \(channels) channels in \(groups) groups")
        packed(x) { input in
            packed(weight) { weight in
                packed(bias) { bias in
                    schnell_group_norm(input, floats(result), channels, x.count / channels, groups, eps,
                                       weight, bias, silu ? 1 : 0)
                }
            }
        }
    }

    public func transposed(_ x: Tensor) -> Tensor {
        let result = output([x.width, x.rows])
        schnell_transpose(floats(x), x.rowStride, floats(result), x.rows, x.width)
        return result
    }
}
