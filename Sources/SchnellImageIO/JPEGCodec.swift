import CJPEG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// JPEG through libjpeg-turbo's classic API (its TurboJPEG library is not part of libjpeg-dev).
/// libjpeg's fatal errors longjmp, which Swift cannot catch, so each whole-image call runs in
/// the C shim (Sources/CJPEG/shim.h) that turns them into a status and a message. Decoder
/// input also passes `JPEGStructure.validate` first, for messages that say what is wrong.
enum JPEGCodec {
    static func encode(_ image: Image8, quality: Int) throws -> [UInt8] {
        guard image.width <= Int(JPEG_MAX_DIMENSION), image.height <= Int(JPEG_MAX_DIMENSION) else {
            throw ImageIOError("JPEG allows at most \(JPEG_MAX_DIMENSION) pixels per side")
        }
        var output: UnsafeMutablePointer<UInt8>?
        var outputSize: UInt = 0
        var message = [CChar](repeating: 0, count: Int(JMSG_LENGTH_MAX))
        let status = image.pixels.withUnsafeBufferPointer { pixels in
            schnell_jpeg_encode(pixels.baseAddress, Int32(image.width), Int32(image.height), Int32(image.channels),
                                Int32(quality), &output, &outputSize, &message)
        }
        defer { free(output) }
        guard status == 0, let output else { throw ImageIOError("JPEG encoding failed: \(String(cString: message))") }
        return Array(UnsafeBufferPointer(start: output, count: Int(outputSize)))
    }

    static func decode(_ bytes: [UInt8], maxPixels: Int) throws -> Image8 {
        let frame = try JPEGStructure.validate(bytes)
        try Image8.checkSize(width: frame.width, height: frame.height, maxPixels: maxPixels)
        var pixels: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        var message = [CChar](repeating: 0, count: Int(JMSG_LENGTH_MAX))
        let status = bytes.withUnsafeBufferPointer { file in
            schnell_jpeg_decode_rgb(file.baseAddress, UInt(file.count), UInt(maxPixels), &pixels, &width, &height, &message)
        }
        defer { free(pixels) }
        guard status == 0, let pixels else { throw ImageIOError(String(cString: message)) }
        guard Int(width) == frame.width, Int(height) == frame.height else {
            throw ImageIOError("JPEG decoder produced an unexpected image shape")
        }
        let values = Array(UnsafeBufferPointer(start: pixels, count: Int(width) * Int(height) * 3))
        return Image8(checkedWidth: frame.width, height: frame.height, channels: 3, pixels: values)
    }
}
