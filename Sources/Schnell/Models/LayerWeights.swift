/// A model's weights as its backend holds them: each layer resolved through the name table
/// (`MappedWeights`) and prepared by the backend once, at load.
struct LayerWeights {
    let mapped: MappedWeights
    let backend: any Backend

    func linear(_ name: String) throws -> Linear {
        try backend.prepare(mapped.linear(name))
    }

    /// A norm scale as a float32 tensor of the backend.
    func vector(_ name: String) throws -> Tensor {
        backend.upload(try mapped.vector(name))
    }
}
