import Foundation

/// The FLUX transformer's shape, from a diffusers `config.json` or inferred from tensor shapes.
public struct TransformerConfig: Sendable, Equatable {
    public var inChannels: Int
    public var outChannels: Int
    public var patchSize: Int
    public var numLayers: Int
    public var numSingleLayers: Int
    public var headDim: Int
    public var heads: Int
    public var jointAttentionDim: Int
    public var pooledProjectionDim: Int
    public var guidanceEmbeds: Bool
    /// Rotary dims per position axis (text index, row, column); sums to headDim. nil when a
    /// single file did not say and the head width has no known default.
    public var axesDimsRope: [Int]?
    public var mlpRatio: Int = 4

    public var innerDim: Int { heads * headDim }
    public var mlpHidden: Int { innerDim * mlpRatio }
    /// Width of the timestep sinusoid fed to time_in / guidance_in.
    public static let timestepChannels = 256

    /// FLUX.1-schnell (guidanceEmbeds false) and FLUX.1-dev (true).
    public static func flux1(guidance: Bool) -> TransformerConfig {
        TransformerConfig(inChannels: 64, outChannels: 64, patchSize: 1, numLayers: 19, numSingleLayers: 38,
                          headDim: 128, heads: 24, jointAttentionDim: 4096, pooledProjectionDim: 768,
                          guidanceEmbeds: guidance, axesDimsRope: [16, 56, 56])
    }

    /// Reads diffusers' `transformer/config.json`.
    public init(contentsOf file: String) throws {
        try self.init(configJSON: ModelFile.contents(of: file), file: file)
    }

    /// Decodes diffusers' `transformer/config.json`; absent or null keys take FLUX.1's values.
    public init(configJSON data: Data, file: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw WeightsError.invalidConfig(file: file, reason: "not a JSON object")
        }
        func isAbsent(_ key: String) -> Bool { object[key] == nil || object[key] is NSNull }
        func integer(_ key: String, default value: Int) throws -> Int {
            if isAbsent(key) { return value }
            guard let number = object[key] as? NSNumber, !Self.isBoolean(number), let integer = object[key] as? Int else {
                throw WeightsError.invalidConfig(file: file, reason: "'\(key)' must be an integer")
            }
            return integer
        }
        inChannels = try integer("in_channels", default: 64)
        outChannels = try integer("out_channels", default: inChannels)
        patchSize = try integer("patch_size", default: 1)
        numLayers = try integer("num_layers", default: 19)
        numSingleLayers = try integer("num_single_layers", default: 38)
        headDim = try integer("attention_head_dim", default: 128)
        heads = try integer("num_attention_heads", default: 24)
        jointAttentionDim = try integer("joint_attention_dim", default: 4096)
        pooledProjectionDim = try integer("pooled_projection_dim", default: 768)
        if isAbsent("guidance_embeds") {
            guidanceEmbeds = false
        } else {
            guard let number = object["guidance_embeds"] as? NSNumber, Self.isBoolean(number) else {
                throw WeightsError.invalidConfig(file: file, reason: "'guidance_embeds' must be true or false")
            }
            guidanceEmbeds = number.boolValue
        }
        if isAbsent("axes_dims_rope") {
            axesDimsRope = [16, 56, 56]
        } else {
            guard let values = object["axes_dims_rope"] as? [NSNumber], !values.contains(where: Self.isBoolean),
                  let integers = object["axes_dims_rope"] as? [Int] else {
                throw WeightsError.invalidConfig(file: file, reason: "'axes_dims_rope' must be a list of integers")
            }
            axesDimsRope = integers
        }
        try validate(file: file)
    }

    /// On Linux every JSON 0 and 1 also casts to Bool (and true to 1), so JSON booleans are
    /// told apart by the NSNumber's type code ("c").
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    public init(inChannels: Int, outChannels: Int, patchSize: Int, numLayers: Int, numSingleLayers: Int,
                headDim: Int, heads: Int, jointAttentionDim: Int, pooledProjectionDim: Int,
                guidanceEmbeds: Bool, axesDimsRope: [Int]?) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.patchSize = patchSize
        self.numLayers = numLayers
        self.numSingleLayers = numSingleLayers
        self.headDim = headDim
        self.heads = heads
        self.jointAttentionDim = jointAttentionDim
        self.pooledProjectionDim = pooledProjectionDim
        self.guidanceEmbeds = guidanceEmbeds
        self.axesDimsRope = axesDimsRope
    }

    /// Checks what the model code relies on, before anything is sized from it; called once
    /// wherever a config is made.
    public func validate(file: String) throws {
        try ConfigLimits.requireLayers("num_layers", numLayers, allowsZero: true, file: file)
        try ConfigLimits.requireLayers("num_single_layers", numSingleLayers, allowsZero: true, file: file)
        for (key, value) in [("in_channels", inChannels), ("out_channels", outChannels), ("attention_head_dim", headDim),
                             ("num_attention_heads", heads), ("joint_attention_dim", jointAttentionDim),
                             ("pooled_projection_dim", pooledProjectionDim), ("MLP ratio", mlpRatio)] {
            try ConfigLimits.requireDimension(key, value, file: file)
        }
        try ConfigLimits.requireProduct("the hidden size num_attention_heads x attention_head_dim", [heads, headDim], file: file)
        try ConfigLimits.requireProduct("the MLP width (hidden size x MLP ratio)", [heads, headDim, mlpRatio], file: file)
        guard patchSize == 1 else {
            throw WeightsError.invalidConfig(file: file, reason: "patch_size \(patchSize) is not supported (FLUX packs 2x2 latents itself; the transformer's patch size is 1)")
        }
        guard headDim % 2 == 0 else {
            throw WeightsError.invalidConfig(file: file, reason: "attention_head_dim must be even for rotary embeddings")
        }
        if let axes = axesDimsRope {
            // Each axis is bounded before the sum, which then cannot overflow.
            guard axes.count == 3, axes.allSatisfy({ (1...headDim).contains($0) && $0 % 2 == 0 }),
                  axes.reduce(0, +) == headDim else {
                throw WeightsError.invalidConfig(file: file, reason: "axes_dims_rope \(axes) must be 3 even numbers summing to attention_head_dim \(headDim)")
            }
        }
    }
}
