import Foundation

// libFuzzer harness: `schnell inspect`'s reader (Sources/Schnell/Weights/ModelInspection.swift):
// family recognition, the configuration inferred from tensor names and shapes, and the name
// table built from it and compared with the file. The input is a little-endian UInt32 data size
// (at most 4 MiB is used) and then a safetensors JSON header; the harness writes the header and
// that many zero bytes of data as a single weight file, so the fuzzer spends its time on names,
// shapes and offsets. Whatever they are, inspection must report or throw.

let fuzzFile = FileManager.default.temporaryDirectory
    .appendingPathComponent("schnell-fuzz-inspect-\(getpid()).safetensors").path
let zeros = [UInt8](repeating: 0, count: 4 << 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 4 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let dataBytes = Int(input.loadUnaligned(as: UInt32.self).littleEndian) % (zeros.count + 1)
    var headerLength = UInt64(size - 4).littleEndian
    let descriptor = open(fuzzFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard descriptor >= 0, write(descriptor, &headerLength, 8) == 8, write(descriptor, data + 4, size - 4) == size - 4,
          write(descriptor, zeros, dataBytes) == dataBytes, close(descriptor) == 0 else {
        fatalError("cannot write \(fuzzFile)")
    }
    _ = try? ModelInspector.inspect(path: fuzzFile)
    return 0
}
