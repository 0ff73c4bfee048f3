/// A 2-D convolution: weight [outChannels, inChannels, kernelHeight, kernelWidth] and bias
/// [outChannels], both in their stored dtype, with a stride and zero padding per side.
public struct Conv2d: Sendable {
    /// Zero rows/columns added around the input before the kernel slides over it.
    public struct Padding: Sendable, Equatable {
        public let top: Int, bottom: Int, left: Int, right: Int

        public init(top: Int, bottom: Int, left: Int, right: Int) {
            self.top = top
            self.bottom = bottom
            self.left = left
            self.right = right
        }

        /// The same padding on every side (PyTorch's `padding=n`).
        public static func uniform(_ size: Int) -> Padding {
            Padding(top: size, bottom: size, left: size, right: size)
        }
    }

    public let weight: WeightTensor
    public let bias: WeightTensor?
    public let stride: Int
    public let padding: Padding

    public var outChannels: Int { weight.shape[0] }
    public var inChannels: Int { weight.shape[1] }
    public var kernelHeight: Int { weight.shape[2] }
    public var kernelWidth: Int { weight.shape[3] }

    public init(weight: WeightTensor, bias: WeightTensor?, stride: Int = 1, padding: Padding) throws {
        guard weight.shape.count == 4 else {
            throw WeightsError.wrongShape(name: weight.name, file: weight.file,
                                          expected: [weight.shape.first ?? 0, -1, -1, -1], actual: weight.shape)
        }
        if let bias, bias.shape != [weight.shape[0]] {
            throw WeightsError.wrongShape(name: bias.name, file: bias.file, expected: [weight.shape[0]],
                                          actual: bias.shape)
        }
        guard stride >= 1, min(padding.top, padding.bottom, padding.left, padding.right) >= 0 else {
            throw WeightsError.invalidConfig(file: weight.file,
                                             reason: "convolution '\(weight.name)' needs stride >= 1 and padding >= 0")
        }
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
    }
}
