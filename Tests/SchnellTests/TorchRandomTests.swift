import Foundation
import Testing
@testable import Schnell

/// Compares with torch.randn draws written by Tests/Fixtures/generate_sampling.py (torch 2.15, CPU
/// generator). Tolerance: none; every value must match torch bit for bit.
private struct NoiseFixture: Decodable {
    struct Draw: Decodable {
        let seed: String
        let dtype: String
        let counts: [Int]
        let hex: String
        let fnv1a64: String?
    }
    let draws: [Draw]
}

private func loadNoiseFixture() throws -> NoiseFixture {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/sampling/noise.json")
    return try JSONDecoder().decode(NoiseFixture.self, from: Data(contentsOf: url))
}

/// FNV-1a 64 over the little-endian bytes of each value's float32 bit pattern.
private func fnv1a64(_ values: [Float]) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for value in values {
        let bits = value.bitPattern
        for shift in stride(from: 0, to: 32, by: 8) {
            hash ^= UInt64((bits >> UInt32(shift)) & 0xFF)
            hash = hash &* 0x100_0000_01B3
        }
    }
    return hash
}

private func bitPatterns(hex: String, width: Int) -> [UInt32] {
    let digits = Array(hex.utf8)
    return stride(from: 0, to: digits.count, by: width).compactMap { start in
        UInt32(String(decoding: digits[start..<(start + width)], as: UTF8.self), radix: 16)
    }
}

@Test func noiseMatchesTorchBitForBit() throws {
    let fixture = try loadNoiseFixture()
    #expect(fixture.draws.count >= 98)
    for draw in fixture.draws {
        let seed = try #require(UInt64(draw.seed))
        var generator = TorchGenerator(seed: seed)
        let isBFloat16 = draw.dtype == "bfloat16"
        let values = draw.counts.flatMap { isBFloat16 ? generator.randnBFloat16(count: $0) : generator.randn(count: $0) }
        let expected = bitPatterns(hex: draw.hex, width: isBFloat16 ? 4 : 8)
        let actual = values.prefix(expected.count).map { isBFloat16 ? $0.bitPattern >> 16 : $0.bitPattern }
        let firstMismatch = zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstMismatch == nil, "seed \(seed) \(draw.dtype) counts \(draw.counts): first mismatch at \(firstMismatch ?? -1): \(actual[firstMismatch ?? 0]) vs \(expected[firstMismatch ?? 0])")
        if let checksum = draw.fnv1a64 {
            #expect(String(fnv1a64(values), radix: 16).leftPadded(to: 16) == checksum, "seed \(seed) \(draw.dtype) count \(draw.counts)")
        }
        if isBFloat16 {
            #expect(values.allSatisfy { $0.bitPattern & 0xFFFF == 0 })
        }
    }
}

@Test func bfloat16EqualsRoundedFloat32OnlyForWholeBlocks() {
    let float32 = TorchGenerator.randn(count: 64, seed: 7)
    var generator = TorchGenerator(seed: 7)
    #expect(generator.randnBFloat16(count: 64) == float32.map(TorchGenerator.roundedToBFloat16))
    let tailFloat32 = TorchGenerator.randn(count: 40, seed: 7)
    var tailGenerator = TorchGenerator(seed: 7)
    #expect(tailGenerator.randnBFloat16(count: 40) != tailFloat32.map(TorchGenerator.roundedToBFloat16))
}

@Test func largeDrawIsFastInDebugBuilds() {
    let start = ContinuousClock.now
    let values = TorchGenerator.randn(count: 16 * 128 * 128, seed: 3)
    let elapsed = ContinuousClock.now - start
    let mean = values.reduce(0, +) / Float(values.count)
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(values.count)
    #expect(abs(mean) < 0.01 && abs(variance - 1) < 0.01, "standard normal: mean \(mean), variance \(variance)")
    #expect(elapsed < .seconds(2), "16x128x128 draw took \(elapsed); budget 2 s on a loaded debug build")
}

private extension String {
    func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
