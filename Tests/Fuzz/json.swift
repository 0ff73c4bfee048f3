// libFuzzer harness: the server's JSON request parser (Sources/SchnellServer/JSONValue.swift).
// Any input must parse or throw; a parsed value must serialize and parse again.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSONValue.parse(bytes) else { return 0 }
    _ = value["prompt"]?.stringValue
    _ = try? JSONValue.parse(value.serialized())
    return 0
}
