/// A linear layer y = x W^T + b. The weight may be several row blocks — q, k, v (and the
/// MLP input of a single-stream block) kept as separate tensors or as slices of one fused
/// tensor — which the GEMM writes side by side into one output, so fused projections are
/// joined once at load without copying weights. Each block stays in its stored dtype.
public struct Linear: Sendable {
    public struct Block: Sendable {
        public let weight: WeightTensor  // [rows, inFeatures]
        public let bias: WeightTensor?   // [rows]
    }

    public let blocks: [Block]
    public let inFeatures: Int
    public let outFeatures: Int
    /// LoRA updates the backend adds to the output at run time, each on its output rows.
    public let lowRank: [LowRankDelta]

    public init(blocks: [Block], lowRank: [LowRankDelta] = []) throws {
        guard let first = blocks.first else {
            throw WeightsError.invalidConfig(file: "", reason: "a linear layer needs at least one weight")
        }
        let inFeatures = first.weight.shape.count == 2 ? first.weight.shape[1] : -1
        for block in blocks {
            guard block.weight.shape.count == 2, block.weight.shape[1] == inFeatures else {
                throw WeightsError.wrongShape(name: block.weight.name, file: block.weight.file,
                                              expected: [block.weight.shape.first ?? 0, inFeatures],
                                              actual: block.weight.shape)
            }
            if let bias = block.bias, bias.shape != [block.weight.shape[0]] {
                throw WeightsError.wrongShape(name: bias.name, file: bias.file,
                                              expected: [block.weight.shape[0]], actual: bias.shape)
            }
        }
        self.blocks = blocks
        self.inFeatures = inFeatures
        outFeatures = blocks.reduce(0) { $0 + $1.weight.shape[0] }
        for delta in lowRank {
            guard delta.inFeatures == inFeatures, delta.rows.upperBound <= outFeatures else {
                throw WeightsError.wrongShape(name: first.weight.name + " (LoRA)", file: first.weight.file,
                                              expected: [outFeatures, inFeatures], actual: [delta.rows.upperBound, delta.inFeatures])
            }
        }
        self.lowRank = lowRank
    }

    public init(weight: WeightTensor, bias: WeightTensor?) throws {
        try self.init(blocks: [Block(weight: weight, bias: bias)])
    }

    /// The layer that computes only output features [start, end): the blocks' rows in that range,
    /// as views (a single-stream block's q|k|v|MLP projection splits into q|k|v and the MLP input,
    /// whichever way the checkpoint fuses them).
    public func outputs(_ range: Range<Int>) throws -> Linear {
        var pieces: [Block] = []
        var first = 0
        for block in blocks {
            let rows = block.weight.shape[0]
            let start = max(range.lowerBound, first), end = min(range.upperBound, first + rows)
            if start < end {
                let local = (start - first)..<(end - first)
                pieces.append(Block(weight: block.weight.rows(local), bias: block.bias?.rows(local)))
            }
            first += rows
        }
        return try Linear(blocks: pieces, lowRank: lowRank.compactMap { $0.restricted(to: range) })
    }

    /// Parameters in the weights and biases.
    public var parameterCount: Int {
        blocks.reduce(0) { $0 + $1.weight.count + ($1.bias?.count ?? 0) }
    }
}
