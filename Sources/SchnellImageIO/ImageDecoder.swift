public enum ImageDecoder {
    /// Decodes a PNG, JPEG or WebP file, recognised by its signature, into 8-bit RGB, or RGBA when
    /// the file has alpha (PNG alpha channel or tRNS, WebP alpha). Grayscale becomes RGB; 16-bit
    /// PNG samples are reduced to 8 bits (treated as sRGB when the file states no gamma).
    /// Files larger than `maxPixels` are refused before their pixels are allocated.
    public static func decode(_ bytes: [UInt8], maxPixels: Int = Image8.maxDimension * Image8.maxDimension) throws -> Image8 {
        switch format(of: bytes) {
        case .png: return try PNGCodec.decode(bytes, maxPixels: maxPixels)
        case .jpeg: return try JPEGCodec.decode(bytes, maxPixels: maxPixels)
        case .webp: return try WebPCodec.decode(bytes, maxPixels: maxPixels)
        case nil:
            if bytes.isEmpty { throw ImageIOError("image data is empty") }
            throw ImageIOError("image data is not PNG, JPEG or WebP (unrecognised signature)")
        }
    }

    static func format(of bytes: [UInt8]) -> ImageFormat? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.count >= 12, bytes.starts(with: Array("RIFF".utf8)), Array(bytes[8..<12]) == Array("WEBP".utf8) {
            return .webp
        }
        return nil
    }
}
