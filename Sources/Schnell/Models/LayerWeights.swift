/// A model's weights as its backend holds them: each tensor resolved through the family's name
/// table (`MappedWeights`) and each layer prepared by the backend once, at load.
struct LayerWeights {
    let mapped: MappedWeights
    let backend: any Backend
    /// `--weights TYPE`: linear layers quantized as they load (nil: as stored).
    var quantization: WeightQuantization? = nil

    /// A checkpoint tensor as stored (embedding tables, read by row).
    func tensor(_ name: String) throws -> WeightTensor {
        try mapped.tensor(name)
    }

    /// A norm's weight or bias as a float32 tensor of the backend.
    func vector(_ name: String) throws -> Tensor {
        backend.upload(try mapped.tensor(name))
    }

    func linear(_ name: String) throws -> Linear {
        let layer = try mapped.linear(name)
        return try backend.prepare(quantization.map { try $0.quantize(layer, engineName: name) } ?? layer)
    }

    func conv(_ name: String, stride: Int = 1, padding: Conv2d.Padding) throws -> Conv2d {
        try backend.prepare(mapped.conv(name, stride: stride, padding: padding))
    }
}
