import CJPEG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// JPEG through libjpeg-turbo's classic API (its TurboJPEG library is not part of libjpeg-dev).
///
/// libjpeg's `error_exit` must not return and Swift cannot setjmp, so errors are kept from
/// happening instead: encoder input is validated first (leaving only allocation failure), and
/// decoder input passes `JPEGStructure.validate`, which refuses everything libjpeg would fail on
/// structurally. The one remaining data-dependent failure, "DCT coefficient out of range"
/// (an overflow check on corrupt DC differences), is safe to return from: libjpeg only stores
/// the wrapped value. It is recorded and the decode fails afterwards, as it does on any warning.
enum JPEGCodec {
    private static let badDCTCoefficient: Int32 = 7  // JERR_BAD_DCT_COEF in jerror.h
    private static let messageCapacity = Int(JMSG_LENGTH_MAX)

    static func encode(_ image: Image8, quality: Int) throws -> [UInt8] {
        guard image.width <= Int(JPEG_MAX_DIMENSION), image.height <= Int(JPEG_MAX_DIMENSION) else {
            throw ImageIOError("JPEG allows at most \(JPEG_MAX_DIMENSION) pixels per side")
        }
        let errors = ErrorRecord()
        defer { errors.deallocate() }
        let compressor = UnsafeMutablePointer<jpeg_compress_struct>.allocate(capacity: 1)
        compressor.initialize(to: jpeg_compress_struct())
        defer { compressor.deallocate() }
        let output = UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>.allocate(capacity: 1)
        output.initialize(to: nil)
        let outputSize = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        outputSize.initialize(to: 0)
        defer {
            free(output.pointee)
            output.deallocate()
            outputSize.deallocate()
        }

        compressor.pointee.err = errors.manager
        jpeg_CreateCompress(compressor, JPEG_LIB_VERSION, MemoryLayout<jpeg_compress_struct>.size)
        defer { jpeg_destroy_compress(compressor) }
        compressor.pointee.client_data = UnsafeMutableRawPointer(errors.message)
        jpeg_mem_dest(compressor, output, outputSize)
        compressor.pointee.image_width = JDIMENSION(image.width)
        compressor.pointee.image_height = JDIMENSION(image.height)
        compressor.pointee.input_components = Int32(image.channels)
        compressor.pointee.in_color_space = image.channels == 4 ? JCS_EXT_RGBA : JCS_RGB
        jpeg_set_defaults(compressor)
        jpeg_set_quality(compressor, Int32(quality), 1)
        jpeg_start_compress(compressor, 1)
        var pixels = image.pixels
        let rowBytes = image.width * image.channels
        pixels.withUnsafeMutableBufferPointer { buffer in
            while compressor.pointee.next_scanline < compressor.pointee.image_height {
                var row: JSAMPROW? = buffer.baseAddress.map { $0 + Int(compressor.pointee.next_scanline) * rowBytes }
                _ = jpeg_write_scanlines(compressor, &row, 1)
            }
        }
        jpeg_finish_compress(compressor)
        guard let bytes = output.pointee else { throw ImageIOError("JPEG encoding produced no output") }
        return Array(UnsafeBufferPointer(start: bytes, count: Int(outputSize.pointee)))
    }

    static func decode(_ bytes: [UInt8]) throws -> Image8 {
        let frame = try JPEGStructure.validate(bytes)
        let errors = ErrorRecord()
        defer { errors.deallocate() }
        let decompressor = UnsafeMutablePointer<jpeg_decompress_struct>.allocate(capacity: 1)
        decompressor.initialize(to: jpeg_decompress_struct())
        defer { decompressor.deallocate() }
        decompressor.pointee.err = errors.manager
        jpeg_CreateDecompress(decompressor, JPEG_LIB_VERSION, MemoryLayout<jpeg_decompress_struct>.size)
        defer { jpeg_destroy_decompress(decompressor) }
        decompressor.pointee.client_data = UnsafeMutableRawPointer(errors.message)

        let pixels: [UInt8] = bytes.withUnsafeBufferPointer { file in
            jpeg_mem_src(decompressor, file.baseAddress, UInt(file.count))
            _ = jpeg_read_header(decompressor, 1)
            decompressor.pointee.out_color_space = JCS_RGB
            _ = jpeg_start_decompress(decompressor)
            let rowBytes = frame.width * 3
            var pixels = [UInt8](repeating: 0, count: frame.height * rowBytes)
            pixels.withUnsafeMutableBufferPointer { buffer in
                while decompressor.pointee.output_scanline < decompressor.pointee.output_height {
                    var row: JSAMPROW? = buffer.baseAddress.map { $0 + Int(decompressor.pointee.output_scanline) * rowBytes }
                    _ = jpeg_read_scanlines(decompressor, &row, 1)
                }
            }
            _ = jpeg_finish_decompress(decompressor)
            return pixels
        }
        if errors.manager.pointee.num_warnings > 0 {
            throw ImageIOError("JPEG data is corrupt: \(errors.firstMessage)")
        }
        guard Int(decompressor.pointee.output_width) == frame.width, Int(decompressor.pointee.output_height) == frame.height,
              decompressor.pointee.output_components == 3 else {
            throw ImageIOError("JPEG decoder produced an unexpected image shape")
        }
        return Image8(checkedWidth: frame.width, height: frame.height, channels: 3, pixels: pixels)
    }

    /// libjpeg's error manager with handlers that never print and never longjmp; the first warning's
    /// text is kept in a buffer reached through the codec's `client_data`.
    private struct ErrorRecord {
        let manager = UnsafeMutablePointer<jpeg_error_mgr>.allocate(capacity: 1)
        let message = UnsafeMutablePointer<CChar>.allocate(capacity: JPEGCodec.messageCapacity)

        init() {
            manager.initialize(to: jpeg_error_mgr())
            _ = jpeg_std_error(manager)
            message.initialize(repeating: 0, count: JPEGCodec.messageCapacity)
            manager.pointee.emit_message = { codec, level in
                guard let codec, level < 0, let manager = codec.pointee.err else { return }
                JPEGCodec.record(codec: codec, manager: manager)
            }
            manager.pointee.error_exit = { codec in
                guard let codec, let manager = codec.pointee.err else {
                    preconditionFailure("libjpeg called error_exit without its codec")
                }
                if manager.pointee.msg_code == JPEGCodec.badDCTCoefficient {
                    JPEGCodec.record(codec: codec, manager: manager)
                    return
                }
                // Reached only on allocation failure or a gap in JPEGStructure's checks; error_exit
                // must not return, and without setjmp there is nowhere safe to go.
                var text = [CChar](repeating: 0, count: JPEGCodec.messageCapacity)
                manager.pointee.format_message?(codec, &text)
                let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                preconditionFailure("libjpeg failed on input that passed validation: \(message)")
            }
        }

        var firstMessage: String { String(cString: message) }

        func deallocate() {
            manager.deallocate()
            message.deallocate()
        }
    }

    /// Counts a warning (or the recoverable error) and keeps the text of the first.
    private static func record(codec: j_common_ptr, manager: UnsafeMutablePointer<jpeg_error_mgr>) {
        if manager.pointee.num_warnings == 0, let buffer = codec.pointee.client_data?.assumingMemoryBound(to: CChar.self) {
            manager.pointee.format_message?(codec, buffer)
        }
        manager.pointee.num_warnings += 1
    }
}
