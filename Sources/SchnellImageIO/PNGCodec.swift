import CPNG

/// PNG through libpng's simplified `png_image` API, which catches libpng's longjmp errors inside
/// libpng and reports them as return codes, so no setjmp is needed on the Swift side. That API
/// writes no text chunks, so tEXt/iTXt chunks are spliced in before IEND here.
enum PNGCodec {
    private static let rgba = PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA

    static func encode(_ image: Image8, text: [(key: String, value: String)]) throws -> [UInt8] {
        let textChunks = try text.map { try textChunk(key: $0.key, value: $0.value) }
        var description = png_image()
        description.version = UInt32(PNG_IMAGE_VERSION)
        description.width = UInt32(image.width)
        description.height = UInt32(image.height)
        description.format = UInt32(image.channels == 4 ? rgba : PNG_FORMAT_RGB)
        let rowStride = Int32(image.width * image.channels)

        var encoded: [UInt8] = try image.pixels.withUnsafeBytes { pixels in
            // One compression pass into a buffer of libpng's upper bound (PNG_IMAGE_PNG_SIZE_MAX,
            // a macro Swift cannot import); libpng reports the size it needs should zlib exceed it.
            var capacity = upperBoundBytes(width: image.width, height: image.height, channels: image.channels)
            for _ in 0..<2 {
                var output = [UInt8](repeating: 0, count: capacity)
                var sizeBytes = capacity
                let written = output.withUnsafeMutableBytes { buffer in
                    png_image_write_to_memory(&description, buffer.baseAddress, &sizeBytes, 0, pixels.baseAddress, rowStride, nil)
                }
                if written != 0 { return Array(output.prefix(sizeBytes)) }
                guard sizeBytes > capacity else { break }
                capacity = sizeBytes
            }
            throw ImageIOError("PNG encoding failed: \(message(of: &description))")
        }
        let iend: [UInt8] = [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]
        guard encoded.count >= iend.count, Array(encoded.suffix(iend.count)) == iend else {
            throw ImageIOError("PNG encoding failed: libpng output does not end with IEND")
        }
        encoded.insert(contentsOf: textChunks.joined(), at: encoded.count - iend.count)
        return encoded
    }

    static func decode(_ bytes: [UInt8], maxPixels: Int) throws -> Image8 {
        try bytes.withUnsafeBytes { file in
            var description = png_image()
            description.version = UInt32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&description, file.baseAddress, file.count) != 0 else {
                throw ImageIOError("PNG header is invalid: \(message(of: &description))")
            }
            let width = Int(description.width)
            let height = Int(description.height)
            do {
                try Image8.checkSize(width: width, height: height, maxPixels: maxPixels)
            } catch {
                png_image_free(&description)
                throw error
            }
            let hasAlpha = description.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
            let channels = hasAlpha ? 4 : 3
            description.format = UInt32(hasAlpha ? rgba : PNG_FORMAT_RGB)
            // 16-bit files without gAMA/sRGB would otherwise be taken as linear light.
            description.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
            var pixels = [UInt8](repeating: 0, count: width * height * channels)
            let finished = pixels.withUnsafeMutableBytes { buffer in
                png_image_finish_read(&description, nil, buffer.baseAddress, Int32(width * channels), nil)
            }
            guard finished != 0 else {
                throw ImageIOError("PNG data is corrupt: \(message(of: &description))")
            }
            return Image8(checkedWidth: width, height: height, channels: channels, pixels: pixels)
        }
    }

    /// libpng's PNG_IMAGE_PNG_SIZE_MAX for an 8-bit RGB or RGBA image without a colormap:
    /// signature, IHDR, gAMA, cHRM, IEND and one IDAT chunk header per 8 KB of zlib's bound.
    private static func upperBoundBytes(width: Int, height: Int, channels: Int) -> Int {
        let data = height * (width * channels + 1)
        let compressed = data + (data + 7) >> 3 + (data + 63) >> 6 + 11
        return 8 + 25 + 16 + 44 + 12 + 12 + 12 * (compressed / 8192) + compressed
    }

    private static func message(of description: inout png_image) -> String {
        withUnsafeBytes(of: &description.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// tEXt when the value is Latin-1 text, otherwise an uncompressed iTXt with UTF-8 (PNG spec 11.3.4).
    static func textChunk(key: String, value: String) throws -> [UInt8] {
        let keyScalars = key.unicodeScalars.map(\.value)
        guard (1...79).contains(keyScalars.count),
              keyScalars.allSatisfy({ (32...126).contains($0) || (161...255).contains($0) }),
              keyScalars.first != 32, keyScalars.last != 32 else {
            throw ImageIOError("PNG text key \"\(key)\" must be 1-79 printable Latin-1 characters without leading or trailing spaces")
        }
        guard !value.unicodeScalars.contains("\0") else {
            throw ImageIOError("PNG text value for \"\(key)\" contains a NUL character")
        }
        let keyBytes = keyScalars.map { UInt8($0) }
        let valueScalars = value.unicodeScalars.map(\.value)
        let isLatin1 = valueScalars.allSatisfy { $0 == 10 || (32...126).contains($0) || (160...255).contains($0) }
        if isLatin1 {
            return chunk(type: "tEXt", data: keyBytes + [0] + valueScalars.map { UInt8($0) })
        }
        // keyword, NUL, compression flag 0, method 0, empty language tag, empty translated keyword.
        return chunk(type: "iTXt", data: keyBytes + [0, 0, 0, 0, 0] + Array(value.utf8))
    }

    static func chunk(type: String, data: [UInt8]) -> [UInt8] {
        let typeAndData = Array(type.utf8) + data
        return bigEndian32(UInt32(data.count)) + typeAndData + bigEndian32(CRC32.checksum(typeAndData))
    }

    private static func bigEndian32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}

/// CRC-32 as PNG chunks use it (ISO 3309, reflected polynomial 0xEDB88320).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1
        }
        return crc
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }
}
