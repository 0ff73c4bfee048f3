import Foundation

/// The VAE's shape, as diffusers' `AutoencoderKL` config.json states it. FLUX.1 uses 16 latent
/// channels, widths [128, 256, 512, 512], two resnets per down block, 32 norm groups and no
/// quant convs.
public struct AutoencoderConfig: Sendable, Equatable {
    public var inChannels: Int
    public var outChannels: Int
    public var latentChannels: Int
    /// Widths of the encoder's down blocks; the decoder's up blocks use them reversed.
    public var blockOutChannels: [Int]
    /// Resnets per down block; each up block has one more.
    public var layersPerBlock: Int
    public var normGroups: Int
    public var scalingFactor: Float
    public var shiftFactor: Float
    public var midBlockAttention: Bool

    public static let flux1 = AutoencoderConfig(
        inChannels: 3, outChannels: 3, latentChannels: 16, blockOutChannels: [128, 256, 512, 512],
        layersPerBlock: 2, normGroups: 32, scalingFactor: 0.3611, shiftFactor: 0.1159,
        midBlockAttention: true)

    public init(inChannels: Int, outChannels: Int, latentChannels: Int, blockOutChannels: [Int],
                layersPerBlock: Int, normGroups: Int, scalingFactor: Float, shiftFactor: Float,
                midBlockAttention: Bool) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.latentChannels = latentChannels
        self.blockOutChannels = blockOutChannels
        self.layersPerBlock = layersPerBlock
        self.normGroups = normGroups
        self.scalingFactor = scalingFactor
        self.shiftFactor = shiftFactor
        self.midBlockAttention = midBlockAttention
    }

    /// Reads a diffusers `vae/config.json`; missing keys take FLUX.1's values.
    public init(contentsOf file: String) throws {
        let data = try ModelFile.contents(of: file)
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw WeightsError.invalidConfig(file: file, reason: "not a JSON object")
        }
        func integer(_ key: String, _ fallback: Int) throws -> Int {
            guard let value = json[key], !(value is NSNull) else { return fallback }
            guard let number = value as? Int else {
                throw WeightsError.invalidConfig(file: file, reason: "'\(key)' is not an integer")
            }
            return number
        }
        func boolean(_ key: String, _ fallback: Bool) throws -> Bool {
            guard let value = json[key], !(value is NSNull) else { return fallback }
            // On Linux JSON 0 and 1 also cast to Bool; a boolean's NSNumber has type code "c".
            guard let number = value as? NSNumber, String(cString: number.objCType) == "c" else {
                throw WeightsError.invalidConfig(file: file, reason: "'\(key)' is not true or false")
            }
            return number.boolValue
        }
        func real(_ key: String, _ fallback: Float) throws -> Float {
            guard let value = json[key], !(value is NSNull) else { return fallback }
            guard let number = value as? Double else {
                throw WeightsError.invalidConfig(file: file, reason: "'\(key)' is not a number")
            }
            return Float(number)
        }
        let flux = Self.flux1
        var blocks = flux.blockOutChannels
        if let value = json["block_out_channels"] {
            guard let list = value as? [Int] else {
                throw WeightsError.invalidConfig(file: file, reason: "'block_out_channels' is not a list of integers")
            }
            blocks = list
        }
        if try boolean("use_quant_conv", false) || boolean("use_post_quant_conv", false) {
            throw WeightsError.invalidConfig(file: file, reason: "quant convs are not supported (FLUX's VAE has none)")
        }
        if let kinds = json["down_block_types"] as? [String], kinds.contains(where: { $0 != "DownEncoderBlock2D" }) {
            throw WeightsError.invalidConfig(file: file, reason: "only DownEncoderBlock2D down blocks are supported")
        }
        if let kinds = json["up_block_types"] as? [String], kinds.contains(where: { $0 != "UpDecoderBlock2D" }) {
            throw WeightsError.invalidConfig(file: file, reason: "only UpDecoderBlock2D up blocks are supported")
        }
        if let activation = json["act_fn"] as? String, activation != "silu" {
            throw WeightsError.invalidConfig(file: file, reason: "act_fn '\(activation)' is not supported (only silu)")
        }
        self.init(inChannels: try integer("in_channels", flux.inChannels),
                  outChannels: try integer("out_channels", flux.outChannels),
                  latentChannels: try integer("latent_channels", flux.latentChannels),
                  blockOutChannels: blocks,
                  layersPerBlock: try integer("layers_per_block", flux.layersPerBlock),
                  normGroups: try integer("norm_num_groups", flux.normGroups),
                  scalingFactor: try real("scaling_factor", flux.scalingFactor),
                  shiftFactor: try real("shift_factor", 0),
                  midBlockAttention: try boolean("mid_block_add_attention", true))
        try validate(file: file)
    }

    /// The checkpoint's config.json, else FLUX.1's VAE.
    public init(checkpoint: Checkpoint) throws {
        guard let path = checkpoint.folder.configPath else {
            self = .flux1
            return
        }
        try self.init(contentsOf: path)
        let diffusers = checkpoint.layout == .diffusers
        try checkpoint.requireBlocks(blockOutChannels.count, key: "block_out_channels", blocks: diffusers ? "encoder.down_blocks" : "encoder.down",
                                     configFile: path)
        try checkpoint.requireBlocks(layersPerBlock, key: "layers_per_block",
                                     blocks: diffusers ? "encoder.down_blocks.0.resnets" : "encoder.down.0.block", configFile: path)
    }

    /// Refuses shapes the model cannot be built with; `file` names the source in the message.
    public func validate(file: String) throws {
        func require(_ condition: Bool, _ reason: String) throws {
            if !condition { throw WeightsError.invalidConfig(file: file, reason: reason) }
        }
        for (key, value) in [("in_channels", inChannels), ("out_channels", outChannels), ("latent_channels", latentChannels),
                             ("norm_num_groups", normGroups)] + blockOutChannels.map({ ("block_out_channels", $0) }) {
            try ConfigLimits.requireDimension(key, value, file: file)
        }
        // Each block halves the image: 2^(blocks - 1) must stay a sane downsampling factor.
        try ConfigLimits.require("block_out_channels (count)", blockOutChannels.count, in: 1...Self.maxBlocks, file: file)
        try ConfigLimits.requireLayers("layers_per_block", layersPerBlock, file: file)
        for width in blockOutChannels {
            try require(width % normGroups == 0,
                        "block width \(width) is not divisible by norm_num_groups \(normGroups)")
        }
        try require(scalingFactor != 0 && scalingFactor.isFinite && shiftFactor.isFinite,
                    "scaling_factor must be finite and nonzero, shift_factor finite")
    }

    /// Down blocks a VAE may have (FLUX.1's has 4: a downsampling factor of 8).
    static let maxBlocks = 8

    /// Pixels per latent along each axis: 2^(blocks - 1) (8 for FLUX).
    public var downsamplingFactor: Int { 1 << (blockOutChannels.count - 1) }
}
