/// Bounds on what a model configuration may declare, checked before anything is sized from it:
/// a count read from a file must not allocate without limit or overflow the products the name
/// tables and kernels form (`heads * headDim`, `6 * hidden`, Int32 kernel arguments). Real
/// FLUX-class models lie far inside them.
enum ConfigLimits {
    /// Layers or blocks of one kind (FLUX.1 has 19 double- and 38 single-stream, T5-XXL 24, CLIP-L 12).
    static let maxLayers = 1024
    /// Any width, head count, vocabulary size, position count, or product of them (T5-XXL's
    /// vocabulary is 32128, its d_ff 10240).
    static let maxDimension = 1 << 24

    /// Throws naming `key` and `file` unless `value` lies in `range`.
    static func require(_ key: String, _ value: Int, in range: ClosedRange<Int>, file: String) throws {
        guard range.contains(value) else {
            throw WeightsError.invalidConfig(file: file, reason: "'\(key)' is \(value); it must be in \(range.lowerBound)...\(range.upperBound)")
        }
    }

    /// `value` as a layer count: 0 (`allowsZero`) or 1 up to `maxLayers`.
    static func requireLayers(_ key: String, _ value: Int, allowsZero: Bool = false, file: String) throws {
        try require(key, value, in: (allowsZero ? 0 : 1)...maxLayers, file: file)
    }

    /// `value` as a width or size: 1 up to `maxDimension`.
    static func requireDimension(_ key: String, _ value: Int, file: String) throws {
        try require(key, value, in: 1...maxDimension, file: file)
    }

    /// The product of `factors` (each already a valid dimension), itself at most `maxDimension`.
    static func requireProduct(_ what: String, _ factors: [Int], file: String) throws {
        guard let product = checkedProduct(factors), product <= maxDimension else {
            throw WeightsError.invalidConfig(
                file: file, reason: "\(what) = \(factors.map(String.init).joined(separator: " x ")) is more than \(maxDimension)")
        }
    }
}
