import Foundation
import SchnellKernels

/// Owns one float32 allocation; tensors are views into it. Buffers come from and go back to
/// `BufferPool`, so the same sizes allocated step after step reuse memory that is already
/// mapped instead of faulting fresh pages in each time.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// `zeroed` false leaves the contents as they come (stale values of a reused buffer): only
    /// for outputs a kernel writes in full, whose fresh pages are then first touched by the
    /// kernel's threads rather than by a single-threaded fill.
    /// Floats in the allocation: `count`, or more when the pool handed out a larger free buffer.
    private let capacity: Int

    init(count: Int, zeroed: Bool = true) {
        self.count = count
        (pointer, capacity) = BufferPool.shared.take(count: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    deinit { BufferPool.shared.give(pointer, count: capacity) }
}

/// Recently freed tensor buffers by size, up to `limitBytes` in all (oldest dropped first). A
/// request takes a free buffer of its exact size, else the smallest free one of up to four times
/// its size: memory this process has already touched costs nothing to reuse, while fresh pages are
/// expensive to fault in (the VAE decoder's activations change size from stage to stage).
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool(limitBytes: 1 << 30)

    private let lock = NSLock()
    private let limitBytes: Int
    private var heldBytes = 0
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var order: [(count: Int, pointer: UnsafeMutablePointer<Float>)] = []

    init(limitBytes: Int) { self.limitBytes = limitBytes }

    deinit { order.forEach { schnell_buffer_free($0.pointer) } }

    /// Fresh memory, 64-byte aligned (Kernels/cpu/memory.c).
    private static func allocate(count: Int) -> UnsafeMutablePointer<Float> {
        guard let raw = schnell_buffer_allocate(count * MemoryLayout<Float>.size) else {
            fatalError("out of memory: a tensor of \(count) floats (\(count * MemoryLayout<Float>.size >> 20) MiB)")
        }
        return raw.bindMemory(to: Float.self, capacity: count)
    }

    var heldBytesForTesting: Int { lock.withLock { heldBytes } }

    /// A buffer of at least `count` floats and its real size in floats.
    func take(count: Int) -> (pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        lock.lock()
        defer { lock.unlock() }
        let fits = free[count]?.isEmpty == false
            ? count
            : free.filter { $0.key > count && $0.key <= 4 * count && !$0.value.isEmpty }.keys.min()
        guard let capacity = fits, let pointer = free[capacity]?.popLast() else {
            return (Self.allocate(count: count), count)
        }
        heldBytes -= capacity * MemoryLayout<Float>.size
        if let index = order.lastIndex(where: { $0.pointer == pointer }) { order.remove(at: index) }
        return (pointer, capacity)
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        let bytes = count * MemoryLayout<Float>.size
        lock.lock()
        defer { lock.unlock() }
        guard bytes <= limitBytes / 4 else { return schnell_buffer_free(pointer) }
        free[count, default: []].append(pointer)
        order.append((count, pointer))
        heldBytes += bytes
        while heldBytes > limitBytes, !order.isEmpty {
            let oldest = order.removeFirst()
            if let index = free[oldest.count]?.firstIndex(of: oldest.pointer) { free[oldest.count]?.remove(at: index) }
            heldBytes -= oldest.count * MemoryLayout<Float>.size
            schnell_buffer_free(oldest.pointer)
        }
    }
}

/// A float32 activation tensor, row-major. The last dimension is the row width; rows may be
/// `rowStride` floats apart, so a column slice of a wider tensor (q out of a fused q|k|v
/// projection) is a view, not a copy. Batch is always 1: `shape` has no batch axis.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let rowStride: Int
    let storage: TensorStorage
    let offset: Int

    public init(zeros shape: [Int]) {
        self.init(shape: shape, zeroed: true)
    }

    /// A tensor whose every element the caller overwrites before reading (kernel outputs).
    init(uninitialized shape: [Int]) {
        self.init(shape: shape, zeroed: false)
    }

    private init(shape: [Int], zeroed: Bool) {
        self.shape = shape
        rowStride = shape.last ?? 1
        storage = TensorStorage(count: shape.reduce(1, *), zeroed: zeroed)
        offset = 0
    }

    public init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill shape \(shape)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { storage.pointer.update(from: base, count: values.count) }
        }
    }

    init(shape: [Int], rowStride: Int, storage: TensorStorage, offset: Int) {
        self.shape = shape
        self.rowStride = rowStride
        self.storage = storage
        self.offset = offset
    }

    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }
    public var count: Int { shape.reduce(1, *) }
    /// Row width (the last dimension).
    public var width: Int { shape.last ?? 1 }
    /// Number of rows (the product of all but the last dimension).
    public var rows: Int { shape.dropLast().reduce(1, *) }
    public var isContiguous: Bool { rowStride == width }

    /// Rows [start, start + count) as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(shape.count == 2 && range.lowerBound >= 0 && range.upperBound <= rows)
        return Tensor(shape: [range.count, width], rowStride: rowStride, storage: storage,
                      offset: offset + range.lowerBound * rowStride)
    }

    /// Columns [start, start + count) of every row as a strided view.
    public func columns(_ range: Range<Int>) -> Tensor {
        precondition(shape.count == 2 && range.lowerBound >= 0 && range.upperBound <= width)
        return Tensor(shape: [rows, range.count], rowStride: rowStride, storage: storage,
                      offset: offset + range.lowerBound)
    }

    /// The same contiguous data under another shape of equal size.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous && newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, rowStride: newShape.last ?? 1, storage: storage, offset: offset)
    }

    /// A contiguous copy (the identity for contiguous tensors is still a copy).
    public func copy() -> Tensor {
        let result = Tensor(uninitialized: shape)
        for r in 0..<rows {
            (result.pointer + r * width).update(from: pointer + r * rowStride, count: width)
        }
        return result
    }

    /// The values in row-major order (contiguous copy).
    public var values: [Float] {
        let packed = isContiguous ? self : copy()
        return Array(UnsafeBufferPointer(start: packed.pointer, count: count))
    }

    /// Rows of several tensors of equal width, stacked in order: [sum rows, width].
    public static func concatenateRows(_ parts: [Tensor]) -> Tensor {
        let width = parts.first?.width ?? 0
        precondition(parts.allSatisfy { $0.width == width }, "row widths differ")
        let result = Tensor(uninitialized: [parts.reduce(0) { $0 + $1.rows }, width])
        var row = 0
        for part in parts {
            for r in 0..<part.rows {
                (result.pointer + (row + r) * width).update(from: part.pointer + r * part.rowStride, count: width)
            }
            row += part.rows
        }
        return result
    }

    /// Row-wise concatenation of tensors with equal row counts: [rows, sum of widths].
    public static func concatenateColumns(_ parts: [Tensor]) -> Tensor {
        let rows = parts.first?.rows ?? 0
        precondition(parts.allSatisfy { $0.rows == rows }, "row counts differ")
        let width = parts.reduce(0) { $0 + $1.width }
        let result = Tensor(uninitialized: [rows, width])
        var column = 0
        for part in parts {
            for r in 0..<rows {
                (result.pointer + r * width + column).update(from: part.pointer + r * part.rowStride, count: part.width)
            }
            column += part.width
        }
        return result
    }
}
