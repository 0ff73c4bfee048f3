/// A tensor a model expects in its checkpoint: name and shape.
public struct TensorSpec: Equatable, Hashable, Sendable {
    public let name: String
    public let shape: [Int]

    public init(_ name: String, _ shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}

extension WeightStore {
    /// The tensors `specs` name, each checked for shape, keyed by name. Refuses a store that
    /// lacks one or holds a tensor that is neither expected nor listed in `ignoring` (a
    /// stray tensor usually means the file belongs to another model or variant).
    public func tensors(matching specs: [TensorSpec], ignoring: Set<String> = []) throws -> [String: WeightTensor] {
        var found: [String: WeightTensor] = [:]
        for spec in specs {
            found[spec.name] = try tensor(spec.name, shape: spec.shape)
        }
        let unexpected = names.subtracting(found.keys).subtracting(ignoring).sorted()
        guard unexpected.isEmpty else { throw WeightsError.unexpectedTensors(names: unexpected, file: path) }
        return found
    }
}
