/// The one mechanism that turns checkpoint tensor names into the engine's, for every family
/// (FLUX transformer, VAE, CLIP, T5; their tables are in the `*WeightNames.swift` files).
///
/// A family declares its tensors as data: each engine tensor once, with its sources in both
/// checkpoint layouts — the diffusers folder and the original single files — and the shape each
/// source is stored with. A source is a row range of a checkpoint tensor, so fused tensors are
/// joined (diffusers' q, k, v -> one projection) or split (the original final layer's
/// (shift, scale) -> the engine's (scale, shift)) by listing row blocks; the GEMM reads the
/// blocks where they lie in the memory map. One resolver checks every shape and refuses missing
/// or unexpected tensors, naming the file and the tensor; `schnell inspect` lists the same
/// differences instead of throwing.
public enum CheckpointLayout: String, Sendable, CaseIterable {
    case diffusers, original
}

/// A tensor a checkpoint holds: name and shape.
public struct TensorSpec: Equatable, Hashable, Sendable {
    public let name: String
    public let shape: [Int]

    public init(_ name: String, _ shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}

/// Rows `rows` of the checkpoint tensor `name`, which is stored with shape `shape`.
public struct SourceRows: Sendable {
    public let name: String
    public let shape: [Int]
    public let rows: Range<Int>
    /// Other names the same tensor may be saved under (a tied table saved twice): the first name
    /// present is read, and any other present must have the same shape.
    public let aliases: [String]

    init(name: String, shape: [Int], rows: Range<Int>, aliases: [String] = []) {
        self.name = name
        self.shape = shape
        self.rows = rows
        self.aliases = aliases
    }

    static func whole(_ name: String, _ shape: [Int], aliases: [String] = []) -> SourceRows {
        SourceRows(name: name, shape: shape, rows: 0..<(shape.first ?? 0), aliases: aliases)
    }
}

/// Rows `rows` of the checkpoint linear layer `name` (its `name.weight` and `name.bias`), which
/// has `totalRows` outputs.
struct LinearRows: Sendable {
    let name: String
    let totalRows: Int
    let rows: Range<Int>

    static func whole(_ name: String, _ rows: Int) -> LinearRows {
        LinearRows(name: name, totalRows: rows, rows: 0..<rows)
    }
}

/// One engine tensor: its shape and its sources in each layout, stacked along the first axis.
/// Each source's rows are viewed with the engine's shape past the first axis, so a stored
/// [C, C, 1, 1] convolution serves as a [C, C] linear weight.
public struct WeightEntry: Sendable {
    public let engineName: String
    public let shape: [Int]
    public let diffusers: [SourceRows]
    public let original: [SourceRows]

    public func sources(_ layout: CheckpointLayout) -> [SourceRows] {
        layout == .diffusers ? diffusers : original
    }

    /// A tensor stored whole, with the engine's shape, under each layout's name.
    static func tensor(_ engine: String, _ shape: [Int], diffusers: String, original: String) -> WeightEntry {
        WeightEntry(engineName: engine, shape: shape, diffusers: [.whole(diffusers, shape)],
                    original: [.whole(original, shape)])
    }

    /// A tensor stored whole under the same name in both layouts.
    static func tensor(_ engine: String, _ shape: [Int], _ name: String, aliases: [String] = []) -> WeightEntry {
        let source = SourceRows.whole(name, shape, aliases: aliases)
        return WeightEntry(engineName: engine, shape: shape, diffusers: [source], original: [source])
    }

    /// A linear layer as the entries `engine.weight` [rows, inFeatures] and, with `bias`,
    /// `engine.bias` [rows], one block per source. `originalAxes` are unit axes the original
    /// layout's weights carry after those two (the VAE's 1x1 convolutions: [1, 1]).
    static func linear(_ engine: String, inFeatures: Int, bias: Bool = true, diffusers: [LinearRows],
                       original: [LinearRows], originalAxes: [Int] = []) -> [WeightEntry] {
        let rows = diffusers.reduce(0) { $0 + $1.rows.count }
        func sources(_ blocks: [LinearRows], _ suffix: String, _ trailing: [Int]) -> [SourceRows] {
            blocks.map { SourceRows(name: $0.name + suffix, shape: [$0.totalRows] + trailing, rows: $0.rows) }
        }
        var entries = [WeightEntry(engineName: engine + ".weight", shape: [rows, inFeatures],
                                   diffusers: sources(diffusers, ".weight", [inFeatures]),
                                   original: sources(original, ".weight", [inFeatures] + originalAxes))]
        if bias {
            entries.append(WeightEntry(engineName: engine + ".bias", shape: [rows],
                                       diffusers: sources(diffusers, ".bias", []),
                                       original: sources(original, ".bias", [])))
        }
        return entries
    }

    /// A linear layer named alike in both layouts.
    static func linear(_ engine: String, inFeatures: Int, bias: Bool = true, _ sources: [LinearRows]) -> [WeightEntry] {
        linear(engine, inFeatures: inFeatures, bias: bias, diffusers: sources, original: sources)
    }
}

/// Every tensor of one model configuration.
public struct WeightTable: Sendable {
    public let entries: [WeightEntry]
    /// Checkpoint tensors (names below the prefix) that may be present, in any shape, and are
    /// not read: buffers and the heads of a larger model the component was cut from.
    public let ignored: Set<String>

    init(entries: [WeightEntry], ignored: Set<String> = []) {
        self.entries = entries
        self.ignored = ignored
    }

    /// Every checkpoint tensor the table reads in `layout`, with its stored shape, once each.
    public func expectedTensors(_ layout: CheckpointLayout, prefix: String = "") -> [TensorSpec] {
        var seen = Set<String>()
        return entries.flatMap { $0.sources(layout) }.compactMap { source in
            seen.insert(source.name).inserted ? TensorSpec(prefix + source.name, source.shape) : nil
        }
    }

    /// The checkpoint name of an engine tensor's first source.
    public func checkpointName(of engineName: String, layout: CheckpointLayout) -> String? {
        entries.first { $0.engineName == engineName }?.sources(layout).first?.name
    }

    /// The stored tensor that holds an engine tensor's first source, its shape unchecked: for
    /// reading a configuration from shapes before the table of that configuration exists.
    func storedTensor(_ engineName: String, in store: WeightStore, layout: CheckpointLayout,
                      prefix: String) throws -> WeightTensor {
        guard let source = entries.first(where: { $0.engineName == engineName })?.sources(layout).first else {
            throw WeightsError.missingTensor(name: engineName, file: "engine table")
        }
        return try store.tensor(storedName(source, in: store, prefix: prefix) ?? prefix + source.name)
    }

    func isStored(_ engineName: String, in store: WeightStore, layout: CheckpointLayout, prefix: String) -> Bool {
        (try? storedTensor(engineName, in: store, layout: layout, prefix: prefix)) != nil
    }

    /// Every way `store` differs from the table, in table order with unexpected tensors last:
    /// missing tensors, wrong shapes, and tensors below `prefix` that the table neither reads
    /// nor ignores (a stray tensor usually means the file belongs to another model or variant).
    public func problems(in store: WeightStore, layout: CheckpointLayout, prefix: String = "") -> [WeightsError] {
        var problems: [WeightsError] = []
        var known = Set(ignored.map { prefix + $0 })
        for entry in entries {
            for source in entry.sources(layout) {
                let names = ([source.name] + source.aliases).map { prefix + $0 }
                guard known.insert(names[0]).inserted else { continue }
                known.formUnion(names)
                let present = names.compactMap { try? store.tensor($0) }
                if present.isEmpty { problems.append(.missingTensor(name: names[0], file: store.path)) }
                for tensor in present where tensor.shape != source.shape {
                    problems.append(.wrongShape(name: tensor.name, file: tensor.file, expected: source.shape,
                                                actual: tensor.shape))
                }
            }
        }
        let unexpected = store.names.filter { $0.hasPrefix(prefix) && !known.contains($0) }.sorted()
        if !unexpected.isEmpty { problems.append(.unexpectedTensors(names: unexpected, file: store.path)) }
        return problems
    }

    /// The model's tensors by engine name, after checking that `store` holds exactly what the
    /// table expects (the first problem is thrown).
    func resolve(from store: WeightStore, layout: CheckpointLayout, prefix: String = "") throws -> MappedWeights {
        if let problem = problems(in: store, layout: layout, prefix: prefix).first { throw problem }
        var parts: [String: [WeightTensor]] = [:]
        for entry in entries {
            parts[entry.engineName] = try entry.sources(layout).map { source in
                let stored = try store.tensor(storedName(source, in: store, prefix: prefix) ?? prefix + source.name)
                let shape = [source.rows.count] + entry.shape.dropFirst()
                guard let view = stored.rows(source.rows).reshaped(shape) else {
                    throw WeightsError.wrongShape(name: stored.name, file: stored.file, expected: shape, actual: stored.shape)
                }
                return view
            }
        }
        return MappedWeights(parts: parts)
    }

    private func storedName(_ source: SourceRows, in store: WeightStore, prefix: String) -> String? {
        ([source.name] + source.aliases).map { prefix + $0 }.first(where: store.contains)
    }
}

/// A model's tensors by engine name, as a table resolved them: views into the memory map, in
/// their stored dtypes.
struct MappedWeights: Sendable {
    let parts: [String: [WeightTensor]]

    /// An engine tensor read from one checkpoint tensor.
    func tensor(_ name: String) throws -> WeightTensor {
        guard let found = parts[name], found.count == 1 else {
            throw WeightsError.missingTensor(name: name, file: "engine table")
        }
        return found[0]
    }

    /// The linear layer `name.weight` (+ `name.bias` when the table has one), one block per source.
    func linear(_ name: String) throws -> Linear {
        guard let weights = parts[name + ".weight"] else {
            throw WeightsError.missingTensor(name: name + ".weight", file: "engine table")
        }
        let biases = parts[name + ".bias"]
        if let biases, biases.count != weights.count {
            throw WeightsError.missingTensor(name: name + ".bias", file: "engine table")
        }
        return try Linear(blocks: weights.indices.map { Linear.Block(weight: weights[$0], bias: biases?[$0]) })
    }

    /// The convolution `name.weight` + `name.bias`.
    func conv(_ name: String, stride: Int = 1, padding: Conv2d.Padding) throws -> Conv2d {
        try Conv2d(weight: tensor(name + ".weight"), bias: tensor(name + ".bias"), stride: stride, padding: padding)
    }
}
