import Foundation
import SchnellKernels

/// Turning float weights into GGUF block types, for `schnell quantize` (a file) and for
/// `--weights TYPE` (at load, in memory). One rule decides which tensors keep a float type, the
/// one city96's FLUX GGUF converter follows: vectors and tensors of at most 1,024 values stay
/// F32, the FLUX embedders and the final layer (`img_in`, `txt_in`, `time_in`, `vector_in`,
/// `guidance_in`, `final_layer`) F16, and so do matrices whose rows are not whole blocks of the
/// type; everything else takes the type. Values are rounded as ggml's reference quantizers
/// round (`schnell_quantize_reference`). At load, a weight the rule keeps in a float type stays in
/// its stored one when that is bf16 or f16, and a weight already in blocks (GGUF) stays as it is.
public struct WeightQuantization: Sendable, Equatable {
    public let type: DType

    /// The types a user may ask for, by the names llama.cpp and stable-diffusion.cpp use.
    public static let choices: [DType] = [.q8_0, .q6_K, .q5_K, .q5_1, .q5_0, .q4_K, .q4_1, .q4_0, .q3_K, .q2_K, .f16, .bf16]

    public init(type: DType) {
        self.type = type
    }

    /// "q8_0", "Q4_K", "q4_k", "f16", ...; nil for a name that is not one of `choices`.
    public init?(name: String) {
        guard let type = Self.choices.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else { return nil }
        self.type = type
    }

    public static var choiceNames: String { choices.map { $0.rawValue.lowercased() }.joined(separator: "|") }

    /// Engine-name prefixes of the FLUX layers kept F16 (the BFL `img_in`, `txt_in`, `time_in`,
    /// `vector_in`, `guidance_in` and `final_layer`).
    static let keptF16 = ["img_in", "txt_in", "time_in.", "vector_in.", "guidance_in.", "final."]

    /// The dtype an engine tensor of `shape` is stored in.
    public func storedType(engineName: String, shape: [Int]) -> DType {
        let count = shape.reduce(1, *)
        if shape.count < 2 || count <= 1024 { return .f32 }
        if Self.keptF16.contains(where: { engineName.hasPrefix($0) }) { return .f16 }
        return (shape.last ?? 0) % type.blockValues == 0 ? type : .f16
    }

    /// Rows of `width` float values, each read from its source as stored (times its scale when
    /// it has one), quantized to `type` one after another into `destination`, in parallel.
    static func quantizeRows(_ sources: [RowSource], width: Int, to type: DType, destination: UnsafeMutableRawPointer) {
        let rowBytes = type.byteCount(of: width) ?? 0
        let chunk = max(1, min(64, sources.count / 32))
        let target = UnsafeSendablePointer(pointer: destination)
        DispatchQueue.concurrentPerform(iterations: (sources.count + chunk - 1) / chunk) { index in
            var values = [Float](repeating: 0, count: width)
            for row in (index * chunk)..<min(sources.count, (index + 1) * chunk) {
                let source = sources[row]
                values.withUnsafeMutableBufferPointer { buffer in
                    guard let base = buffer.baseAddress else { return }
                    schnell_convert_to_f32_reference(source.pointer, source.dtype.kernelCode, base, width)
                    if let scale = source.scale { for i in 0..<width { buffer[i] *= scale } }
                    let row = target.pointer + row * rowBytes
                    if type == .f32 {
                        row.copyMemory(from: base, byteCount: width * 4)
                    } else {
                        schnell_quantize_reference(base, type.kernelCode, row, width)
                    }
                }
            }
        }
    }

    /// `weight` in `type`, in memory the engine owns (the memory map is left as it is).
    public static func quantize(_ weight: WeightTensor, to type: DType) throws -> WeightTensor {
        let width = weight.shape.last ?? 1, rows = weight.count / max(width, 1)
        guard let rowBytes = type.byteCount(of: width), let sourceRowBytes = weight.dtype.byteCount(of: width) else {
            throw WeightsError.wrongShape(name: weight.name, file: weight.file, expected: [rows, width / type.blockValues * type.blockValues],
                                          actual: weight.shape)
        }
        let rowElements = max(weight.shape.dropFirst().reduce(1, *), 1)
        let sources = (0..<rows).map { row in
            RowSource(pointer: weight.pointer + row * sourceRowBytes, dtype: weight.dtype,
                      scale: weight.scale?.value(row: row * width / rowElements))
        }
        let memory = try MappedFile(anonymousBytes: rows * rowBytes, name: weight.file) { destination in
            quantizeRows(sources, width: width, to: type, destination: destination)
        }
        // The source was read once and is not needed again: its pages need not stay resident.
        weight.mapping.dropPages(offset: weight.byteOffset, count: rows * sourceRowBytes)
        return WeightTensor(name: weight.name, dtype: type, shape: weight.shape, file: weight.file, mapping: memory, byteOffset: 0)
    }

    /// A linear layer with each block's weight in its stored type for `engineName` (biases stay).
    /// Weights already in a block type (a GGUF file) are left as they are: requantizing them would
    /// only add rounding.
    func quantize(_ layer: Linear, engineName: String) throws -> Linear {
        let type = storedType(engineName: engineName, shape: [layer.outFeatures, layer.inFeatures])
        let blocks = try layer.blocks.map { block in
            guard !block.weight.dtype.isBlockType, type != block.weight.dtype,
                  type.isBlockType || block.weight.dtype == .f32 || type == .bf16 else { return block }
            return Linear.Block(weight: try Self.quantize(block.weight, to: type), bias: block.bias)
        }
        return try Linear(blocks: blocks)
    }
}

/// A row of a weight in a memory map, for the workers of `quantizeRows` (which only read it).
struct RowSource: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    let dtype: DType
    let scale: Float?
}

/// The output handed to the workers of `concurrentPerform`, each writing rows of its own.
struct UnsafeSendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
}
