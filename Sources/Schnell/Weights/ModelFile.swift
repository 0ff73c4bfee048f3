import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Opening the files a user points the loaders at. A FIFO, socket or device named like a model
/// file would block `open` or `read` for ever, so a path is checked to be a regular file before
/// it is opened, and opened with O_NONBLOCK so that one swapped in after the check cannot block
/// either (the descriptor is checked again).
enum ModelFile {
    /// Configs, shard indexes and tokenizer files are a few MB; anything past this is not one.
    static let maxSmallFileBytes = 64 << 20

    /// A read-only descriptor of the regular file at `path`, and its size in bytes. The caller
    /// closes it.
    static func open(_ path: String) throws -> (descriptor: Int32, sizeBytes: Int) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw WeightsError.cannotOpen(file: path, reason: String(cString: strerror(errno)))
        }
        try requireRegular(info, path: path)
        let descriptor = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw WeightsError.cannotOpen(file: path, reason: String(cString: strerror(errno)))
        }
        do {
            guard fstat(descriptor, &info) == 0 else {
                throw WeightsError.cannotOpen(file: path, reason: String(cString: strerror(errno)))
            }
            try requireRegular(info, path: path)
        } catch {
            close(descriptor)
            throw error
        }
        return (descriptor, Int(info.st_size))
    }

    /// The whole of a small regular file (a JSON config, a shard index, a tokenizer file).
    static func contents(of path: String, limitBytes: Int = maxSmallFileBytes) throws -> Data {
        let (descriptor, sizeBytes) = try open(path)
        defer { close(descriptor) }
        guard sizeBytes <= limitBytes else {
            throw WeightsError.cannotOpen(file: path, reason: "\(sizeBytes) bytes is more than the \(limitBytes) bytes such a file may have")
        }
        var data = Data(count: sizeBytes)
        var filled = 0
        while filled < sizeBytes {
            let count = data.withUnsafeMutableBytes { buffer in
                buffer.baseAddress.map { read(descriptor, $0 + filled, sizeBytes - filled) } ?? 0
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw WeightsError.cannotOpen(file: path, reason: count < 0 ? String(cString: strerror(errno)) : "the file shrank while being read")
            }
            filled += count
        }
        return data
    }

    private static func requireRegular(_ info: stat, path: String) throws {
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            let kind: String
            switch info.st_mode & S_IFMT {
            case S_IFDIR: kind = "a folder"
            case S_IFIFO: kind = "a FIFO"
            case S_IFSOCK: kind = "a socket"
            case S_IFCHR, S_IFBLK: kind = "a device"
            default: kind = "a special file"
            }
            throw WeightsError.cannotOpen(file: path, reason: "\(kind), not a regular file")
        }
    }
}

/// The product of sizes read from a file; nil when it does not fit in an Int.
func checkedProduct(_ factors: [Int]) -> Int? {
    var product = 1
    for factor in factors {
        let (result, overflow) = product.multipliedReportingOverflow(by: factor)
        if overflow { return nil }
        product = result
    }
    return product
}
