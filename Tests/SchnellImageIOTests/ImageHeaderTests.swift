import Foundation
import Testing
@testable import SchnellImageIO

private func gradient(width: Int, height: Int, channels: Int) throws -> Image8 {
    let pixels = (0..<(width * height * channels)).map { UInt8(truncatingIfNeeded: $0 * 7) }
    return try Image8(width: width, height: height, channels: channels, pixels: pixels)
}

/// A PNG that declares `width` x `height` and holds no pixel data: the decompression bomb of issue 15.
private func pngBomb(width: Int, height: Int) -> [UInt8] {
    let ihdr: [UInt8] = [UInt8(width >> 24), UInt8(width >> 16 & 255), UInt8(width >> 8 & 255), UInt8(width & 255),
                         UInt8(height >> 24), UInt8(height >> 16 & 255), UInt8(height >> 8 & 255), UInt8(height & 255),
                         8, 2, 0, 0, 0]
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + PNGCodec.chunk(type: "IHDR", data: ihdr)
        + PNGCodec.chunk(type: "IDAT", data: [0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + PNGCodec.chunk(type: "IEND", data: [])
}

/// A real small file of `format` whose header is rewritten to declare 16384x16384 (16383x16383 for
/// lossy WebP, whose 14-bit fields stop there).
private func bomb(_ format: ImageFormat, channels: Int = 3, quality: Int = 80) throws -> [UInt8] {
    var bytes = try ImageEncoder.encode(try gradient(width: 40, height: 24, channels: channels), as: format, quality: quality)
    switch format {
    case .png:
        return pngBomb(width: 16384, height: 16384)
    case .jpeg:
        let sof = try #require(bytes.indices.first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        bytes.replaceSubrange((sof + 5)..<(sof + 9), with: [0x40, 0x00, 0x40, 0x00])
    case .webp:
        switch String(decoding: bytes[12..<16], as: UTF8.self) {
        case "VP8 ": bytes.replaceSubrange(26..<30, with: [0xFF, 0x3F, 0xFF, 0x3F])
        case "VP8L":
            let bits = UInt32(16383) | UInt32(16383) << 14 | UInt32(bytes[24] >> 4) << 28
            bytes.replaceSubrange(21..<25, with: [UInt8(bits & 255), UInt8(bits >> 8 & 255), UInt8(bits >> 16 & 255), UInt8(bits >> 24)])
        default: bytes.replaceSubrange(24..<30, with: [0xFF, 0x3F, 0x00, 0xFF, 0x3F, 0x00])
        }
    }
    return bytes
}

@Test func headerGivesTheSizeTheDecoderProduces() throws {
    for format in ImageFormat.allCases {
        for (channels, quality) in [(3, 80), (4, 80), (3, 100), (4, 100)] {
            let bytes = try ImageEncoder.encode(try gradient(width: 40, height: 24, channels: channels), as: format, quality: quality)
            let header = try ImageHeader(of: bytes)
            let decoded = try ImageDecoder.decode(bytes)
            #expect(header.format == format && header.width == decoded.width && header.height == decoded.height,
                    "\(format) \(channels) channels quality \(quality)")
        }
    }
    let progressive = try ImageHeader(of: Array(Data(base64Encoded: progressiveJPEGBase64)!))
    #expect(progressive.width == 48 && progressive.height == 32)
}

@Test func bombsAreMeasuredFromTheirHeaderAndRefusedBeforeDecoding() throws {
    // Lossy VP8, lossless VP8L and VP8X (lossy with alpha) WebP, a JPEG and a PNG, all declaring about 16384x16384.
    let bombs = try [bomb(.png), bomb(.jpeg), bomb(.webp), bomb(.webp, quality: 100), bomb(.webp, channels: 4)]
    #expect(Set(bombs.map { String(decoding: $0[12..<16], as: UTF8.self) }).isSuperset(of: ["VP8 ", "VP8L", "VP8X"]))
    for bytes in bombs {
        let header = try ImageHeader(of: bytes)
        #expect([16383, 16384].contains(header.width) && header.height == header.width
                && header.pixelCount == header.width * header.width, "\(header.format)")
        let started = Date()
        #expect(throws: ImageIOError.self, "\(header.format)") { _ = try ImageDecoder.decode(bytes, maxPixels: 4096 * 4096) }
        // A decode of 16384^2 takes seconds; refusing reads a header (bound generous for a loaded 2-core machine).
        #expect(Date().timeIntervalSince(started) < 0.5, "\(header.format)")
    }
}

@Test func headerRefusesWhatTheDecoderRefuses() throws {
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: []) }
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: Array("GIF89a".utf8)) }
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: pngBomb(width: 16385, height: 1)) }
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: pngBomb(width: 0, height: 10)) }
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: pngBomb(width: 1 << 31, height: 1 << 31)) }
    for format in ImageFormat.allCases {
        let bytes = try ImageEncoder.encode(try gradient(width: 40, height: 24, channels: 3), as: format)
        let header = try ImageHeader(of: bytes)
        // Every cut either still holds the header (and gives the same size) or is refused; none traps.
        for length in 0..<min(bytes.count, 700) {
            if let cut = try? ImageHeader(of: Array(bytes.prefix(length))) { #expect(cut == header, "\(format) cut at \(length)") }
        }
        for position in 0..<min(bytes.count, 700) {
            var damaged = bytes
            damaged[position] ^= 0xFF
            _ = try? ImageHeader(of: damaged)
        }
    }
    // A JPEG whose scan starts before any frame header, and one whose height comes later (DNL).
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]) }
    #expect(throws: ImageIOError.self) { _ = try ImageHeader(of: [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0, 0, 0, 16, 1, 1, 0x11, 0]) }
}

private let progressiveJPEGBase64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wgARCAAgADADASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAABQEA/8QAGgEAAgIDAAAAAAAAAAAAAAAAAAECBAUGB//aAAwDAQACEAMQAAABXptva0ljbESpuQXTbieko02oSx2if//EABUQAQEAAAAAAAAAAAAAAAAAAAAS/9oACAEBAAEFArWta1rWta1rWta1rWta1v/EABYRAAMAAAAAAAAAAAAAAAAAAAAVYf/aAAgBAwEBPwFVBVBXBVBXBVD/xAAVEQEBAAAAAAAAAAAAAAAAAAAAE//aAAgBAgEBPwG666667//EABQQAQAAAAAAAAAAAAAAAAAAAED/2gAIAQEABj8CR//EABQQAQAAAAAAAAAAAAAAAAAAAED/2gAIAQEAAT8hQAAAB//aAAwDAQACAAMAAAAQgfFCpX//xAAUEQEAAAAAAAAAAAAAAAAAAAAg/9oACAEDAQE/EEER/8QAFhEAAwAAAAAAAAAAAAAAAAAAAAFh/9oACAECAQE/EHQ6HQ6HQ6P/xAAXEAADAQAAAAAAAAAAAAAAAAAAAWFx/9oACAEBAAE/EFQqFQqFQqFRoVCoVCoVCoVCoVCoVCoVCoVCo//Z"
