import Foundation
import SchnellKernels

/// CPU tensor memory: one 64-byte aligned host allocation (Kernels/cpu/memory.c) from a
/// backend's `BufferPool`, handed back to it when the last tensor viewing it goes.
final class HostStorage: TensorStorage, @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let sizeBytes: Int
    /// Bytes in the allocation: `sizeBytes`, or more when the pool handed out a larger free buffer.
    private let capacityBytes: Int
    private let pool: BufferPool

    init(sizeBytes: Int, pool: BufferPool) {
        self.sizeBytes = sizeBytes
        self.pool = pool
        (base, capacityBytes) = pool.take(bytes: max(sizeBytes, 1))
    }

    deinit { pool.give(base, bytes: capacityBytes) }
}

/// Recently freed tensor buffers by size, up to `limitBytes` in all (oldest dropped first). A
/// request takes a free buffer of its exact size, else the smallest free one of up to four times
/// its size: memory this process has already touched costs nothing to reuse, while fresh pages are
/// expensive to fault in (the VAE decoder's activations change size from stage to stage).
final class BufferPool: @unchecked Sendable {
    private let lock = NSLock()
    private let limitBytes: Int
    private var heldBytes = 0
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var order: [(bytes: Int, pointer: UnsafeMutableRawPointer)] = []

    init(limitBytes: Int) { self.limitBytes = limitBytes }

    deinit { order.forEach { schnell_buffer_free($0.pointer) } }

    private static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        guard let raw = schnell_buffer_allocate(bytes) else {
            fatalError("out of memory: a tensor of \(bytes >> 20) MiB")
        }
        return raw
    }

    var heldBytesForTesting: Int { lock.withLock { heldBytes } }

    /// A buffer of at least `bytes` and its real size.
    func take(bytes: Int) -> (pointer: UnsafeMutableRawPointer, capacityBytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        let fits = free[bytes]?.isEmpty == false
            ? bytes
            : free.filter { $0.key > bytes && $0.key <= 4 * bytes && !$0.value.isEmpty }.keys.min()
        guard let capacity = fits, let pointer = free[capacity]?.popLast() else {
            return (Self.allocate(bytes: bytes), bytes)
        }
        heldBytes -= capacity
        if let index = order.lastIndex(where: { $0.pointer == pointer }) { order.remove(at: index) }
        return (pointer, capacity)
    }

    func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard bytes <= limitBytes / 4 else { return schnell_buffer_free(pointer) }
        free[bytes, default: []].append(pointer)
        order.append((bytes, pointer))
        heldBytes += bytes
        while heldBytes > limitBytes, !order.isEmpty {
            let oldest = order.removeFirst()
            if let index = free[oldest.bytes]?.firstIndex(of: oldest.pointer) { free[oldest.bytes]?.remove(at: index) }
            heldBytes -= oldest.bytes
            schnell_buffer_free(oldest.pointer)
        }
    }
}
