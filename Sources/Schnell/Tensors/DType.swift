import SchnellKernels

/// Element types of tensors and of weight files (safetensors' names).
public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f8e4m3 = "F8_E4M3"

    public var sizeBytes: Int { self == .f32 ? 4 : (self == .f8e4m3 ? 1 : 2) }
    var kernelCode: Int32 {
        switch self {
        case .f32: return Int32(SCHNELL_F32.rawValue)
        case .f16: return Int32(SCHNELL_F16.rawValue)
        case .bf16: return Int32(SCHNELL_BF16.rawValue)
        case .f8e4m3: return Int32(SCHNELL_F8_E4M3.rawValue)
        }
    }
}
