/// What a PNG, JPEG or WebP file says about itself before any pixel is decoded: its format and
/// size. Reading it costs a few bytes of the file, so a server can refuse an image whose size it
/// will not decode (a small file may declare 16384x16384) before a decoder allocates anything.
public struct ImageHeader: Sendable, Equatable {
    public let format: ImageFormat
    public let width: Int
    public let height: Int

    public var pixelCount: Int { width * height }

    /// Reads the size from the PNG IHDR chunk, the JPEG frame header (SOFn) or the WebP
    /// VP8/VP8L/VP8X chunk; sides outside 1...`Image8.maxDimension` are refused as the decoders
    /// refuse them.
    public init(of bytes: [UInt8]) throws {
        guard let format = ImageDecoder.format(of: bytes) else {
            if bytes.isEmpty { throw ImageIOError("image data is empty") }
            throw ImageIOError("image data is not PNG, JPEG or WebP (unrecognised signature)")
        }
        let size = switch format {
        case .png: try ImageHeader.pngSize(bytes)
        case .jpeg: try ImageHeader.jpegSize(bytes)
        case .webp: try ImageHeader.webpSize(bytes)
        }
        try Image8.checkSize(width: size.width, height: size.height)
        self.format = format
        width = size.width
        height = size.height
    }

    /// PNG spec 11.2.2: IHDR comes first, 13 bytes, big-endian width then height.
    private static func pngSize(_ bytes: [UInt8]) throws -> (width: Int, height: Int) {
        guard bytes.count >= 24, bigEndian(bytes, at: 8, count: 4) == 13, Array(bytes[12..<16]) == Array("IHDR".utf8) else {
            throw ImageIOError("PNG does not start with an IHDR chunk")
        }
        return (bigEndian(bytes, at: 16, count: 4), bigEndian(bytes, at: 20, count: 4))
    }

    /// ITU T.81 B.2.2: the first SOFn segment holds precision, height, width. Segments before it
    /// (APPn, DQT, DHT, COM, DRI) are skipped by their lengths; no entropy-coded data comes before it.
    private static func jpegSize(_ bytes: [UInt8]) throws -> (width: Int, height: Int) {
        var position = 2
        while true {
            guard position < bytes.count, bytes[position] == 0xFF else {
                throw ImageIOError("JPEG ends or has stray bytes before its frame header")
            }
            while position < bytes.count, bytes[position] == 0xFF { position += 1 }
            guard position + 2 < bytes.count else { throw ImageIOError("JPEG ends before its frame header") }
            let marker = bytes[position]
            position += 1
            if (0xD0...0xD7).contains(marker) || marker == 0x01 { continue }
            guard marker != 0xDA, marker != 0xD9, marker != 0xD8, marker != 0x00 else {
                throw ImageIOError("JPEG has no frame header before its image data")
            }
            let length = bigEndian(bytes, at: position, count: 2)
            guard length >= 2, position + length <= bytes.count else {
                throw ImageIOError("JPEG marker segment before the frame header has a bad length")
            }
            let isFrame = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
            if isFrame {
                guard length >= 7 else { throw ImageIOError("JPEG frame header is truncated") }
                let height = bigEndian(bytes, at: position + 3, count: 2)
                guard height > 0 else { throw ImageIOError("JPEG height 0 (defined later by a DNL marker) is not supported") }
                return (bigEndian(bytes, at: position + 5, count: 2), height)
            }
            position += length
        }
    }

    /// RIFF container with one first chunk that gives the size: `VP8 ` (RFC 6386 9.1: 14-bit sizes
    /// after the key frame start code), `VP8L` (14-bit sizes minus one after the 0x2F signature) or
    /// `VP8X` (24-bit canvas sizes minus one).
    private static func webpSize(_ bytes: [UInt8]) throws -> (width: Int, height: Int) {
        guard bytes.count >= 20 else { throw ImageIOError("WebP header is truncated") }
        let chunk = String(decoding: bytes[12..<16], as: UTF8.self)
        let payload = 20
        switch chunk {
        case "VP8 ":
            guard bytes.count >= payload + 10, bytes[payload] & 1 == 0,
                  Array(bytes[(payload + 3)..<(payload + 6)]) == [0x9D, 0x01, 0x2A] else {
                throw ImageIOError("WebP VP8 chunk does not start with a key frame header")
            }
            return (littleEndian(bytes, at: payload + 6, count: 2) & 0x3FFF, littleEndian(bytes, at: payload + 8, count: 2) & 0x3FFF)
        case "VP8L":
            guard bytes.count >= payload + 5, bytes[payload] == 0x2F else {
                throw ImageIOError("WebP VP8L chunk does not start with its signature")
            }
            let bits = littleEndian(bytes, at: payload + 1, count: 4)
            return ((bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1)
        case "VP8X":
            guard bytes.count >= payload + 10 else { throw ImageIOError("WebP VP8X chunk is truncated") }
            return (littleEndian(bytes, at: payload + 4, count: 3) + 1, littleEndian(bytes, at: payload + 7, count: 3) + 1)
        default:
            throw ImageIOError("WebP starts with a '\(chunk)' chunk; expected VP8, VP8L or VP8X")
        }
    }

    private static func bigEndian(_ bytes: [UInt8], at offset: Int, count: Int) -> Int {
        bytes[offset..<(offset + count)].reduce(0) { $0 << 8 | Int($1) }
    }

    private static func littleEndian(_ bytes: [UInt8], at offset: Int, count: Int) -> Int {
        bytes[offset..<(offset + count)].reversed().reduce(0) { $0 << 8 | Int($1) }
    }
}
