import SchnellKernels

extension CPUBackend {
    public func relativePositionBias(_ table: WeightTensor, queryTokens: Int, keyTokens: Int,
                                     bidirectional: Bool, maxDistance: Int) -> Tensor {
        precondition(table.shape.count == 2, "relative position bias table must be [buckets, heads]")
        let buckets = table.shape[0], heads = table.shape[1]
        let result = output([heads, queryTokens, keyTokens])
        schnell_relative_position_bias(table.pointer, table.dtype.kernelCode, heads, queryTokens, keyTokens,
                                       bidirectional ? 1 : 0, Int32(buckets), Int32(maxDistance), floats(result))
        return result
    }
}
