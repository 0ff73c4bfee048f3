import SchnellKernels
import XCTest
@testable import Schnell

/// Tensors, their views and the CPU backend's memory: transfers, copies into views, the buffer pool,
/// and two backends of different precisions side by side.
final class TensorTests: XCTestCase {
    let backend = CPUBackend()

    func testViewsShareStorageAndCopiesPack() {
        let tensor = backend.upload([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(backend.download(tensor.columns(1..<3)), [2, 3, 5, 6])
        XCTAssertEqual(backend.download(tensor.rows(1..<2)), [4, 5, 6])
        XCTAssertTrue(tensor.columns(1..<3).sharesStorage(with: tensor))
        backend.copy(backend.upload([40], shape: [1, 1]), into: tensor.columns(0..<1).rows(1..<2))
        XCTAssertEqual(backend.download(tensor), [1, 2, 3, 40, 5, 6], "a copy into a view writes the parent")
        let packed = backend.copy(tensor.columns(1..<3))
        XCTAssertEqual(packed.shape, [2, 2])
        XCTAssertTrue(packed.isContiguous)
        XCTAssertFalse(packed.sharesStorage(with: tensor))
        XCTAssertEqual(backend.download(packed.reshaped([4])), [2, 3, 5, 6])
    }

    func testUploadAndDownloadConvertEachDType() {
        let values: [Float] = [1, -2.5, 0.333333, 65504, 1e-3, -0]
        XCTAssertEqual(backend.download(backend.upload(values, shape: [2, 3])), values, "float32 is exact")
        let bf16 = backend.upload(values, shape: [6], dtype: .bf16)
        XCTAssertEqual(bf16.dtype, .bf16)
        XCTAssertEqual(bf16.storage.sizeBytes, 12, "two bytes a value")
        let expectedBF16 = values.map(TorchGenerator.roundedToBFloat16)
        XCTAssertEqual(backend.download(bf16), expectedBF16, "round to nearest even, as torch's .to(bfloat16)")
        let f16 = backend.upload(values, shape: [6], dtype: .f16)
        XCTAssertEqual(backend.download(f16), values.map { Float(Float16($0)) })
    }

    func testOpsWriteIntoViewsOfALargerTensor() throws {
        var random = TestRandom(state: 3)
        let (rows, inFeatures) = (5, 8)
        let weightValues = random.values(6 * inFeatures)
        let file = try SafeTensorsFixture.write(["w": (weightValues, [6, inFeatures])])
        let layer = try Linear(weight: try XCTUnwrap(file.tensors["w"]), bias: nil)
        let x = backend.upload(random.values(rows * inFeatures), shape: [rows, inFeatures])
        let alone = backend.download(backend.linear(x, layer))
        // The output lands in columns 2..<8 of a [5, 10] tensor; the columns around it keep their values.
        let wide = backend.upload([Float](repeating: 7, count: rows * 10), shape: [rows, 10])
        backend.linear(x, layer, into: wide.columns(2..<8))
        let values = backend.download(wide)
        for row in 0..<rows {
            XCTAssertEqual(Array(values[(row * 10 + 2)..<(row * 10 + 8)]), Array(alone[(row * 6)..<(row * 6 + 6)]))
            XCTAssertEqual([values[row * 10], values[row * 10 + 1], values[row * 10 + 8], values[row * 10 + 9]], [7, 7, 7, 7])
        }
        // Output rows split the same way: the top rows of a taller tensor.
        let tall = backend.upload([Float](repeating: 7, count: (rows + 2) * 6), shape: [rows + 2, 6])
        backend.linear(x, layer, into: tall.rows(0..<rows))
        XCTAssertEqual(Array(backend.download(tall)[..<(rows * 6)]), alone)
        XCTAssertEqual(Array(backend.download(tall)[(rows * 6)...]), [Float](repeating: 7, count: 12))
    }

    /// Two backends in one process keep their own precision: a bf16 linear layer computes in
    /// float32 on one and on the AVX512-BF16 kernel on the other, call after call, interleaved.
    func testBackendsOfDifferentPrecisionsLiveSideBySide() throws {
        guard schnell_cpu_level() >= SCHNELL_CPU_AVX512_BF16 else {
            throw XCTSkip("needs AVX512-BF16 for the bf16 kernels; this CPU computes bf16 in float32")
        }
        var random = TestRandom(state: 11)
        let (rows, k, n) = (9, 64, 24)
        let weights = random.values(n * k), x = random.values(rows * k)
        let file = try SafeTensorsFixture.write(["w": (weights, [n, k])], dtype: .bf16)
        let layer = try Linear(weight: try XCTUnwrap(file.tensors["w"]), bias: nil)
        var f32Reference = [Float](repeating: 0, count: rows * n), bf16Reference = f32Reference
        let stored = layer.blocks[0].weight.pointer
        schnell_linear_reference(x, rows, k, stored, Int32(SCHNELL_BF16.rawValue), nil, 0, n, &f32Reference, n)
        schnell_linear_bf16_reference(x, rows, k, stored.assumingMemoryBound(to: UInt16.self), nil, 0, n, &bf16Reference, n)
        XCTAssertGreaterThan(relativeL2(bf16Reference, f32Reference), 1e-4, "the precisions must differ visibly")

        let f32 = CPUBackend(precision: .f32), bf16 = CPUBackend(precision: .bf16)
        for _ in 0..<2 {
            let fromBF16 = bf16.download(bf16.linear(bf16.upload(x, shape: [rows, k]), layer))
            let fromF32 = f32.download(f32.linear(f32.upload(x, shape: [rows, k]), layer))
            XCTAssertLessThan(relativeL2(fromF32, f32Reference), 1e-6, "float32 backend")
            XCTAssertLessThan(relativeL2(fromBF16, bf16Reference), 1e-6, "bf16 backend")
        }
    }

    /// The sampling ops against their formulas written out in Swift (products rounded before sums,
    /// as PyTorch's float32 elementwise ops): equal bit for bit.
    func testSamplingOpsMatchTheirFormulas() {
        var random = TestRandom(state: 5)
        let count = 2 * 4 * 6
        let x = random.values(count), noise = random.values(count), other = random.values(count)
        let mask = (0..<count).map { Float($0 % 3 == 0 ? 1 : 0) }
        let shape = [2, 4, 6]
        func upload(_ values: [Float]) -> Tensor { backend.upload(values, shape: shape) }

        XCTAssertEqual(backend.download(backend.affine(upload(x), scale: 1 / 0.3611, shift: 0.1159)),
                       x.map { $0 * (1 / 0.3611) + 0.1159 })
        let clamped = upload(x.map { $0 * 50 })
        backend.clamp(clamped, low: -30, high: 20)
        XCTAssertEqual(backend.download(clamped), x.map { min(max($0 * 50, -30), 20) })
        let sample = upload(x)
        backend.eulerStep(sample, velocity: upload(noise), delta: -0.25)
        XCTAssertEqual(backend.download(sample), zip(x, noise).map { x, v in
            let change = -0.25 * v
            return x + change
        })
        XCTAssertEqual(backend.download(backend.noiseMix(upload(x), noise: upload(noise), sigma: 0.75)),
                       zip(x, noise).map { x, n in
                           let noisePart = 0.75 * n
                           let latentPart = (1 - 0.75) * x
                           return noisePart + latentPart
                       })
        let blended = upload(x)
        backend.maskBlend(blended, kept: upload(other), mask: upload(mask))
        XCTAssertEqual(backend.download(blended), (0..<count).map { i in
            let keep = (1 - mask[i]) * other[i]
            let regenerate = mask[i] * x[i]
            return keep + regenerate
        })
        XCTAssertEqual(backend.download(backend.gaussianSample(mean: upload(x), logVariance: upload(noise), noise: upload(other))),
                       (0..<count).map { i in
                           let spread = exp(0.5 * noise[i]) * other[i]
                           return x[i] + spread
                       })
    }

    /// diffusers' `_pack_latents`: token (y / 2, x / 2) holds channel c at column 4c + 2 (y % 2) + x % 2.
    func testLatentPackingFollowsDiffusersAndRoundTrips() {
        let (channels, height, width) = (3, 4, 6)
        let values = (0..<(channels * height * width)).map(Float.init)
        let packed = backend.packLatents(backend.upload(values, shape: [channels, height, width]))
        XCTAssertEqual(packed.shape, [(height / 2) * (width / 2), 4 * channels])
        let tokens = backend.download(packed)
        for c in 0..<channels {
            for y in 0..<height {
                for x in 0..<width {
                    let token = (y / 2) * (width / 2) + x / 2
                    XCTAssertEqual(tokens[token * 4 * channels + c * 4 + (y % 2) * 2 + x % 2], values[(c * height + y) * width + x])
                }
            }
        }
        XCTAssertEqual(backend.download(backend.unpackLatents(packed, height: height, width: width)), values)
    }

    func testPixelsCrossAsDiffusersImageProcessorDoes() {
        let rgb: [UInt8] = [0, 128, 255, 1, 2, 254]  // two pixels
        let image = backend.uploadRGB8(rgb, width: 2, height: 1)
        XCTAssertEqual(image.shape, [3, 1, 2])
        XCTAssertEqual(backend.download(image), [0, 1, 128, 2, 255, 254].map { 2 * (Float($0) / 255) - 1 })
        XCTAssertEqual(backend.downloadRGB8(image), rgb)
        // Out of range values clamp, others round to the nearest step, and 0 (127.5) rounds half to even.
        let planes = backend.upload([-3, 3, 2 * (10.2 / 255) - 1, 2 * (20.7 / 255) - 1, 0, 0], shape: [3, 1, 2])
        XCTAssertEqual(backend.downloadRGB8(planes), [0, 10, 128, 255, 21, 128])
    }

    func testBufferPoolReusesBySizeAndStaysWithinItsLimit() {
        let pool = BufferPool(limitBytes: 4096)
        let first = pool.take(bytes: 400)
        XCTAssertEqual(first.capacityBytes, 400, "a fresh buffer has the size asked for")
        pool.give(first.pointer, bytes: 400)
        XCTAssertTrue(pool.take(bytes: 400) == first, "a buffer of the same size is reused")
        // 4,000 bytes exceed a quarter of the limit: freed at once, never held.
        let large = pool.take(bytes: 4000)
        pool.give(large.pointer, bytes: 4000)
        XCTAssertEqual(pool.heldBytesForTesting, 0)
        for _ in 0..<20 { pool.give(schnell_buffer_allocate(800)!, bytes: 800) }
        XCTAssertLessThanOrEqual(pool.heldBytesForTesting, 4096)
        pool.give(first.pointer, bytes: 400)
    }

    func testBufferPoolHandsOutLargerFreeBuffersUpToFourTimesTheSize() {
        let pool = BufferPool(limitBytes: 1 << 20)
        let small = pool.take(bytes: 1400), big = pool.take(bytes: 1800)
        pool.give(big.pointer, bytes: 1800)
        pool.give(small.pointer, bytes: 1400)
        let taken = pool.take(bytes: 400)
        XCTAssertTrue(taken == small, "the smallest free buffer of up to four times the size")
        let fresh = pool.take(bytes: 400)
        XCTAssertEqual(fresh.capacityBytes, 400, "1,800 bytes is more than four times 400: a fresh buffer instead")
        XCTAssertFalse(fresh.pointer == big.pointer)
        XCTAssertTrue(pool.take(bytes: 800) == big)
        for buffer in [taken, fresh, big] { pool.give(buffer.pointer, bytes: buffer.capacityBytes) }
    }

    func testEachBackendHasItsOwnPool() {
        let first = CPUBackend(), second = CPUBackend()
        do { _ = first.allocate([1000], dtype: .f32) }
        XCTAssertEqual(first.pool.heldBytesForTesting, 4000, "a freed tensor's buffer goes back to its backend's pool")
        XCTAssertEqual(second.pool.heldBytesForTesting, 0)
    }
}
