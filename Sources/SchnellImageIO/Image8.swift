/// An 8-bit image: interleaved channels, rows top-down, no padding between rows.
public struct Image8: Sendable, Equatable {
    /// Largest width or height accepted anywhere in SchnellImageIO; bounds the memory a decode may take.
    public static let maxDimension = 16384

    public let width: Int
    public let height: Int
    /// 3 = RGB, 4 = RGBA (straight, not premultiplied alpha).
    public let channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        try Image8.checkSize(width: width, height: height)
        guard channels == 3 || channels == 4 else {
            throw ImageIOError("image has \(channels) channels; expected 3 (RGB) or 4 (RGBA)")
        }
        guard pixels.count == width * height * channels else {
            throw ImageIOError("image \(width)x\(height)x\(channels) needs \(width * height * channels) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    static func checkSize(width: Int, height: Int, maxPixels: Int = maxDimension * maxDimension) throws {
        guard (1...maxDimension).contains(width), (1...maxDimension).contains(height) else {
            throw ImageIOError("image size \(width)x\(height) is outside 1...\(maxDimension) per side")
        }
        guard width * height <= maxPixels else {
            throw ImageIOError("image size \(width)x\(height) is \(width * height) pixels, more than the \(maxPixels) allowed")
        }
    }

    /// The same image without its alpha channel (returned unchanged when it has none).
    func droppingAlpha() -> Image8 {
        guard channels == 4 else { return self }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for pixel in 0..<(width * height) {
            rgb[pixel * 3] = pixels[pixel * 4]
            rgb[pixel * 3 + 1] = pixels[pixel * 4 + 1]
            rgb[pixel * 3 + 2] = pixels[pixel * 4 + 2]
        }
        return Image8(checkedWidth: width, height: height, channels: 3, pixels: rgb)
    }

    /// For codecs whose sizes are already checked.
    init(checkedWidth width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

public enum ImageFormat: String, Sendable, CaseIterable {
    case png, jpeg, webp
}

public struct ImageIOError: Error, CustomStringConvertible, Equatable {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}
