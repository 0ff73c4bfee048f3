// libFuzzer harness: the image decoders behind uploads (Sources/SchnellImageIO): format sniffing,
// the JPEG structure check, and libpng / libjpeg-turbo / libwebp through the codecs.
// Any input must decode to an image whose pixels fill its size, or throw.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let image = try? ImageDecoder.decode(bytes) else { return 0 }
    if image.pixels.count != image.width * image.height * image.channels {
        fatalError("decoded \(image.width)x\(image.height)x\(image.channels) with \(image.pixels.count) bytes")
    }
    return 0
}
