// libFuzzer harness: the server's multipart/form-data parser (Sources/SchnellServer/Multipart.swift).
// The first line of the input is the Content-Type header value, the rest the body.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let lineEnd = bytes.firstIndex(of: 0x0A) ?? bytes.endIndex
    let contentType = String(decoding: bytes[..<lineEnd], as: UTF8.self)
    let body = Array(bytes[min(lineEnd + 1, bytes.endIndex)...])
    guard let boundary = MultipartForm.boundary(contentType: contentType),
          let form = try? MultipartForm(body: body, boundary: boundary) else { return 0 }
    _ = form.parts.first { $0.name == "prompt" }.map { String(decoding: $0.body, as: UTF8.self) }
    _ = form.files(["image", "image[]", "mask"])
    return 0
}
