import Foundation

/// A parsed GGUF file (versions 2 and 3), memory-mapped: the header (magic `GGUF`, version,
/// tensor count, metadata count), the metadata key/value pairs, the tensor infos (name, dims
/// innermost first, ggml type, offset), then the data section at the next multiple of
/// `general.alignment` (default 32), where every tensor's offset must be aligned too.
///
/// Every count and length in the header is checked against the bytes left before anything is
/// allocated for it, so a damaged file is refused with the file (and tensor) named, never a
/// crash or a huge allocation.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let tensors: [String: WeightTensor]
    /// Scalar metadata as text (strings as they are, numbers printed); arrays as
    /// "[N values]" (the tokenizer tables some files carry are not needed here).
    public let metadata: [String: String]
    /// Tensor names in file order, for reports.
    public let tensorOrder: [String]
    public let alignment: Int

    /// Larger values than these are not a model file's: a FLUX transformer has 776 tensors and
    /// a few dozen metadata keys (an LLM's vocabulary array may hold a few hundred thousand).
    static let maxTensors = 1 << 20
    static let maxKeys = 1 << 20
    static let maxDimensions = 4
    static let maxNameBytes = 1 << 16

    public init(path: String) throws {
        let mapping: MappedFile
        do {
            mapping = try MappedFile(path: path)
        } catch WeightsError.tooSmall {
            throw WeightsError.invalidGGUF(file: path, reason: "the file is empty")
        }
        var reader = Reader(base: mapping.base, size: mapping.sizeBytes, path: path)
        guard mapping.sizeBytes >= 4, try reader.bytes(4) == Array("GGUF".utf8) else {
            throw WeightsError.invalidGGUF(file: path, reason: "no GGUF magic at the start (the first 4 bytes must be 'GGUF')")
        }
        version = try reader.u32("version")
        guard version == 2 || version == 3 else {
            throw WeightsError.invalidGGUF(file: path, reason: "version \(version) is not supported (2 and 3 are)")
        }
        let tensorCount = try reader.count("tensor count", limit: Self.maxTensors, minimumBytesEach: 24)
        let keyCount = try reader.count("metadata count", limit: Self.maxKeys, minimumBytesEach: 13)
        var metadata: [String: String] = [:]
        var alignment = 32
        for _ in 0..<keyCount {
            let key = try reader.string("metadata key")
            let type = try reader.u32("type of metadata '\(key)'")
            guard metadata[key] == nil else {
                throw WeightsError.invalidGGUF(file: path, reason: "metadata key '\(key)' appears twice")
            }
            let value = try reader.value(type: type, key: key, depth: 0)
            if key == "general.alignment" {
                guard type == 4, let number = Int(value), number > 0, number & (number - 1) == 0, number <= 1 << 20 else {
                    throw WeightsError.invalidGGUF(file: path, reason: "general.alignment must be a uint32 power of two, not \(value)")
                }
                alignment = number
            }
            metadata[key] = value
        }
        var infos: [(name: String, shape: [Int], dtype: DType, offset: Int, bytes: Int)] = []
        var seen = Set<String>()
        for index in 0..<tensorCount {
            let name = try reader.string("name of tensor \(index)")
            guard seen.insert(name).inserted else {
                throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(name)' appears twice")
            }
            let dimensionCount = try reader.u32("dimensions of '\(name)'")
            guard dimensionCount >= 1, dimensionCount <= Self.maxDimensions else {
                throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(name)' has \(dimensionCount) dimensions (1 to 4 are allowed)")
            }
            var dimensions: [Int] = []
            for _ in 0..<dimensionCount {
                let size = try reader.u64("dimensions of '\(name)'")
                guard size >= 1, size <= UInt64(Int32.max) else {
                    throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(name)' has a dimension of \(size)")
                }
                dimensions.append(Int(size))
            }
            let typeNumber = try reader.u32("type of '\(name)'")
            guard let dtype = DType(ggmlType: typeNumber) else {
                throw WeightsError.unsupportedDType(file: path, tensor: name, dtype: Self.typeName(typeNumber))
            }
            let offset = try reader.u64("offset of '\(name)'")
            guard dimensions[0] % dtype.blockValues == 0 else {
                throw WeightsError.invalidGGUF(
                    file: path, reason: "tensor '\(name)': a row of \(dimensions[0]) values is not whole \(dtype.rawValue) blocks of \(dtype.blockValues)")
            }
            let shape = Array(dimensions.reversed())
            guard let count = checkedProduct(shape), let bytes = dtype.byteCount(of: count) else {
                throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(name)' of shape \(shape) is too large")
            }
            guard offset <= UInt64(Int.max) else {
                throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(name)' starts at offset \(offset), past the end of any file")
            }
            guard Int(offset) % alignment == 0 else {
                throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(name)' starts at offset \(offset), not a multiple of the alignment \(alignment)")
            }
            infos.append((name, shape, dtype, Int(offset), bytes))
        }
        let dataStart = (reader.position + alignment - 1) / alignment * alignment
        let dataBytes = max(mapping.sizeBytes - dataStart, 0)
        var tensors: [String: WeightTensor] = [:]
        for info in infos {
            let (end, overflow) = info.offset.addingReportingOverflow(info.bytes)
            guard !overflow, end <= dataBytes else {
                // A tensor that starts inside the data section and runs past it: a file cut short.
                if info.offset < dataBytes {
                    throw WeightsError.truncated(file: path, tensor: info.name, needBytes: overflow ? Int.max : end, haveBytes: dataBytes)
                }
                throw WeightsError.offsetsOutOfRange(file: path, tensor: info.name, begin: info.offset,
                                                     end: overflow ? Int.max : end, dataBytes: dataBytes)
            }
            tensors[info.name] = WeightTensor(name: info.name, dtype: info.dtype, shape: info.shape, file: path,
                                              mapping: mapping, byteOffset: dataStart + info.offset)
        }
        let spans = infos.sorted { ($0.offset, $0.bytes) < ($1.offset, $1.bytes) }
        for (previous, next) in zip(spans, spans.dropFirst()) where next.offset < previous.offset + previous.bytes {
            throw WeightsError.overlapping(file: path, tensor: next.name, other: previous.name)
        }
        self.path = path
        self.tensors = tensors
        self.metadata = metadata
        self.tensorOrder = infos.map(\.name)
        self.alignment = alignment
    }

    /// ggml's name of a type number, for messages about types Schnell does not read.
    static func typeName(_ number: UInt32) -> String {
        let names: [UInt32: String] = [9: "Q8_1", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
                                       20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
                                       27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"]
        let supported = DType.allCases.filter { $0.ggmlType != nil }.map(\.rawValue).joined(separator: ", ")
        return "\(names[number] ?? "ggml type \(number)") (GGUF types read: \(supported))"
    }

    /// A bounds-checked cursor over the mapped bytes.
    struct Reader {
        let base: UnsafeRawPointer
        let size: Int
        let path: String
        var position = 0

        var remaining: Int { size - position }

        mutating func bytes(_ count: Int) throws -> [UInt8] {
            try need(count, "data")
            defer { position += count }
            return Array(UnsafeRawBufferPointer(start: base + position, count: count))
        }

        func need(_ count: Int, _ what: String) throws {
            guard count >= 0, count <= remaining else {
                throw WeightsError.invalidGGUF(file: path, reason: "the header is truncated (reading \(what) at byte \(position) of \(size))")
            }
        }

        mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
            try need(MemoryLayout<T>.size, what)
            defer { position += MemoryLayout<T>.size }
            return T(littleEndian: base.loadUnaligned(fromByteOffset: position, as: T.self))
        }

        mutating func u32(_ what: String) throws -> UInt32 { try load(UInt32.self, what) }
        mutating func u64(_ what: String) throws -> UInt64 { try load(UInt64.self, what) }

        /// A count of items, each at least `minimumBytesEach` bytes long: refused when the
        /// bytes left cannot hold that many, or past `limit`.
        mutating func count(_ what: String, limit: Int, minimumBytesEach: Int) throws -> Int {
            let value = try u64(what)
            guard value <= UInt64(limit), Int(value) <= remaining / max(minimumBytesEach, 1) else {
                throw WeightsError.invalidGGUF(file: path, reason: "\(what) \(value) is more than the file can hold")
            }
            return Int(value)
        }

        mutating func string(_ what: String) throws -> String {
            let length = try u64(what)
            guard length <= UInt64(min(remaining, GGUFFile.maxNameBytes * 1024)) else {
                throw WeightsError.invalidGGUF(file: path, reason: "\(what): a string of \(length) bytes runs past the end of the file")
            }
            let text = try bytes(Int(length))
            guard let decoded = String(validating: text, as: UTF8.self) else {
                throw WeightsError.invalidGGUF(file: path, reason: "\(what) is not UTF-8")
            }
            return decoded
        }

        /// One metadata value of GGUF type `type`, as text.
        mutating func value(type: UInt32, key: String, depth: Int) throws -> String {
            let what = "metadata '\(key)'"
            switch type {
            case 0: return String(try load(UInt8.self, what))
            case 1: return String(try load(Int8.self, what))
            case 2: return String(try load(UInt16.self, what))
            case 3: return String(try load(Int16.self, what))
            case 4: return String(try load(UInt32.self, what))
            case 5: return String(try load(Int32.self, what))
            case 6: return String(Float(bitPattern: try load(UInt32.self, what)))
            case 7:
                let flag = try load(UInt8.self, what)
                guard flag <= 1 else { throw WeightsError.invalidGGUF(file: path, reason: "\(what) is a bool of value \(flag)") }
                return flag == 1 ? "true" : "false"
            case 8: return try string(what)
            case 9:
                guard depth < 2 else { throw WeightsError.invalidGGUF(file: path, reason: "\(what) nests arrays too deeply") }
                let itemType = try u32(what)
                let minimum = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8][Int(itemType)]
                guard let minimum else {
                    throw WeightsError.invalidGGUF(file: path, reason: "\(what) is an array of unknown type \(itemType)")
                }
                let items = try count(what, limit: Int(Int32.max), minimumBytesEach: minimum)
                for _ in 0..<items { _ = try value(type: itemType, key: key, depth: depth + 1) }
                return "[\(items) values]"
            case 10: return String(try u64(what))
            case 11: return String(try load(Int64.self, what))
            case 12: return String(Double(bitPattern: try u64(what)))
            default:
                throw WeightsError.invalidGGUF(file: path, reason: "\(what) has unknown type \(type)")
            }
        }
    }
}
