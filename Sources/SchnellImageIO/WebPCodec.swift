import CWebP

/// WebP through libwebp's one-call API (no callbacks, no longjmp). Quality 100 selects lossless
/// encoding; below that, lossy with libwebp's quality factor.
enum WebPCodec {
    static func encode(_ image: Image8, quality: Int) throws -> [UInt8] {
        let stride = Int32(image.width * image.channels)
        let width = Int32(image.width)
        let height = Int32(image.height)
        var output: UnsafeMutablePointer<UInt8>?
        let size = image.pixels.withUnsafeBufferPointer { pixels -> Int in
            switch (image.channels == 4, quality == 100) {
            case (false, false): WebPEncodeRGB(pixels.baseAddress, width, height, stride, Float(quality), &output)
            case (true, false): WebPEncodeRGBA(pixels.baseAddress, width, height, stride, Float(quality), &output)
            case (false, true): WebPEncodeLosslessRGB(pixels.baseAddress, width, height, stride, &output)
            case (true, true): WebPEncodeLosslessRGBA(pixels.baseAddress, width, height, stride, &output)
            }
        }
        defer { WebPFree(output) }
        guard size > 0, let output else {
            throw ImageIOError("WebP encoding of a \(image.width)x\(image.height) image failed (WebP allows at most 16383 per side)")
        }
        return Array(UnsafeBufferPointer(start: output, count: size))
    }

    static func decode(_ bytes: [UInt8], maxPixels: Int) throws -> Image8 {
        try bytes.withUnsafeBufferPointer { file in
            var features = WebPBitstreamFeatures()
            guard WebPGetFeatures(file.baseAddress, file.count, &features) == VP8_STATUS_OK else {
                throw ImageIOError("WebP header is invalid or truncated")
            }
            let width = Int(features.width)
            let height = Int(features.height)
            try Image8.checkSize(width: width, height: height, maxPixels: maxPixels)
            let channels = features.has_alpha != 0 ? 4 : 3
            var pixels = [UInt8](repeating: 0, count: width * height * channels)
            let decoded = pixels.withUnsafeMutableBufferPointer { buffer in
                channels == 4
                    ? WebPDecodeRGBAInto(file.baseAddress, file.count, buffer.baseAddress, buffer.count, Int32(width * 4))
                    : WebPDecodeRGBInto(file.baseAddress, file.count, buffer.baseAddress, buffer.count, Int32(width * 3))
            }
            guard decoded != nil else {
                throw ImageIOError("WebP data is corrupt or truncated")
            }
            return Image8(checkedWidth: width, height: height, channels: channels, pixels: pixels)
        }
    }
}
