import SchnellKernels

/// The op set on the CPU: OpenBLAS sgemm for GEMMs, the C kernels in Kernels/cpu for the rest.
/// Outputs the kernel writes in full are left uninitialised: zero-filling them first was a
/// single-threaded pass over about 1 GB per transformer step at 512x512.
public struct CPUBackend: Backend {
    /// `bf16Activations`: for bf16-stored weights, round activations to bf16 and run the native
    /// AVX512-BF16 GEMM (about twice sgemm's rate, results within bf16 rounding of float32).
    /// Off by default: float32 math, as PyTorch in float32. The switch is process-wide, so the
    /// most recently created backend decides; CPUs without AVX512-BF16 always use float32.
    public init(threads: Int = 0, bf16Activations: Bool = false) {
        schnell_set_threads(Int32(threads))
        schnell_set_bf16_activations(bf16Activations ? 1 : 0)
    }

    public func linear(_ x: Tensor, _ layer: Linear) -> Tensor {
        precondition(x.width == layer.inFeatures, "linear: input width \(x.width) != \(layer.inFeatures)")
        let output = Tensor(uninitialized: Array(x.shape.dropLast()) + [layer.outFeatures])
        packed(x) { input in
            var column = 0
            for block in layer.blocks {
                let rows = block.weight.shape[0]
                schnell_linear(input, x.rows, layer.inFeatures,
                               block.weight.pointer, block.weight.dtype.kernelCode,
                               block.bias?.pointer, block.bias?.dtype.kernelCode ?? 0,
                               rows, output.pointer + column, layer.outFeatures)
                column += rows
            }
        }
        return output
    }

    public func layerNorm(_ x: Tensor, eps: Float, weight: Tensor?, bias: Tensor?) -> Tensor {
        let output = Tensor(uninitialized: x.shape)
        packed(x) { input in
            packed(weight) { weight in
                packed(bias) { bias in
                    schnell_layer_norm(input, output.pointer, x.rows, x.width, eps, weight, bias)
                }
            }
        }
        return output
    }

    public func layerNormModulate(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) -> Tensor {
        let output = Tensor(uninitialized: x.shape)
        packed(x) { input in
            packed(scale) { scale in
                packed(shift) { shift in
                    schnell_layer_norm_modulate(input, output.pointer, x.rows, x.width, eps, scale, shift)
                }
            }
        }
        return output
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) -> Tensor {
        let output = Tensor(uninitialized: x.shape)
        packed(x) { input in
            packed(weight) { weight in
                schnell_rms_norm(input, output.pointer, x.rows, x.width, eps, weight)
            }
        }
        return output
    }

    public func qkNormRope(_ x: Tensor, heads: Int, weight: Tensor?, eps: Float, rotary: RotaryTable?) {
        packed(weight) { weight in
            packed(rotary?.cos) { cos in
                packed(rotary?.sin) { sin in
                    schnell_qk_norm_rope(x.pointer, x.rows, heads, x.width / heads, x.rowStride, weight, eps, cos, sin)
                }
            }
        }
    }

    public func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, bias: Tensor?,
                          causal: Bool) -> Tensor {
        let output = Tensor(zeros: [q.rows, v.width])
        packed(bias) { bias in
            schnell_attention(q.pointer, q.rowStride, k.pointer, k.rowStride, v.pointer, v.rowStride,
                              output.pointer, output.rowStride, q.rows, k.rows, heads, q.width / heads,
                              scale, bias, causal ? 1 : 0)
        }
        return output
    }

    public func activate(_ x: Tensor, _ kind: Activation) {
        schnell_activation(x.pointer, x.rows, x.width, x.rowStride, kind.kernelCode)
    }

    public func gatedActivation(_ a: Tensor, _ b: Tensor, _ kind: Activation) -> Tensor {
        let output = Tensor(uninitialized: a.shape)
        schnell_gated_activation(a.pointer, a.rowStride, b.pointer, b.rowStride, output.pointer,
                                 a.rows, a.width, kind.kernelCode)
        return output
    }

    public func gatedAdd(_ x: Tensor, _ y: Tensor, gate: Tensor?) {
        packed(gate) { gate in
            schnell_gated_add(x.pointer, x.rowStride, y.pointer, y.rowStride, gate, x.rows, x.width)
        }
    }

    public func embedding(_ table: WeightTensor, ids: [Int32]) -> Tensor {
        let width = table.shape.last ?? 0
        let output = Tensor(zeros: [ids.count, width])
        for (row, id) in ids.enumerated() {
            let source = table.pointer + Int(id) * width * table.dtype.sizeBytes
            schnell_convert_to_f32(source, table.dtype.kernelCode, output.pointer + row * width, width)
        }
        return output
    }
}

extension Activation {
    var kernelCode: Int32 {
        switch self {
        case .geluTanh: return Int32(SCHNELL_GELU_TANH.rawValue)
        case .gelu: return Int32(SCHNELL_GELU_ERF.rawValue)
        case .quickGelu: return Int32(SCHNELL_QUICK_GELU.rawValue)
        case .silu: return Int32(SCHNELL_SILU.rawValue)
        case .relu: return Int32(SCHNELL_RELU.rawValue)
        }
    }
}

/// Runs `body` with a pointer to `tensor`'s values packed row after row (a copy when the
/// tensor is a strided view), or nil for no tensor. The storage is kept alive for the call.
func packed(_ tensor: Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> Void) {
    guard let tensor else { return body(nil) }
    let contiguous = tensor.isContiguous ? tensor : tensor.copy()
    withExtendedLifetime(contiguous) { body(contiguous.pointer) }
}

func packed(_ tensor: Tensor, _ body: (UnsafeMutablePointer<Float>) -> Void) {
    let contiguous = tensor.isContiguous ? tensor : tensor.copy()
    withExtendedLifetime(contiguous) { body(contiguous.pointer) }
}
