import Foundation

// libFuzzer harness: the GGUF reader (Sources/Schnell/Weights/GGUF.swift), on the input written
// to a file as a user's weight file would be. Whatever the bytes, the reader must return or throw,
// never trap or allocate for a count the file cannot hold (libFuzzer's -rss_limit_mb catches
// that). A file it accepts must have every tensor inside the mapping and no two overlapping,
// each row whole blocks of its type; each small tensor is converted to floats (dequantized for
// the block types), and the parameter count sums as `schnell inspect` sums it.

let fuzzFile = FileManager.default.temporaryDirectory
    .appendingPathComponent("schnell-fuzz-\(getpid()).gguf").path

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let descriptor = open(fuzzFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard descriptor >= 0, write(descriptor, data, size) == size, close(descriptor) == 0 else {
        fatalError("cannot write \(fuzzFile)")
    }
    guard let file = try? GGUFFile(path: fuzzFile) else { return 0 }
    precondition(file.alignment > 0 && file.alignment & (file.alignment - 1) == 0, "alignment \(file.alignment)")
    precondition(file.tensorOrder.count == file.tensors.count, "tensor names repeat")
    var spans: [Range<Int>] = []
    for name in file.tensorOrder {
        guard let tensor = file.tensors[name] else { preconditionFailure("'\(name)' is listed but absent") }
        let bytes = tensor.dtype.byteCount(of: tensor.count)
        precondition(bytes != nil && bytes == tensor.sizeBytes && tensor.sizeBytes > 0, "'\(name)' has no whole-block size")
        precondition(tensor.byteOffset >= 0 && tensor.byteOffset + tensor.sizeBytes <= tensor.mapping.sizeBytes,
                     "'\(name)' lies outside the file")
        precondition(tensor.byteOffset % file.alignment == 0, "'\(name)' is misaligned")
        spans.append(tensor.byteOffset..<(tensor.byteOffset + tensor.sizeBytes))
        if tensor.count <= 1 << 16 { _ = tensor.floats() }
    }
    spans.sort { $0.lowerBound < $1.lowerBound }
    for (previous, next) in zip(spans, spans.dropFirst()) {
        precondition(!previous.overlaps(next), "tensors overlap")
    }
    _ = file.tensors.values.reduce(0) { $0 + $1.count }
    return 0
}
