public enum ImageEncoder {
    /// Encodes `image` as PNG, JPEG or WebP.
    /// - quality: 0...100. PNG ignores it (always lossless). JPEG drops alpha. WebP is lossless
    ///   at 100 and lossy below.
    /// - text: key/value pairs written into PNG files as tEXt chunks (iTXt, UTF-8, when the value is
    ///   not Latin-1); keys are 1-79 printable Latin-1 characters. JPEG and WebP files carry no text.
    public static func encode(_ image: Image8, as format: ImageFormat, quality: Int = 90,
                              text: [(key: String, value: String)] = []) throws -> [UInt8] {
        guard (0...100).contains(quality) else {
            throw ImageIOError("quality \(quality) is outside 0...100")
        }
        switch format {
        case .png: return try PNGCodec.encode(image, text: text)
        case .jpeg: return try JPEGCodec.encode(image, quality: quality)
        case .webp: return try WebPCodec.encode(image, quality: quality)
        }
    }
}
