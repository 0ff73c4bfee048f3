/// The VAE's checkpoint names (the mechanism is in WeightTable.swift): diffusers'
/// `vae/diffusion_pytorch_model.safetensors` (`decoder.up_blocks.0.resnets.0.conv1.weight`) and
/// the original `ae.safetensors` (`decoder.up.3.block.0.conv1.weight`). The original file numbers
/// the decoder's up blocks from the output end and stores the attention projections as 1x1
/// convolutions [C, C, 1, 1]. Engine names follow the model: up blocks in decoding order.
public enum VAEWeightNames {
    public static func table(_ config: AutoencoderConfig) -> WeightTable {
        var entries: [WeightEntry] = []
        func norm(_ engine: String, _ diffusers: String, _ original: String, channels: Int) {
            for part in [".weight", ".bias"] {
                entries.append(.tensor(engine + part, [channels], diffusers: diffusers + part, original: original + part))
            }
        }
        func conv(_ engine: String, _ diffusers: String, _ original: String, in inChannels: Int, out outChannels: Int,
                  kernel: Int) {
            entries.append(.tensor(engine + ".weight", [outChannels, inChannels, kernel, kernel],
                                   diffusers: diffusers + ".weight", original: original + ".weight"))
            entries.append(.tensor(engine + ".bias", [outChannels], diffusers: diffusers + ".bias", original: original + ".bias"))
        }
        func resnet(_ engine: String, _ diffusers: String, _ original: String, in inChannels: Int, out outChannels: Int) {
            norm(engine + ".norm1", diffusers + ".norm1", original + ".norm1", channels: inChannels)
            conv(engine + ".conv1", diffusers + ".conv1", original + ".conv1", in: inChannels, out: outChannels, kernel: 3)
            norm(engine + ".norm2", diffusers + ".norm2", original + ".norm2", channels: outChannels)
            conv(engine + ".conv2", diffusers + ".conv2", original + ".conv2", in: outChannels, out: outChannels, kernel: 3)
            if inChannels != outChannels {
                conv(engine + ".shortcut", diffusers + ".conv_shortcut", original + ".nin_shortcut",
                     in: inChannels, out: outChannels, kernel: 1)
            }
        }
        func mid(_ engine: String, _ diffusers: String, _ original: String, channels c: Int) {
            resnet(engine + ".first", diffusers + ".resnets.0", original + ".block_1", in: c, out: c)
            if config.midBlockAttention {
                let d = diffusers + ".attentions.0", o = original + ".attn_1", a = engine + ".attention"
                norm(a + ".norm", d + ".group_norm", o + ".norm", channels: c)
                entries += WeightEntry.linear(a + ".qkv", inFeatures: c, diffusers: ["to_q", "to_k", "to_v"].map { .whole("\(d).\($0)", c) },
                                              original: ["q", "k", "v"].map { .whole("\(o).\($0)", c) }, originalAxes: [1, 1])
                entries += WeightEntry.linear(a + ".out", inFeatures: c, diffusers: [.whole(d + ".to_out.0", c)],
                                              original: [.whole(o + ".proj_out", c)], originalAxes: [1, 1])
            }
            resnet(engine + ".second", diffusers + ".resnets.1", original + ".block_2", in: c, out: c)
        }

        let widths = config.blockOutChannels
        var channels = widths[0]
        conv("encoder.conv_in", "encoder.conv_in", "encoder.conv_in", in: config.inChannels, out: channels, kernel: 3)
        for (index, width) in widths.enumerated() {
            let e = "encoder.down.\(index)", d = "encoder.down_blocks.\(index)", o = "encoder.down.\(index)"
            for layer in 0..<config.layersPerBlock {
                resnet("\(e).resnet.\(layer)", "\(d).resnets.\(layer)", "\(o).block.\(layer)", in: channels, out: width)
                channels = width
            }
            if index < widths.count - 1 {
                conv("\(e).downsample", "\(d).downsamplers.0.conv", "\(o).downsample.conv", in: width, out: width, kernel: 3)
            }
        }
        mid("encoder.mid", "encoder.mid_block", "encoder.mid", channels: channels)
        norm("encoder.norm_out", "encoder.conv_norm_out", "encoder.norm_out", channels: channels)
        conv("encoder.conv_out", "encoder.conv_out", "encoder.conv_out", in: channels, out: 2 * config.latentChannels,
             kernel: 3)

        channels = widths[widths.count - 1]
        conv("decoder.conv_in", "decoder.conv_in", "decoder.conv_in", in: config.latentChannels, out: channels, kernel: 3)
        mid("decoder.mid", "decoder.mid_block", "decoder.mid", channels: channels)
        for (index, width) in widths.reversed().enumerated() {
            let e = "decoder.up.\(index)", d = "decoder.up_blocks.\(index)", o = "decoder.up.\(widths.count - 1 - index)"
            for layer in 0...config.layersPerBlock {
                resnet("\(e).resnet.\(layer)", "\(d).resnets.\(layer)", "\(o).block.\(layer)", in: channels, out: width)
                channels = width
            }
            if index < widths.count - 1 {
                conv("\(e).upsample", "\(d).upsamplers.0.conv", "\(o).upsample.conv", in: width, out: width, kernel: 3)
            }
        }
        norm("decoder.norm_out", "decoder.conv_norm_out", "decoder.norm_out", channels: channels)
        conv("decoder.conv_out", "decoder.conv_out", "decoder.conv_out", in: channels, out: config.outChannels, kernel: 3)
        return WeightTable(entries: entries)
    }
}
