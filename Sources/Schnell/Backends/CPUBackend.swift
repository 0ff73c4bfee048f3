import SchnellKernels

/// The op set on the CPU: OpenBLAS sgemm and the C kernels in Kernels/cpu. Each instance owns a
/// pool of host buffers and a compute precision, which it passes to the kernels with every call,
/// so backends of different precisions can run side by side in one process. Weights are read
/// where they lie in the memory map. Outputs a kernel writes in full are left uninitialised:
/// zero-filling them first was a single-threaded pass over about 1 GB per transformer step at
/// 512x512.
public final class CPUBackend: Backend, @unchecked Sendable {
    public let precision: Precision
    let pool = BufferPool(limitBytes: 1 << 30)

    /// `threads`: workers for our loops and OpenBLAS (0: every core; the count is process-wide).
    /// `precision` `.bf16` runs bf16-stored weights on the native AVX512-BF16 kernels with
    /// bf16-rounded activations (about twice sgemm's rate, results within bf16 rounding of
    /// float32); CPUs without AVX512-BF16 compute in float32 either way.
    public init(threads: Int = 0, precision: Precision = .f32) {
        schnell_set_threads(Int32(threads))
        self.precision = precision
    }

    var kernelPrecision: Int32 {
        Int32(precision == .bf16 ? SCHNELL_PRECISION_BF16.rawValue : SCHNELL_PRECISION_F32.rawValue)
    }

    // MARK: memory and transfers

    public func allocate(_ shape: [Int], dtype: DType) -> Tensor {
        let storage = HostStorage(sizeBytes: shape.reduce(1, *) * dtype.sizeBytes, pool: pool)
        return Tensor(shape: shape, dtype: dtype, rowStride: shape.last ?? 1, storage: storage, offset: 0)
    }

    /// A float32 output of `shape`.
    func output(_ shape: [Int]) -> Tensor { allocate(shape, dtype: .f32) }

    /// The first element of x, checked to be host memory of this kind.
    func address(_ x: Tensor) -> UnsafeMutableRawPointer {
        guard let storage = x.storage as? HostStorage else {
            preconditionFailure("the CPU backend was given a tensor in another backend's memory")
        }
        return storage.base + x.offset * x.dtype.sizeBytes
    }

    /// The first element of a float32 tensor: the kernels compute on float32 activations.
    func floats(_ x: Tensor) -> UnsafeMutablePointer<Float> {
        precondition(x.dtype == .f32, "the CPU kernels take float32 tensors, not \(x.dtype.rawValue)")
        return address(x).assumingMemoryBound(to: Float.self)
    }

    public func upload(_ values: [Float], shape: [Int], dtype: DType) -> Tensor {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values do not fill shape \(shape)")
        let result = allocate(shape, dtype: dtype)
        let target = address(result)
        values.withUnsafeBufferPointer { source in
            guard let base = source.baseAddress else { return }
            switch dtype {
            case .f32:
                target.copyMemory(from: base, byteCount: values.count * 4)
            case .bf16:
                schnell_f32_to_bf16(base, target.assumingMemoryBound(to: UInt16.self), values.count)
            case .f16:
                let halves = target.assumingMemoryBound(to: Float16.self)
                for index in source.indices { halves[index] = Float16(source[index]) }
            default:
                preconditionFailure("tensors are not uploaded as \(dtype.rawValue), a weight storage dtype")
            }
        }
        return result
    }

    public func upload(_ weight: WeightTensor) -> Tensor {
        if weight.scale != nil { return upload(weight.floats(), shape: weight.shape.isEmpty ? [1] : weight.shape) }
        let result = output(weight.shape.isEmpty ? [1] : weight.shape)
        schnell_convert_to_f32(weight.pointer, weight.dtype.kernelCode, floats(result), weight.count)
        return result
    }

    public func download(_ x: Tensor) -> [Float] {
        let source = address(x)
        return [Float](unsafeUninitializedCapacity: x.count) { buffer, initialized in
            guard let target = buffer.baseAddress else { return }
            for row in 0..<x.rows {
                schnell_convert_to_f32(source + row * x.rowStride * x.dtype.sizeBytes, x.dtype.kernelCode,
                                       target + row * x.width, x.width)
            }
            initialized = x.count
        }
    }

    public func uploadRGB8(_ pixels: [UInt8], width: Int, height: Int) -> Tensor {
        precondition(pixels.count == width * height * 3, "\(pixels.count) bytes are not a \(width)x\(height) RGB image")
        let result = output([3, height, width])
        schnell_planes_from_rgb8(pixels, floats(result), width * height)
        return result
    }

    public func downloadRGB8(_ image: Tensor) -> [UInt8] {
        precondition(image.shape.count == 3 && image.shape[0] == 3, "an RGB image is [3, H, W], not \(image.shape)")
        let pixels = image.count / 3
        return packed(image) { planes in
            [UInt8](unsafeUninitializedCapacity: image.count) { buffer, initialized in
                schnell_rgb8_from_planes(planes, buffer.baseAddress, pixels)
                initialized = image.count
            }
        }
    }

    public func copy(_ x: Tensor, into destination: Tensor?) -> Tensor {
        let result = destination ?? output(x.shape)
        precondition(result.rows == x.rows && result.width == x.width,
                     "copy: \(x.shape) into \(result.shape)")
        let source = floats(x), target = floats(result)
        for row in 0..<x.rows {
            (target + row * result.rowStride).update(from: source + row * x.rowStride, count: x.width)
        }
        return result
    }

    /// Runs `body` with x's values packed row after row (a copy when x is a strided view); the
    /// storage is kept alive for the call.
    func packed<Result>(_ x: Tensor, _ body: (UnsafeMutablePointer<Float>) -> Result) -> Result {
        let contiguous = x.isContiguous ? x : copy(x, into: nil)
        return withExtendedLifetime(contiguous) { body(floats(contiguous)) }
    }

    /// The same for an optional tensor: nil stays nil.
    func packed<Result>(_ x: Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> Result) -> Result {
        guard let x else { return body(nil) }
        let contiguous = x.isContiguous ? x : copy(x, into: nil)
        return withExtendedLifetime(contiguous) { body(floats(contiguous)) }
    }

    // MARK: weights

    public func prepare(_ layer: Linear) throws -> Linear { layer }

    public func prepare(_ layer: Conv2d) throws -> Conv2d { layer }

    // MARK: transformer ops

    public func linear(_ x: Tensor, _ layer: Linear, into destination: Tensor?) -> Tensor {
        precondition(x.width == layer.inFeatures, "linear: input width \(x.width) != \(layer.inFeatures)")
        let result = destination ?? output(Array(x.shape.dropLast()) + [layer.outFeatures])
        precondition(result.rows == x.rows && result.width == layer.outFeatures,
                     "linear: output \(result.shape) for \(x.rows) rows of \(layer.outFeatures)")
        let target = floats(result)
        packed(x) { input in
            var column = 0
            for block in layer.blocks {
                let rows = block.weight.shape[0]
                // A scaled fp8 weight: the GEMM on its stored values, then scale and bias per column.
                let scale = block.weight.scale
                schnell_linear(input, x.rows, layer.inFeatures,
                               block.weight.pointer, block.weight.dtype.kernelCode,
                               scale == nil ? block.bias?.pointer : nil, block.bias?.dtype.kernelCode ?? 0,
                               rows, target + column, result.rowStride, kernelPrecision)
                if let scale {
                    schnell_scale_columns(target + column, x.rows, rows, result.rowStride, scale.values, scale.values.count,
                                          block.bias?.pointer, block.bias?.dtype.kernelCode ?? 0)
                }
                column += rows
            }
            for delta in layer.lowRank {
                let status = delta.down.withUnsafeBufferPointer { down in
                    delta.up.withUnsafeBufferPointer { up in
                        schnell_lowrank_add(input, x.rows, layer.inFeatures, down.baseAddress, delta.rank, up.baseAddress,
                                            delta.rows.count, delta.scale, target + delta.rows.lowerBound, result.rowStride)
                    }
                }
                precondition(status == 0, "linear: no memory for a LoRA's \(x.rows) x \(delta.rank) product")
            }
        }
        return result
    }

    public func layerNorm(_ x: Tensor, eps: Float, weight: Tensor?, bias: Tensor?) -> Tensor {
        let result = output(x.shape)
        packed(x) { input in
            packed(weight) { weight in
                packed(bias) { bias in
                    schnell_layer_norm(input, floats(result), x.rows, x.width, eps, weight, bias)
                }
            }
        }
        return result
    }

    public func layerNormModulate(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) -> Tensor {
        let result = output(x.shape)
        packed(x) { input in
            packed(scale) { scale in
                packed(shift) { shift in
                    schnell_layer_norm_modulate(input, floats(result), x.rows, x.width, eps, scale, shift)
                }
            }
        }
        return result
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) -> Tensor {
        let result = output(x.shape)
        packed(x) { input in
            packed(weight) { weight in
                schnell_rms_norm(input, floats(result), x.rows, x.width, eps, weight)
            }
        }
        return result
    }

    public func qkNormRope(_ x: Tensor, heads: Int, weight: Tensor?, eps: Float, rotary: RotaryTable?) {
        packed(weight) { weight in
            packed(rotary?.cos) { cos in
                packed(rotary?.sin) { sin in
                    schnell_qk_norm_rope(floats(x), x.rows, heads, x.width / heads, x.rowStride, weight, eps, cos, sin)
                }
            }
        }
    }

    public func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, bias: Tensor?,
                          causal: Bool, into destination: Tensor?) -> Tensor {
        let result = destination ?? output([q.rows, v.width])
        precondition(result.rows == q.rows && result.width == v.width,
                     "attention: output \(result.shape) for \(q.rows) queries of width \(v.width)")
        packed(bias) { bias in
            schnell_attention(floats(q), q.rowStride, floats(k), k.rowStride, floats(v), v.rowStride,
                              floats(result), result.rowStride, q.rows, k.rows, heads, q.width / heads,
                              scale, bias, causal ? 1 : 0, kernelPrecision)
        }
        return result
    }

    public func activate(_ x: Tensor, _ kind: Activation) {
        schnell_activation(floats(x), x.rows, x.width, x.rowStride, kind.kernelCode)
    }

    public func gatedActivation(_ a: Tensor, _ b: Tensor, _ kind: Activation) -> Tensor {
        let result = output(a.shape)
        schnell_gated_activation(floats(a), a.rowStride, floats(b), b.rowStride, floats(result),
                                 a.rows, a.width, kind.kernelCode)
        return result
    }

    public func gatedAdd(_ x: Tensor, _ y: Tensor, gate: Tensor?) {
        precondition(x.rows == y.rows && x.width == y.width, "gatedAdd: \(x.shape) and \(y.shape)")
        packed(gate) { gate in
            schnell_gated_add(floats(x), x.rowStride, floats(y), y.rowStride, gate, x.rows, x.width)
        }
    }

    public func embedding(_ table: WeightTensor, ids: [Int32]) -> Tensor {
        let width = table.shape.last ?? 0
        let result = output([ids.count, width])
        let target = floats(result)
        for (row, id) in ids.enumerated() {
            let source = table.pointer + Int(id) * (table.dtype.byteCount(of: width) ?? 0)
            schnell_convert_to_f32(source, table.dtype.kernelCode, target + row * width, width)
            if let scale = table.scale?.value(row: Int(id)) {
                for index in 0..<width { target[row * width + index] *= scale }
            }
        }
        return result
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
