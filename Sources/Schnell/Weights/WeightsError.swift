/// Everything that can be wrong with a weight file or folder. Each message names the file and,
/// where there is one, the tensor, so a user can tell which download is damaged.
public enum WeightsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(file: String, reason: String)
    case tooSmall(file: String, sizeBytes: Int)
    case headerLengthPastEnd(file: String, headerBytes: UInt64, fileBytes: Int)
    case invalidHeader(file: String, reason: String)
    case invalidGGUF(file: String, reason: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case offsetsOutOfRange(file: String, tensor: String, begin: Int, end: Int, dataBytes: Int)
    case overlapping(file: String, tensor: String, other: String)
    case sizeMismatch(file: String, tensor: String, shape: [Int], dtype: String, spanBytes: Int)
    case truncated(file: String, tensor: String, needBytes: Int, haveBytes: Int)
    case invalidIndex(file: String, reason: String)
    case missingTensor(name: String, file: String)
    case unexpectedTensors(names: [String], file: String)
    case wrongShape(name: String, file: String, expected: [Int], actual: [Int])
    case unrecognisedModel(path: String, reason: String)
    case invalidConfig(file: String, reason: String)
    /// A LoRA file that cannot be applied to this model; `key` is the file's tensor at fault,
    /// nil for a problem of the whole file.
    case invalidLoRA(file: String, key: String?, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "\(file): cannot open: \(reason)"
        case let .tooSmall(file, size):
            return "\(file): \(size) bytes is too small for a safetensors file (needs an 8-byte header length)"
        case let .headerLengthPastEnd(file, header, fileBytes):
            return "\(file): header length \(header) runs past the end of the \(fileBytes)-byte file"
        case let .invalidHeader(file, reason):
            return "\(file): invalid safetensors header: \(reason)"
        case let .invalidGGUF(file, reason):
            return "\(file): invalid GGUF file: \(reason)"
        case let .unsupportedDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' has unsupported dtype \(dtype)\(dtype.contains("(") ? "" : " (supported: F32, F16, BF16, F8_E4M3, F8_E5M2)")"
        case let .offsetsOutOfRange(file, tensor, begin, end, data):
            return "\(file): tensor '\(tensor)' data offsets [\(begin), \(end)) lie outside the \(data)-byte data section"
        case let .overlapping(file, tensor, other):
            return "\(file): tensor '\(tensor)' overlaps tensor '\(other)'"
        case let .sizeMismatch(file, tensor, shape, dtype, span):
            return "\(file): tensor '\(tensor)' of shape \(shape) and dtype \(dtype) does not fit its \(span)-byte span"
        case let .truncated(file, tensor, need, have):
            return "\(file): file is truncated: tensor '\(tensor)' needs data up to byte \(need) of the data section but only \(have) bytes are there"
        case let .invalidIndex(file, reason):
            return "\(file): invalid shard index: \(reason)"
        case let .missingTensor(name, file):
            return "\(file): missing tensor '\(name)'"
        case let .unexpectedTensors(names, file):
            let shown = names.prefix(5).joined(separator: "', '")
            return "\(file): unexpected tensor\(names.count > 1 ? "s" : "") '\(shown)'\(names.count > 5 ? " and \(names.count - 5) more" : "")"
        case let .wrongShape(name, file, expected, actual):
            return "\(file): tensor '\(name)' has shape \(actual), expected \(expected)"
        case let .unrecognisedModel(path, reason):
            return "\(path): not a recognised model: \(reason)"
        case let .invalidConfig(file, reason):
            return "\(file): invalid configuration: \(reason)"
        case let .invalidLoRA(file, key?, reason):
            return "\(file): LoRA tensor '\(key)' \(reason)"
        case let .invalidLoRA(file, nil, reason):
            return "\(file): not a usable LoRA file: \(reason)"
        }
    }
}
