import SchnellKernels

/// Element types of tensors and of weight files. Float types are stored value by value (their
/// raw values are safetensors' names); the block types are GGUF's quantized layouts (raw values
/// are ggml's type names), where a row is whole blocks of `blockValues` values in `blockBytes`
/// bytes. Activations are always float types; block types only ever hold weights.
public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1", q8_0 = "Q8_0"
    case q2_K = "Q2_K", q3_K = "Q3_K", q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K"

    /// Bytes per value of a float type (a block type has none: use `rowBytes`).
    public var sizeBytes: Int {
        precondition(!isBlockType, "\(rawValue) is stored in blocks, not value by value")
        return Int(schnell_dtype_size(kernelCode))
    }

    public var isBlockType: Bool { blockValues > 1 }

    /// Values per block (1 for float types) and bytes per block.
    public var blockValues: Int { Int(schnell_dtype_block_values(kernelCode)) }
    public var blockBytes: Int { Int(schnell_dtype_block_bytes(kernelCode)) }

    /// Bytes of `count` values; nil when count is not whole blocks or the size overflows.
    public func byteCount(of count: Int) -> Int? {
        guard count >= 0, count % blockValues == 0 else { return nil }
        let (bytes, overflow) = (count / blockValues).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }

    var kernelCode: Int32 {
        switch self {
        case .f32: return Int32(SCHNELL_F32.rawValue)
        case .f16: return Int32(SCHNELL_F16.rawValue)
        case .bf16: return Int32(SCHNELL_BF16.rawValue)
        case .f8e4m3: return Int32(SCHNELL_F8_E4M3.rawValue)
        case .f8e5m2: return Int32(SCHNELL_F8_E5M2.rawValue)
        case .q4_0: return Int32(SCHNELL_Q4_0.rawValue)
        case .q4_1: return Int32(SCHNELL_Q4_1.rawValue)
        case .q5_0: return Int32(SCHNELL_Q5_0.rawValue)
        case .q5_1: return Int32(SCHNELL_Q5_1.rawValue)
        case .q8_0: return Int32(SCHNELL_Q8_0.rawValue)
        case .q2_K: return Int32(SCHNELL_Q2_K.rawValue)
        case .q3_K: return Int32(SCHNELL_Q3_K.rawValue)
        case .q4_K: return Int32(SCHNELL_Q4_K.rawValue)
        case .q5_K: return Int32(SCHNELL_Q5_K.rawValue)
        case .q6_K: return Int32(SCHNELL_Q6_K.rawValue)
        }
    }

    /// ggml's type number (GGUF's tensor-info `type`), for the types Schnell reads.
    public var ggmlType: UInt32? {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q5_0: return 6
        case .q5_1: return 7
        case .q8_0: return 8
        case .q2_K: return 10
        case .q3_K: return 11
        case .q4_K: return 12
        case .q5_K: return 13
        case .q6_K: return 14
        case .bf16: return 30
        case .f8e4m3, .f8e5m2: return nil
        }
    }

    public init?(ggmlType: UInt32) {
        guard let found = DType.allCases.first(where: { $0.ggmlType == ggmlType }) else { return nil }
        self = found
    }
}
