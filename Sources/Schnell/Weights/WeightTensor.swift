import Foundation
import SchnellKernels
#if canImport(Glibc)
import Glibc
#endif

/// Read-only memory holding weights: a map of a whole file, or (for weights quantized at load)
/// anonymous memory the engine filled. Unmapped when the last tensor viewing it goes.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let sizeBytes: Int
    /// A map of a file (its pages can be dropped and read again), not anonymous memory.
    let isFileBacked: Bool

    init(path: String) throws {
        let (descriptor, sizeBytes) = try ModelFile.open(path)
        defer { close(descriptor) }
        self.sizeBytes = sizeBytes
        guard sizeBytes > 0 else { throw WeightsError.tooSmall(file: path, sizeBytes: 0) }
        guard let mapped = mmap(nil, sizeBytes, PROT_READ, MAP_PRIVATE, descriptor, 0),
              mapped != MAP_FAILED else {
            throw WeightsError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(mapped)
        isFileBacked = true
    }

    /// `sizeBytes` of zeroed anonymous memory, written once by `fill` and read-only afterwards.
    init(anonymousBytes sizeBytes: Int, name: String, fill: (UnsafeMutableRawPointer) throws -> Void) throws {
        self.sizeBytes = max(sizeBytes, 1)
        guard let mapped = mmap(nil, self.sizeBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapped != MAP_FAILED else {
            throw WeightsError.cannotOpen(file: name, reason: "cannot allocate \(sizeBytes) bytes: \(String(cString: strerror(errno)))")
        }
        // Transparent huge pages where the system offers them on request: a merged or quantized
        // layer of hundreds of MB then costs hundreds of page faults, not hundreds of thousands.
        if self.sizeBytes >= 2 << 20 { madvise(mapped, self.sizeBytes, MADV_HUGEPAGE) }
        do {
            try fill(mapped)
        } catch {
            munmap(mapped, self.sizeBytes)
            throw error
        }
        mprotect(mapped, self.sizeBytes, PROT_READ)
        base = UnsafeRawPointer(mapped)
        isFileBacked = false
    }

    /// Lets the kernel drop the pages of bytes [offset, offset + count) that it read in: they are
    /// read from the file again if touched. Only whole pages inside the range are dropped.
    func dropPages(offset: Int, count: Int) {
        guard isFileBacked else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset + page - 1) / page * page, end = (offset + count) / page * page
        if end > start { madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED) }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), sizeBytes) }
}

/// One tensor inside a weight file's memory map, in its stored dtype (a float type or GGUF
/// blocks). An fp8 weight saved with a scale (ComfyUI's scaled fp8) carries it: the values are
/// stored value times `scale`, one scale for the tensor or one per row.
public struct WeightTensor: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// The file it came from, for error messages.
    public let file: String
    let mapping: MappedFile
    let byteOffset: Int
    /// A float tensor of 1 value (per tensor) or `shape[0]` values (per row); nil: no scale.
    public private(set) var scale: ScaleVector?

    init(name: String, dtype: DType, shape: [Int], file: String, mapping: MappedFile, byteOffset: Int,
         scale: ScaleVector? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.file = file
        self.mapping = mapping
        self.byteOffset = byteOffset
        self.scale = scale
    }

    public var count: Int { shape.reduce(1, *) }
    public var pointer: UnsafeRawPointer { mapping.base + byteOffset }
    /// Bytes of the stored values (each row whole blocks for a block type).
    public var sizeBytes: Int { dtype.byteCount(of: count) ?? 0 }

    /// Rows [start, start + count) of the first axis, as a view (no copy).
    public func rows(_ range: Range<Int>) -> WeightTensor {
        let rowElements = shape.dropFirst().reduce(1, *)
        var newShape = shape
        newShape[0] = range.count
        return WeightTensor(name: name, dtype: dtype, shape: newShape, file: file, mapping: mapping,
                            byteOffset: byteOffset + range.lowerBound * (dtype.byteCount(of: rowElements) ?? 0),
                            scale: scale.map { $0.isPerTensor ? $0 : ScaleVector(values: Array($0.values[range])) })
    }

    /// The same elements viewed with `newShape`; nil when the element counts differ or a row of
    /// a block type would not be whole blocks.
    public func reshaped(_ newShape: [Int]) -> WeightTensor? {
        guard newShape.reduce(1, *) == count, dtype.byteCount(of: newShape.last ?? 1) != nil else { return nil }
        if let scale, !scale.isPerTensor, newShape.first != shape.first { return nil }
        return WeightTensor(name: name, dtype: dtype, shape: newShape, file: file, mapping: mapping,
                            byteOffset: byteOffset, scale: scale)
    }

    /// The tensor with its values' scale attached.
    func scaled(by scale: ScaleVector) -> WeightTensor {
        var copy = self
        copy.scale = scale
        return copy
    }

    /// The values as float32 on the host, scale applied (small tensors: norms, biases, test data).
    public func floats() -> [Float] {
        var values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            schnell_convert_to_f32(pointer, dtype.kernelCode, buffer.baseAddress, count)
            initialized = count
        }
        if let scale {
            let rowElements = max(shape.dropFirst().reduce(1, *), 1)
            for index in values.indices { values[index] *= scale.value(row: index / rowElements) }
        }
        return values
    }
}

/// The scale of a scaled-fp8 weight: one value, or one per row.
public struct ScaleVector: Sendable, Equatable {
    public let values: [Float]
    public var isPerTensor: Bool { values.count == 1 }

    func value(row: Int) -> Float { isPerTensor ? values[0] : values[row] }
}
