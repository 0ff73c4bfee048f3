import Foundation
import Testing
@testable import SchnellImageIO

/// A smooth gradient with a soft diagonal feature: JPEG/WebP should reproduce it above 30 dB.
private func smoothImage(width: Int = 96, height: Int = 64, channels: Int = 3) throws -> Image8 {
    var pixels: [UInt8] = []
    for y in 0..<height {
        for x in 0..<width {
            let u: Double = Double(x) / Double(width - 1)
            let v: Double = Double(y) / Double(height - 1)
            let red: Double = 40 + 180 * u
            let green: Double = 30 + 190 * v
            let blue: Double = 128 + 50 * (u - v)
            let alpha: Double = 255 - 200 * u * v
            pixels += [UInt8(red), UInt8(green), UInt8(blue)]
            if channels == 4 { pixels.append(UInt8(alpha)) }
        }
    }
    return try Image8(width: width, height: height, channels: channels, pixels: pixels)
}

private func psnr(_ a: Image8, _ b: Image8) -> Double {
    var squaredError = 0.0
    for (x, y) in zip(a.pixels, b.pixels) {
        let difference = Double(Int(x) - Int(y))
        squaredError += difference * difference
    }
    let mse = squaredError / Double(a.pixels.count)
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}

/// PNG chunks of a file as (type, data); fails the test on a bad CRC.
private func pngChunks(_ bytes: [UInt8]) -> [(type: String, data: [UInt8])] {
    var chunks: [(type: String, data: [UInt8])] = []
    var position = 8
    while position + 12 <= bytes.count {
        let length = bytes[position..<position + 4].reduce(0) { $0 << 8 | Int($1) }
        let typeAndData = Array(bytes[(position + 4)..<(position + 8 + length)])
        let crc = bytes[(position + 8 + length)..<(position + 12 + length)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(crc == CRC32.checksum(typeAndData))
        chunks.append((String(decoding: typeAndData.prefix(4), as: UTF8.self), Array(typeAndData.dropFirst(4))))
        position += 12 + length
    }
    return chunks
}

/// A PNG written by hand with stored (uncompressed) deflate blocks, for colour types libpng's
/// simplified writer cannot make: palette, grayscale, 16-bit.
private func handMadePNG(width: Int, height: Int, bitDepth: UInt8, colorType: UInt8, rows: [[UInt8]],
                         extraChunks: [[UInt8]] = []) -> [UInt8] {
    let header: [UInt8] = [UInt8(width >> 24), UInt8(width >> 16 & 255), UInt8(width >> 8 & 255), UInt8(width & 255),
                  UInt8(height >> 24), UInt8(height >> 16 & 255), UInt8(height >> 8 & 255), UInt8(height & 255),
                  bitDepth, colorType, 0, 0, 0]
    let raw: [UInt8] = rows.flatMap { row -> [UInt8] in [0] + row }  // filter type 0 per row
    var adlerA: UInt32 = 1, adlerB: UInt32 = 0
    for byte in raw { adlerA = (adlerA + UInt32(byte)) % 65521; adlerB = (adlerB + adlerA) % 65521 }
    let adler = adlerB << 16 | adlerA
    let length = UInt16(raw.count)
    let storedHeader: [UInt8] = [0x78, 0x01, 1, UInt8(length & 255), UInt8(length >> 8), UInt8(~length & 255), UInt8(~length >> 8)]
    let adlerBytes: [UInt8] = [UInt8(adler >> 24), UInt8(adler >> 16 & 255), UInt8(adler >> 8 & 255), UInt8(adler & 255)]
    let zlib = storedHeader + raw + adlerBytes
    let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    var file = signature + PNGCodec.chunk(type: "IHDR", data: header)
    file += extraChunks.joined()
    file += PNGCodec.chunk(type: "IDAT", data: zlib)
    return file + PNGCodec.chunk(type: "IEND", data: [])
}

@Test func pngRoundTripIsExactForRGBAndRGBA() throws {
    for channels in [3, 4] {
        let image = try smoothImage(channels: channels)
        let decoded = try ImageDecoder.decode(try ImageEncoder.encode(image, as: .png))
        #expect(decoded == image)
    }
}

@Test func pngCarriesTextChunks() throws {
    let text: [(key: String, value: String)] = [("prompt", "a café at dusk"), ("seed", "42"), ("note", "雪の日 ☃")]
    let bytes = try ImageEncoder.encode(try smoothImage(), as: .png, text: text)
    let chunks = pngChunks(bytes)
    #expect(chunks.last?.type == "IEND")
    let tEXt = chunks.filter { $0.type == "tEXt" }.map(\.data)
    #expect(tEXt.contains(Array("prompt".utf8) + [0] + "a café at dusk".unicodeScalars.map { UInt8($0.value) }))
    #expect(tEXt.contains(Array("seed\u{0}42".utf8)))
    let iTXt = chunks.filter { $0.type == "iTXt" }.map(\.data)
    #expect(iTXt == [Array("note".utf8) + [0, 0, 0, 0, 0] + Array("雪の日 ☃".utf8)])
    #expect(try ImageDecoder.decode(bytes) == smoothImage())
}

@Test func pngRejectsBadTextKeys() throws {
    for key in ["", String(repeating: "k", count: 80), " lead", "日本"] {
        #expect(throws: ImageIOError.self) { _ = try ImageEncoder.encode(try smoothImage(), as: .png, text: [(key, "v")]) }
    }
}

@Test func pngDecodesPaletteGrayAndSixteenBit() throws {
    let palette = PNGCodec.chunk(type: "PLTE", data: [255, 0, 0, 0, 255, 0, 0, 0, 255])
    let transparency = PNGCodec.chunk(type: "tRNS", data: [255, 128])
    let paletted = try ImageDecoder.decode(handMadePNG(width: 3, height: 1, bitDepth: 8, colorType: 3, rows: [[0, 1, 2]],
                                                       extraChunks: [palette, transparency]))
    #expect(paletted.channels == 4)
    #expect(paletted.pixels == [255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 255])

    let gray = try ImageDecoder.decode(handMadePNG(width: 2, height: 2, bitDepth: 8, colorType: 0, rows: [[0, 100], [200, 255]]))
    #expect(gray.channels == 3)
    #expect(gray.pixels == [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255])

    // 16-bit RGB, no gamma chunk: taken as sRGB, so the high byte survives (within 1 for rounding).
    let deep = try ImageDecoder.decode(handMadePNG(width: 1, height: 1, bitDepth: 16, colorType: 2,
                                                   rows: [[0x12, 0x34, 0x80, 0x80, 0xFF, 0xFF]]))
    #expect(deep.channels == 3)
    #expect(zip(deep.pixels, [0x12, 0x80, 0xFF] as [UInt8]).allSatisfy { abs(Int($0) - Int($1)) <= 1 })
}

@Test func jpegAndWebPRoundTripsAbove30dB() throws {
    for format in [ImageFormat.jpeg, .webp] {
        for quality in [75, 90, 100] {
            let image = try smoothImage()
            let decoded = try ImageDecoder.decode(try ImageEncoder.encode(image, as: format, quality: quality))
            #expect(decoded.width == image.width && decoded.height == image.height && decoded.channels == 3)
            #expect(psnr(decoded, image) >= 30, "\(format) quality \(quality)")
        }
    }
    let lossless = try smoothImage(channels: 4)
    #expect(try ImageDecoder.decode(try ImageEncoder.encode(lossless, as: .webp, quality: 100)) == lossless)
}

@Test func jpegDropsAlphaAndWebPKeepsIt() throws {
    let image = try smoothImage(channels: 4)
    let jpeg = try ImageDecoder.decode(try ImageEncoder.encode(image, as: .jpeg))
    #expect(jpeg.channels == 3)
    #expect(psnr(jpeg, image.droppingAlpha()) >= 30)
    let webp = try ImageDecoder.decode(try ImageEncoder.encode(image, as: .webp, quality: 90))
    #expect(webp.channels == 4)
    #expect(psnr(webp, image) >= 30)
}

@Test func imageInitValidatesSizes() {
    #expect(throws: ImageIOError.self) { try Image8(width: 2, height: 2, channels: 3, pixels: [0]) }
    #expect(throws: ImageIOError.self) { try Image8(width: 0, height: 2, channels: 3, pixels: []) }
    #expect(throws: ImageIOError.self) { try Image8(width: 1, height: 1, channels: 2, pixels: [0, 0]) }
    #expect(throws: ImageIOError.self) { try Image8(width: 16385, height: 1, channels: 3, pixels: [UInt8](repeating: 0, count: 16385 * 3)) }
    #expect(throws: ImageIOError.self) { _ = try ImageEncoder.encode(try smoothImage(), as: .jpeg, quality: 101) }
}

@Test func badInputsAreRejected() throws {
    #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode([]) }
    #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode(Array("GIF89a not supported".utf8)) }
    let image = try smoothImage()
    for format in ImageFormat.allCases {
        let bytes = try ImageEncoder.encode(image, as: format, quality: 80)
        // Cuts inside the header, the pixel data and the last data bytes (a PNG cut inside IEND still
        // holds the whole image and may decode; 14 bytes from the end cuts IDAT's CRC).
        for length in [3, 8, 12, 20, 40, bytes.count / 3, bytes.count / 2, bytes.count - 14] {
            #expect(throws: ImageIOError.self, "\(format) truncated to \(length)") { _ = try ImageDecoder.decode(Array(bytes.prefix(length))) }
        }
        // Damage bytes across the file (every byte of the JPEG, whose decoder relies on validation);
        // a decode may succeed (damage in pixel data) but must not crash.
        let step = format == .jpeg ? 1 : max(1, bytes.count / 97)
        for position in stride(from: 2, to: bytes.count, by: step) {
            for mask: UInt8 in [0x5A, 0xFF, 0x01] {
                var corrupt = bytes
                corrupt[position] ^= mask
                _ = try? ImageDecoder.decode(corrupt)
            }
        }
    }
    // Header damage that each format must refuse.
    var png = try ImageEncoder.encode(image, as: .png)
    png[20] ^= 0xFF  // inside IHDR: CRC no longer matches
    #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode(png) }
    var jpeg = try ImageEncoder.encode(image, as: .jpeg)
    let sof = try #require(jpeg.indices.first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
    jpeg[sof + 4] = 12  // 12-bit precision
    #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode(jpeg) }
    for frameType: UInt8 in [0xC3, 0xC9] {  // lossless, arithmetic coding
        var unsupported = try ImageEncoder.encode(image, as: .jpeg)
        unsupported[sof + 1] = frameType
        #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode(unsupported) }
    }
}

@Test func hugeDimensionsAreRejectedBeforeDecoding() throws {
    let huge = handMadePNG(width: 20000, height: 1, bitDepth: 8, colorType: 0, rows: [[UInt8](repeating: 0, count: 1)])
    #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode(huge) }
    var jpeg = try ImageEncoder.encode(try smoothImage(), as: .jpeg)
    let sof = try #require(jpeg.indices.first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
    jpeg[sof + 5] = 0x50  // height 0x50xx > 16384
    #expect(throws: ImageIOError.self) { _ = try ImageDecoder.decode(jpeg) }
}

/// 48x32 gradients written by Pillow (libjpeg-turbo): a progressive colour file and a baseline grayscale one.
/// Pixel (x, y) of the source holds g = (48y + x) * 255 / 1535 in gray; the colour file is (g, flipped g, 255 - g).
private let progressiveJPEG = Array(Data(base64Encoded: "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wgARCAAgADADASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAABQEA/8QAGgEAAgIDAAAAAAAAAAAAAAAAAAECBAUGB//aAAwDAQACEAMQAAABXptva0ljbESpuQXTbieko02oSx2if//EABUQAQEAAAAAAAAAAAAAAAAAAAAS/9oACAEBAAEFArWta1rWta1rWta1rWta1v/EABYRAAMAAAAAAAAAAAAAAAAAAAAVYf/aAAgBAwEBPwFVBVBXBVBXBVD/xAAVEQEBAAAAAAAAAAAAAAAAAAAAE//aAAgBAgEBPwG666667//EABQQAQAAAAAAAAAAAAAAAAAAAED/2gAIAQEABj8CR//EABQQAQAAAAAAAAAAAAAAAAAAAED/2gAIAQEAAT8hQAAAB//aAAwDAQACAAMAAAAQgfFCpX//xAAUEQEAAAAAAAAAAAAAAAAAAAAg/9oACAEDAQE/EEER/8QAFhEAAwAAAAAAAAAAAAAAAAAAAAFh/9oACAECAQE/EHQ6HQ6HQ6P/xAAXEAADAQAAAAAAAAAAAAAAAAAAAWFx/9oACAEBAAE/EFQqFQqFQqFRoVCoVCoVCoVCoVCoVCoVCoVCo//Z")!)
private let grayscaleJPEG = Array(Data(base64Encoded: "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/wAALCAAgADABAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APnoaF/s0o0L/Ypw0L/Ypw0L/Ypw0L/YpRoX+xXpo0L/AGKcNC/2KUaF/sU4aF/sU4aF/sU4aF/sV6YNC/2KUaF/sU4aF/sU4aF/sU4aF/sU4aF/sV6YNC/2KcNC/wBilGhf7FOGhf7FOGhf7FOGhf7Ff//Z")!)

@Test func jpegDecodesProgressiveAndGrayscale() throws {
    func gradient(_ x: Int, _ y: Int) -> Double { Double(48 * y + x) * 255 / 1535 }
    let gray = try ImageDecoder.decode(grayscaleJPEG)
    #expect(gray.width == 48 && gray.height == 32 && gray.channels == 3)
    var worst = 0.0
    for y in 0..<32 {
        for x in 0..<48 {
            let pixel = gray.pixels[(y * 48 + x) * 3]
            #expect(gray.pixels[(y * 48 + x) * 3 + 1] == pixel && gray.pixels[(y * 48 + x) * 3 + 2] == pixel)
            worst = max(worst, abs(Double(pixel) - gradient(x, y).rounded(.down)))
        }
    }
    #expect(worst <= 12, "grayscale JPEG at quality 80: max error \(worst) of 255")
    let colour = try ImageDecoder.decode(progressiveJPEG)
    #expect(colour.width == 48 && colour.height == 32 && colour.channels == 3)
    let blue = (0..<(48 * 32)).map { Double(colour.pixels[$0 * 3 + 2]) - (255 - gradient($0 % 48, $0 / 48).rounded(.down)) }
    #expect(blue.map(abs).max()! <= 16, "progressive JPEG at quality 80, 4:2:0")
    for position in 2..<progressiveJPEG.count {
        for mask: UInt8 in [0x5A, 0xFF, 0x01, 0x80] {
            var corrupt = progressiveJPEG
            corrupt[position] ^= mask
            _ = try? ImageDecoder.decode(corrupt)
        }
    }
}
