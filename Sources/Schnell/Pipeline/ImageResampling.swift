import Foundation

/// PIL's `Image.resize(size, Image.LANCZOS)` on 8-bit images, which diffusers' `VaeImageProcessor`
/// applies to an init image (and mask) that is not the requested size. Same arithmetic as
/// Pillow's Resample.c, so results are byte for byte PIL's:
///   - per output pixel, taps of `sinc(x) sinc(x/3)` (|x| < 3) centred at (i + 0.5) * scale, widened by
///     the scale when shrinking, normalised to sum 1, then rounded to 22-bit fixed point;
///   - a horizontal pass, then a vertical pass, each rounding to 8 bits.
enum LanczosResampling {
    private static let precisionBits = 22

    /// Interleaved pixels [height, width, channels] -> [newHeight, newWidth, channels].
    static func resize(_ pixels: [UInt8], width: Int, height: Int, channels: Int,
                       toWidth newWidth: Int, toHeight newHeight: Int) -> [UInt8] {
        var image = pixels, currentWidth = width
        if newWidth != width {
            let taps = coefficients(inputSize: width, outputSize: newWidth)
            var output = [UInt8](repeating: 0, count: newWidth * height * channels)
            for y in 0..<height {
                for x in 0..<newWidth {
                    let (first, weights) = taps[x]
                    for c in 0..<channels {
                        var sum = Int32(1 << (precisionBits - 1))
                        for (k, weight) in weights.enumerated() {
                            sum &+= Int32(image[(y * width + first + k) * channels + c]) &* weight
                        }
                        output[(y * newWidth + x) * channels + c] = clip8(sum)
                    }
                }
            }
            image = output
            currentWidth = newWidth
        }
        if newHeight != height {
            let taps = coefficients(inputSize: height, outputSize: newHeight)
            var output = [UInt8](repeating: 0, count: currentWidth * newHeight * channels)
            for y in 0..<newHeight {
                let (first, weights) = taps[y]
                for x in 0..<currentWidth {
                    for c in 0..<channels {
                        var sum = Int32(1 << (precisionBits - 1))
                        for (k, weight) in weights.enumerated() {
                            sum &+= Int32(image[((first + k) * currentWidth + x) * channels + c]) &* weight
                        }
                        output[(y * currentWidth + x) * channels + c] = clip8(sum)
                    }
                }
            }
            image = output
        }
        return image
    }

    /// Per output index: the first input index and the fixed-point weights of the inputs from there.
    static func coefficients(inputSize: Int, outputSize: Int) -> [(first: Int, weights: [Int32])] {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = 3 * filterScale
        let inverseFilterScale = 1 / filterScale  // Pillow multiplies by the reciprocal; dividing rounds differently
        return (0..<outputSize).map { index in
            let center = (Double(index) + 0.5) * scale
            let first = max(Int(center - support + 0.5), 0)
            let end = min(Int(center + support + 0.5), inputSize)
            var weights = (first..<end).map { lanczos((Double($0) - center + 0.5) * inverseFilterScale) }
            let total = weights.reduce(0, +)
            if total != 0 { weights = weights.map { $0 / total } }
            let unit = Double(1 << precisionBits)
            return (first, weights.map { Int32($0 < 0 ? -0.5 + $0 * unit : 0.5 + $0 * unit) })
        }
    }

    private static func lanczos(_ x: Double) -> Double {
        guard -3 <= x, x < 3 else { return 0 }
        return sinc(x) * sinc(x / 3)
    }

    private static func sinc(_ x: Double) -> Double {
        guard x != 0 else { return 1 }
        let angle = x * Double.pi
        return sin(angle) / angle
    }

    private static func clip8(_ sum: Int32) -> UInt8 {
        if sum >= Int32(256 << precisionBits) { return 255 }
        if sum <= 0 { return 0 }
        return UInt8(sum >> Int32(precisionBits))
    }
}
