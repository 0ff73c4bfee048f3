import Foundation
import SchnellKernels
#if canImport(Glibc)
import Glibc
#endif

/// A parsed safetensors file: an 8-byte little-endian header length, a JSON header mapping
/// names to {dtype, shape, data_offsets}, then the data section the offsets point into.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let tensors: [String: WeightTensor]
    public let metadata: [String: String]

    /// The safetensors reference reader refuses longer headers; a real one is a few MB.
    static let maxHeaderBytes: UInt64 = 100_000_000

    public init(path: String) throws {
        let mapping = try MappedFile(path: path)
        guard mapping.sizeBytes >= 8 else { throw WeightsError.tooSmall(file: path, sizeBytes: mapping.sizeBytes) }
        let headerBytes = mapping.base.loadUnaligned(as: UInt64.self).littleEndian
        guard headerBytes <= UInt64(mapping.sizeBytes - 8) else {
            throw WeightsError.headerLengthPastEnd(file: path, headerBytes: headerBytes, fileBytes: mapping.sizeBytes)
        }
        guard headerBytes <= Self.maxHeaderBytes else {
            throw WeightsError.invalidHeader(file: path, reason: "the header is \(headerBytes) bytes, more than the \(Self.maxHeaderBytes) allowed")
        }
        let headerData = Data(bytes: mapping.base + 8, count: Int(headerBytes))
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: headerData)
        } catch {
            throw WeightsError.invalidHeader(file: path, reason: "not valid JSON")
        }
        guard let header = parsed as? [String: Any] else {
            throw WeightsError.invalidHeader(file: path, reason: "the header is not a JSON object")
        }
        let dataStart = 8 + Int(headerBytes)
        let dataBytes = mapping.sizeBytes - dataStart
        var metadata: [String: String] = [:]
        var spans: [(name: String, begin: Int, end: Int)] = []
        var tensors: [String: WeightTensor] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                for (key, item) in value as? [String: Any] ?? [:] { metadata[key] = "\(item)" }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeValues = entry["shape"] as? [Any],
                  let offsetValues = entry["data_offsets"] as? [Any], offsetValues.count == 2 else {
                throw WeightsError.invalidHeader(file: path, reason: "entry '\(name)' lacks dtype, shape or two data_offsets")
            }
            let shape = try shapeValues.map { try Self.integer($0, path: path, what: "shape of '\(name)'") }
            let begin = try Self.integer(offsetValues[0], path: path, what: "data_offsets of '\(name)'")
            let end = try Self.integer(offsetValues[1], path: path, what: "data_offsets of '\(name)'")
            guard let dtype = DType(rawValue: dtypeName) else {
                throw WeightsError.unsupportedDType(file: path, tensor: name, dtype: dtypeName)
            }
            guard begin <= end else {
                throw WeightsError.offsetsOutOfRange(file: path, tensor: name, begin: begin, end: end, dataBytes: dataBytes)
            }
            // Checked: [2^31, 2^31] F32 is 2^64 bytes, which wraps to 0 and would fit a 0-byte span.
            guard !dtype.isBlockType, checkedProduct(shape + [dtype.sizeBytes]) == end - begin else {
                throw WeightsError.sizeMismatch(file: path, tensor: name, shape: shape, dtype: dtypeName, spanBytes: end - begin)
            }
            spans.append((name, begin, end))
            tensors[name] = WeightTensor(name: name, dtype: dtype, shape: shape, file: path,
                                         mapping: mapping, byteOffset: dataStart + begin)
        }
        spans.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (previous, next) in zip(spans, spans.dropFirst()) where next.begin < previous.end {
            throw WeightsError.overlapping(file: path, tensor: next.name, other: previous.name)
        }
        // Past the end: a file cut short if the tensors tile the data section without gaps
        // (what writers produce), otherwise offsets that point nowhere.
        if let last = spans.max(by: { $0.end < $1.end }), last.end > dataBytes {
            var contiguous = spans.first?.begin == 0
            for (previous, next) in zip(spans, spans.dropFirst()) where next.begin != previous.end { contiguous = false }
            if contiguous {
                throw WeightsError.truncated(file: path, tensor: last.name, needBytes: last.end, haveBytes: dataBytes)
            }
            let outside = spans.first { $0.end > dataBytes } ?? last
            throw WeightsError.offsetsOutOfRange(file: path, tensor: outside.name, begin: outside.begin, end: outside.end, dataBytes: dataBytes)
        }
        self.path = path
        self.tensors = tensors
        self.metadata = metadata
    }

    /// On Linux every JSON 0 and 1 also casts to Bool, so JSON booleans are told apart by the
    /// NSNumber's type code ("c"), not by `is Bool`.
    private static func integer(_ value: Any, path: String, what: String) throws -> Int {
        let isBoolean = (value as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? false
        if !isBoolean, let number = value as? Int, number >= 0, number <= Int(Int32.max) * 1024 {
            return number
        }
        throw WeightsError.invalidHeader(file: path, reason: "\(what) must hold non-negative integers")
    }
}
