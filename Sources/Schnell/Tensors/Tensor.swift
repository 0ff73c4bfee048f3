/// Memory a backend allocated for tensors: host memory for the CPU backend, device memory for a
/// GPU one. Only the backend that made a storage reads or writes it; everyone else sees tensors.
public protocol TensorStorage: AnyObject, Sendable {
    /// Bytes in the allocation.
    var sizeBytes: Int { get }
}

/// A tensor: shape, dtype and a view into storage that belongs to a backend. Row-major; the last
/// dimension is the row width, and rows may be `rowStride` elements apart, so a column slice of
/// a wider tensor (q out of a fused q|k|v projection) is a view, not a copy. Batch is always 1:
/// `shape` has no batch axis.
///
/// Model and pipeline code makes tensors only through a backend (`allocate`, `upload`, the ops)
/// and reaches the values only through `Backend.download`: a tensor has no pointer to hand out.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let dtype: DType
    /// Elements between the starts of consecutive rows (>= width).
    public let rowStride: Int
    public let storage: any TensorStorage
    /// Where the first element is in the storage, in elements.
    public let offset: Int

    /// A view; backends make tensors through this.
    public init(shape: [Int], dtype: DType, rowStride: Int, storage: any TensorStorage, offset: Int) {
        self.shape = shape
        self.dtype = dtype
        self.rowStride = rowStride
        self.storage = storage
        self.offset = offset
    }

    public var count: Int { shape.reduce(1, *) }
    /// Row width (the last dimension).
    public var width: Int { shape.last ?? 1 }
    /// Number of rows (the product of all but the last dimension).
    public var rows: Int { shape.dropLast().reduce(1, *) }
    public var isContiguous: Bool { rowStride == width || rows <= 1 }

    /// Rows [start, end) of a [rows, width] tensor, as a view.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(shape.count == 2 && range.lowerBound >= 0 && range.upperBound <= rows,
                     "rows \(range) of a tensor of shape \(shape)")
        return Tensor(shape: [range.count, width], dtype: dtype, rowStride: rowStride, storage: storage,
                      offset: offset + range.lowerBound * rowStride)
    }

    /// Columns [start, end) of every row of a [rows, width] tensor, as a strided view.
    public func columns(_ range: Range<Int>) -> Tensor {
        precondition(shape.count == 2 && range.lowerBound >= 0 && range.upperBound <= width,
                     "columns \(range) of a tensor of shape \(shape)")
        return Tensor(shape: [rows, range.count], dtype: dtype, rowStride: rowStride, storage: storage,
                      offset: offset + range.lowerBound)
    }

    /// The same contiguous values under another shape of equal size.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(isContiguous && newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, dtype: dtype, rowStride: newShape.last ?? 1, storage: storage, offset: offset)
    }

    /// Whether two tensors are views into the same allocation.
    public func sharesStorage(with other: Tensor) -> Bool { storage === other.storage }
}
