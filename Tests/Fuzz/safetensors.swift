import Foundation

// libFuzzer harness: the safetensors reader (Sources/Schnell/Weights/SafeTensors.swift), on the
// input written to a file as a user's weight file would be. A file it accepts must have every
// tensor inside the mapping: each small tensor is read in full (a wrong span faults), and the
// parameter count sums as `schnell inspect` sums it (a wrapped size overflows the sum).

let fuzzFile = FileManager.default.temporaryDirectory
    .appendingPathComponent("schnell-fuzz-\(getpid()).safetensors").path

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let descriptor = open(fuzzFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard descriptor >= 0, write(descriptor, data, size) == size, close(descriptor) == 0 else {
        fatalError("cannot write \(fuzzFile)")
    }
    guard let file = try? SafeTensorsFile(path: fuzzFile) else { return 0 }
    for tensor in file.tensors.values where tensor.count <= 1 << 16 {
        _ = tensor.floats()
    }
    _ = file.tensors.values.reduce(0) { $0 + $1.count }
    return 0
}
