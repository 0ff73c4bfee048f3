import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes a GGUF v3 file: string metadata (and `general.quantization_version` 2), tensor infos
/// with dims innermost first, then each tensor's bytes at offsets aligned to 32. The file is
/// written next to its destination under a temporary name and renamed into place when
/// complete, so a failure never leaves a partial file under the name asked for, nor touches a
/// file already there.
public struct GGUFWriter {
    public struct TensorInfo {
        public let name: String
        public let shape: [Int]
        public let dtype: DType
        /// Fills the tensor's bytes (`dtype.byteCount(of: count)` of them).
        public let fill: (UnsafeMutableRawPointer) throws -> Void
    }

    static let alignment = 32

    public static func write(to path: String, metadata: [(String, String)], tensors: [TensorInfo]) throws {
        var header = Data("GGUF".utf8)
        func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) } }
        func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) } }
        func string(_ text: String) {
            u64(UInt64(text.utf8.count))
            header.append(contentsOf: Array(text.utf8))
        }
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count + 1))
        for (key, value) in metadata {
            string(key)
            u32(8)
            string(value)
        }
        string("general.quantization_version")
        u32(4)
        u32(2)
        var offsets: [Int] = []
        var offset = 0
        for tensor in tensors {
            guard let bytes = tensor.dtype.byteCount(of: tensor.shape.reduce(1, *)), let ggmlType = tensor.dtype.ggmlType else {
                throw WeightsError.invalidGGUF(file: path, reason: "tensor '\(tensor.name)' of shape \(tensor.shape) cannot be stored as \(tensor.dtype.rawValue)")
            }
            string(tensor.name)
            u32(UInt32(tensor.shape.count))
            for size in tensor.shape.reversed() { u64(UInt64(size)) }
            u32(ggmlType)
            u64(UInt64(offset))
            offsets.append(offset)
            offset += (bytes + alignment - 1) / alignment * alignment
        }
        header.append(contentsOf: [UInt8](repeating: 0, count: (alignment - header.count % alignment) % alignment))

        let temporary = path + ".partial-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw WeightsError.cannotOpen(file: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        do {
            try writeAll(descriptor, header, at: 0, path: path)
            var buffer = Data()
            for (tensor, tensorOffset) in zip(tensors, offsets) {
                let bytes = tensor.dtype.byteCount(of: tensor.shape.reduce(1, *)) ?? 0
                let padded = (bytes + alignment - 1) / alignment * alignment
                if buffer.count < padded { buffer = Data(count: padded) }
                try buffer.withUnsafeMutableBytes { raw in
                    guard let base = raw.baseAddress else { return }
                    memset(base, 0, padded)
                    try tensor.fill(base)
                }
                try writeAll(descriptor, buffer.prefix(padded), at: header.count + tensorOffset, path: path)
            }
            guard fsync(descriptor) == 0, close(descriptor) == 0 else {
                throw WeightsError.cannotOpen(file: path, reason: "cannot finish writing: \(String(cString: strerror(errno)))")
            }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw WeightsError.cannotOpen(file: path, reason: "cannot move the finished file into place: \(reason)")
        }
    }

    private static func writeAll(_ descriptor: Int32, _ data: Data, at offset: Int, path: String) throws {
        try data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var written = 0
            while written < raw.count {
                let count = pwrite(descriptor, base + written, raw.count - written, off_t(offset + written))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    throw WeightsError.cannotOpen(file: path, reason: "write failed: \(String(cString: strerror(errno)))")
                }
                written += count
            }
        }
    }
}
