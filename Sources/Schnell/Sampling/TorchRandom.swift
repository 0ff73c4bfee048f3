#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gaussian noise identical to PyTorch's CPU `torch.randn(n, generator=torch.Generator("cpu").manual_seed(seed))`,
/// so a seed gives the same starting latents as diffusers.
///
/// The algorithm follows ATen (aten/src/ATen/native/cpu/DistributionTemplates.h, core/MT19937RNGEngine.h,
/// core/DistributionsHelper.h, core/TransformationHelper.h):
/// - The engine is MT19937 seeded with the low 32 bits of the seed.
/// - n >= 16, float32: n uniforms `(u32 & 0xFFFFFF) / 2^24` are drawn first, then each whole block of 16
///   becomes 8 Box-Muller pairs in float (`r = sqrt(-2 log(1 - u[j]))`, `theta = float(2 pi) * u[j + 8]`,
///   `x[j] = r cos(theta)`, `x[j + 8] = r sin(theta)`). If n % 16 != 0, 16 fresh uniforms are drawn and
///   transformed into the last 16 positions, overwriting part of the last block.
/// - n >= 16, bfloat16: the same arithmetic in float, but uniforms are drawn block by block (the tail block
///   draws right after the whole blocks), then each value is rounded to bfloat16. So it equals the float32
///   draw rounded only when n % 16 == 0.
/// - n < 16 (either dtype): one value at a time from double uniforms of 53 bits (two u32 draws, first one
///   high) with `r = sqrt(-2 log1p(-u2))`, `theta = 2 pi u1`; `r sin(theta)` is kept in the generator and
///   returned by the next small draw.
/// Blocks of 16 use the float log and sincos approximations of avx_mathfun.h (Cephes polynomials), which
/// torch's AVX2 and AVX-512 kernels share (x86-64 CPUs with AVX2). torch's scalar fallback (CPUs without
/// AVX2, ARM) uses the C library's logf/cosf/sinf instead and can differ in the last bits.
public struct TorchGenerator: Sendable {
    private static let stateSize = 624
    private static let shiftSize = 397

    private var state: [UInt32]
    private var nextIndex: Int
    private var cachedNormal: Double?

    public init(seed: UInt64) {
        var state = [UInt32](repeating: 0, count: Self.stateSize)
        state[0] = UInt32(truncatingIfNeeded: seed)
        for index in 1..<Self.stateSize {
            state[index] = 1_812_433_253 &* (state[index - 1] ^ (state[index - 1] >> 30)) &+ UInt32(index)
        }
        self.state = state
        self.nextIndex = Self.stateSize
    }

    public static func randn(count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.randn(count: count)
    }

    /// `torch.randn(count, dtype=torch.float32)`.
    public mutating func randn(count: Int) -> [Float] {
        guard count >= 16 else { return smallDraw(count: count, bfloat16: false) }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { buffer in
            fillUniform(buffer)
            for start in stride(from: 0, to: count - 15, by: 16) {
                Self.boxMuller16(UnsafeMutableBufferPointer(rebasing: buffer[start..<(start + 16)]))
            }
            if count % 16 != 0 {
                let tail = UnsafeMutableBufferPointer(rebasing: buffer[(count - 16)..<count])
                fillUniform(tail)
                Self.boxMuller16(tail)
            }
        }
        return values
    }

    /// `torch.randn(count, dtype=torch.bfloat16)`, returned as floats that are exactly bfloat16 values.
    public mutating func randnBFloat16(count: Int) -> [Float] {
        guard count >= 16 else { return smallDraw(count: count, bfloat16: true) }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { buffer in
            for start in stride(from: 0, to: count - 15, by: 16) {
                let block = UnsafeMutableBufferPointer(rebasing: buffer[start..<(start + 16)])
                fillUniform(block)
                Self.boxMuller16(block)
            }
            if count % 16 != 0 {
                let tail = UnsafeMutableBufferPointer(rebasing: buffer[(count - 16)..<count])
                fillUniform(tail)
                Self.boxMuller16(tail)
            }
            for index in 0..<count {
                buffer[index] = Self.roundedToBFloat16(buffer[index])
            }
        }
        return values
    }

    // MARK: - Engine

    private mutating func nextUInt32() -> UInt32 {
        if nextIndex == Self.stateSize { twist() }
        var y = state[nextIndex]
        nextIndex += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        let n = Self.stateSize
        let m = Self.shiftSize
        state.withUnsafeMutableBufferPointer { s in
            for index in 0..<n {
                let mixed = (s[index] & 0x8000_0000) | (s[(index + 1) % n] & 0x7FFF_FFFF)
                let twisted = (mixed >> 1) ^ (s[(index + 1) % n] & 1 != 0 ? 0x9908_B0DF : 0)
                s[index] = s[(index + m) % n] ^ twisted
            }
        }
        nextIndex = 0
    }

    // MARK: - Distributions

    /// `uniform_real_distribution<float>`: 24 random bits scaled to [0, 1).
    private mutating func fillUniform(_ buffer: UnsafeMutableBufferPointer<Float>) {
        for index in buffer.indices {
            buffer[index] = Float(nextUInt32() & 0xFF_FFFF) * 0x1p-24
        }
    }

    /// `uniform_real_distribution<double>`: 53 bits of a 64-bit draw made from two 32-bit draws, first one high.
    private mutating func uniformDouble() -> Double {
        let high = UInt64(nextUInt32())
        let low = UInt64(nextUInt32())
        return Double((high << 32 | low) & (1 << 53 - 1)) * 0x1p-53
    }

    /// `normal_distribution<double>` as used for tensors of fewer than 16 elements.
    private mutating func smallDraw(count: Int, bfloat16: Bool) -> [Float] {
        (0..<count).map { _ in
            let value: Double
            if let cached = cachedNormal {
                value = cached
                cachedNormal = nil
            } else {
                let u1 = uniformDouble()
                let u2 = uniformDouble()
                let radius = (-2.0 * log1p(-u2)).squareRoot()
                let theta = 2.0 * Double.pi * u1
                cachedNormal = radius * sin(theta)
                value = radius * cos(theta)
            }
            return bfloat16 ? Self.roundedToBFloat16(Float(value)) : Float(value)
        }
    }

    /// Box-Muller on 16 uniforms in place, pairs (j, j + 8) for j in 0..<8, as ATen's AVX2 `NormalFill16`
    /// computes it: float arithmetic with avx_mathfun's log and sincos.
    private static func boxMuller16(_ block: UnsafeMutableBufferPointer<Float>) {
        for j in 0..<8 {
            let radius = (-2 * CephesFloat.log(1 - block[j])).squareRoot()
            let theta = twoPi * block[j + 8]
            let (sine, cosine) = CephesFloat.sincos(theta)
            block[j] = radius * cosine
            block[j + 8] = radius * sine
        }
    }

    private static let twoPi = Float(2 * Double.pi)

    /// Round to nearest even at bfloat16 precision (finite inputs only, which Box-Muller guarantees).
    static func roundedToBFloat16(_ value: Float) -> Float {
        let bits = value.bitPattern
        let rounding: UInt32 = 0x7FFF + ((bits >> 16) & 1)
        return Float(bitPattern: (bits &+ rounding) & 0xFFFF_0000)
    }
}

/// Scalar float ports of avx_mathfun.h's `log256_ps` and `sincos256_ps` (Cephes single-precision
/// polynomials), operation for operation, so results match torch's vectorised kernels bit for bit.
/// torch's x86 build lets the compiler contract a multiply whose only use is an add into one fused
/// multiply-add; `addingProduct` marks exactly those places.
enum CephesFloat {
    private static let sqrtHalf = Float(0.707106781186547524 as Double)
    private static let logP: [Float] = [7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1,
                                        1.4249322787E-1, -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1,
                                        3.3333331174E-1].map { Float($0 as Double) }
    private static let logQ1 = Float(-2.12194440e-4 as Double)
    private static let logQ2 = Float(0.693359375 as Double)

    /// Natural log for positive finite x (inputs here are in (0, 1]).
    static func log(_ input: Float) -> Float {
        let clamped = max(input, Float(bitPattern: 0x0080_0000))  // smallest normal: no denormals
        var exponent = Float(Int32(bitPattern: clamped.bitPattern >> 23) - 0x7F) + 1
        var x = Float(bitPattern: (clamped.bitPattern & ~0x7F80_0000) | Float(0.5).bitPattern)  // mantissa in [0.5, 1)
        let belowSqrtHalf = x < sqrtHalf
        let doubled: Float = belowSqrtHalf ? x : 0
        x = x - 1
        exponent = exponent - (belowSqrtHalf ? 1 : 0)
        x = x + doubled
        let z = x * x
        var y = logP[0]
        for coefficient in logP.dropFirst() {
            y = coefficient.addingProduct(y, x)
        }
        y = y * x
        y = (exponent * logQ1).addingProduct(y, z)
        y = y.addingProduct(-z, 0.5)
        x = x + y
        return x.addingProduct(exponent, logQ2)
    }

    private static let fourOverPi = Float(1.27323954473516 as Double)
    private static let minusDP1 = Float(-0.78515625 as Double)
    private static let minusDP2 = Float(-2.4187564849853515625e-4 as Double)
    private static let minusDP3 = Float(-3.77489497744594108e-8 as Double)
    private static let sinP: [Float] = [-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1].map { Float($0 as Double) }
    private static let cosP: [Float] = [2.443315711809948E-005, -1.388731625493765E-003, 4.166664568298827E-002].map { Float($0 as Double) }

    /// (sin x, cos x) for finite x >= 0 (inputs here are in [0, 2 pi)).
    static func sincos(_ input: Float) -> (sin: Float, cos: Float) {
        var octant = Int32(input * fourOverPi)  // truncation, as cvttps
        octant = (octant + 1) & ~1
        let y = Float(octant)
        var x = input.addingProduct(y, minusDP1)
        x = x.addingProduct(y, minusDP2)
        x = x.addingProduct(y, minusDP3)
        let z = x * x

        var cosPoly = cosP[1].addingProduct(cosP[0], z)
        cosPoly = cosP[2].addingProduct(cosPoly, z)
        cosPoly = cosPoly * z
        cosPoly = (-(z * 0.5)).addingProduct(cosPoly, z)
        cosPoly = cosPoly + 1

        var sinPoly = sinP[1].addingProduct(sinP[0], z)
        sinPoly = sinP[2].addingProduct(sinPoly, z)
        sinPoly = sinPoly * z
        sinPoly = x.addingProduct(sinPoly, x)

        let swapPolynomials = octant & 2 != 0
        var sine = swapPolynomials ? cosPoly : sinPoly
        var cosine = swapPolynomials ? sinPoly : cosPoly
        if octant & 4 != 0 { sine = -sine }
        if (octant - 2) & 4 == 0 { cosine = -cosine }
        return (sine, cosine)
    }
}
