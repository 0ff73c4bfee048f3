import XCTest
@testable import Schnell

final class TensorTests: XCTestCase {
    func testViewsShareStorageAndCopiesPack() {
        let tensor = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(tensor.columns(1..<3).values, [2, 3, 5, 6])
        XCTAssertEqual(tensor.rows(1..<2).values, [4, 5, 6])
        tensor.columns(0..<1).pointer[3] = 40  // row 1, column 0 of the parent
        XCTAssertEqual(tensor.values, [1, 2, 3, 40, 5, 6])
        XCTAssertEqual(Tensor.concatenateColumns([tensor.columns(2..<3), tensor.columns(0..<1)]).values, [3, 1, 6, 40])
        XCTAssertEqual(Tensor.concatenateRows([tensor.rows(1..<2), tensor.rows(0..<1)]).values, [40, 5, 6, 1, 2, 3])
    }

    func testNewTensorsAreZeroEvenFromReusedBuffers() {
        do {
            let used = Tensor(zeros: [1000])
            used.pointer.update(repeating: 7, count: 1000)
        }
        XCTAssertEqual(Tensor(zeros: [1000]).values, [Float](repeating: 0, count: 1000))
    }

    func testBufferPoolReusesBySizeAndStaysWithinItsLimit() {
        let pool = BufferPool(limitBytes: 4096)
        let first = pool.take(count: 100)
        XCTAssertEqual(first.capacity, 100, "a fresh buffer has the size asked for")
        pool.give(first.pointer, count: 100)
        XCTAssertTrue(pool.take(count: 100) == first, "a buffer of the same size is reused")
        // 1,000 floats (4,000 bytes) exceed a quarter of the limit: freed at once, never held.
        let large = pool.take(count: 1000)
        pool.give(large.pointer, count: 1000)
        XCTAssertEqual(pool.heldBytesForTesting, 0)
        for _ in 0..<20 { pool.give(UnsafeMutablePointer<Float>.allocate(capacity: 200), count: 200) }
        XCTAssertLessThanOrEqual(pool.heldBytesForTesting, 4096)
        pool.give(first.pointer, count: 100)
    }

    func testBufferPoolHandsOutLargerFreeBuffersUpToFourTimesTheSize() {
        let pool = BufferPool(limitBytes: 1 << 20)
        let small = pool.take(count: 350), big = pool.take(count: 450)
        pool.give(big.pointer, count: 450)
        pool.give(small.pointer, count: 350)
        let taken = pool.take(count: 100)
        XCTAssertTrue(taken == small, "the smallest free buffer of up to four times the size")
        let fresh = pool.take(count: 100)
        XCTAssertEqual(fresh.capacity, 100, "450 floats is more than four times 100: a fresh buffer instead")
        XCTAssertFalse(fresh.pointer == big.pointer)
        XCTAssertTrue(pool.take(count: 200) == big)
        for buffer in [taken, fresh, big] { pool.give(buffer.pointer, count: buffer.capacity) }
    }
}
