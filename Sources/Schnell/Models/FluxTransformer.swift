import Foundation

/// The FLUX denoiser (diffusers' `FluxTransformer2DModel`): packed latent tokens and T5 text
/// tokens in, the flow-matching velocity for each latent token out.
///
///   temb = time_in(sinusoid(1000 t)) (+ guidance_in(sinusoid(1000 g))) + vector_in(pooled CLIP)
///   img = img_in(latents); txt = txt_in(T5 states)
///   19 double-stream blocks (txt, img) -> 38 single-stream blocks on [txt; img]
///   out = final.linear(LN(img) * (1 + scale) + shift), (scale, shift) = final.modulation(silu(temb))
public final class FluxTransformer: Sendable {
    public let config: TransformerConfig
    public let layout: CheckpointLayout
    let ops: any Backend
    let imageIn, textIn, timeIn, timeOut, vectorIn, vectorOut: Linear
    let guidanceIn, guidanceOut: Linear?
    let doubleBlocks: [DoubleStreamBlock]
    let singleBlocks: [SingleStreamBlock]
    let finalModulation, finalLinear: Linear

    /// Builds the model from resolved checkpoint tensors; see `load(path:)` for files.
    init(config: TransformerConfig, store: WeightStore, layout: CheckpointLayout, prefix: String,
         backend: any Backend) throws {
        guard config.axesDimsRope != nil else {
            throw WeightsError.invalidConfig(file: store.path, reason: "cannot infer the rotary axes for head width \(config.headDim); put a diffusers config.json beside the file or pass the axes explicitly")
        }
        let weights = try FluxWeightNames.table(config).resolve(from: store, layout: layout, prefix: prefix)
        self.config = config
        self.layout = layout
        ops = backend
        imageIn = try weights.linear("img_in")
        textIn = try weights.linear("txt_in")
        timeIn = try weights.linear("time_in.in")
        timeOut = try weights.linear("time_in.out")
        vectorIn = try weights.linear("vector_in.in")
        vectorOut = try weights.linear("vector_in.out")
        guidanceIn = config.guidanceEmbeds ? try weights.linear("guidance_in.in") : nil
        guidanceOut = config.guidanceEmbeds ? try weights.linear("guidance_in.out") : nil
        doubleBlocks = try (0..<config.numLayers).map { try DoubleStreamBlock(weights, index: $0) }
        singleBlocks = try (0..<config.numSingleLayers).map { try SingleStreamBlock(weights, index: $0) }
        finalModulation = try weights.linear("final.modulation")
        finalLinear = try weights.linear("final.linear")
    }

    /// One denoiser call.
    /// - latents: packed latent tokens [Ni, inChannels]; text: T5 states [Nt, jointAttentionDim];
    ///   pooled: CLIP pooled [pooledProjectionDim]
    /// - timestep: sigma in [0, 1] (the pipeline's t / 1000); guidance: dev's guidance scale
    /// - ids: position ids for [text; image] tokens, [Nt + Ni][3]
    /// -> velocity [Ni, outChannels]
    public func callAsFunction(latents: Tensor, text: Tensor, pooled: Tensor, timestep: Float,
                               guidance: Float?, rotary: RotaryTable) -> Tensor {
        var temb = timeEmbedding(timestep)
        if let guidanceIn, let guidanceOut {
            let hidden = ops.linear(FluxEmbeddings.timestepSinusoid(Float(guidance ?? 3.5) * 1000), guidanceIn)
            ops.activate(hidden, .silu)
            ops.gatedAdd(temb, ops.linear(hidden, guidanceOut), gate: nil)
        }
        let pooledHidden = ops.linear(pooled.reshaped([1, pooled.count]), vectorIn)
        ops.activate(pooledHidden, .silu)
        ops.gatedAdd(temb, ops.linear(pooledHidden, vectorOut), gate: nil)
        temb = temb.copy()
        ops.activate(temb, .silu)  // every modulation reads silu(temb)

        let img = ops.linear(latents, imageIn)  // [Ni, inner]
        let txt = ops.linear(text, textIn)      // [Nt, inner]
        for block in doubleBlocks {
            block(txt: txt, img: img, conditioning: temb, rotary: rotary, heads: config.heads, ops: ops)
        }
        let joint = Tensor.concatenateRows([txt, img])
        for block in singleBlocks {
            block(joint, conditioning: temb, rotary: rotary, heads: config.heads, ops: ops)
        }
        let imageTokens = joint.rows(txt.rows..<joint.rows)
        let mod = ops.linear(temb, finalModulation)  // [1, 2 * inner]: scale, shift
        let inner = config.innerDim
        let normed = ops.layerNormModulate(imageTokens, scale: mod.columns(0..<inner),
                                           shift: mod.columns(inner..<(2 * inner)), eps: 1e-6)
        return ops.linear(normed, finalLinear)
    }

    /// Rotary tables for a prompt of `textTokens` and a packed latent grid.
    public func rotaryTable(textTokens: Int, gridHeight: Int, gridWidth: Int) -> RotaryTable {
        FluxEmbeddings.rotaryTable(ids: FluxEmbeddings.positionIDs(textTokens: textTokens, gridHeight: gridHeight,
                                                                    gridWidth: gridWidth),
                                   axesDims: config.axesDimsRope ?? [])
    }

    private func timeEmbedding(_ timestep: Float) -> Tensor {
        let hidden = ops.linear(FluxEmbeddings.timestepSinusoid(timestep * 1000), timeIn)
        ops.activate(hidden, .silu)
        return ops.linear(hidden, timeOut)  // [1, inner]
    }

    /// Parameters in the loaded weights.
    public var parameterCount: Int {
        linears.reduce(0) { $0 + $1.parameterCount } + vectorParameters
    }

    private var linears: [Linear] {
        [imageIn, textIn, timeIn, timeOut, vectorIn, vectorOut, finalModulation, finalLinear]
            + [guidanceIn, guidanceOut].compactMap { $0 }
            + doubleBlocks.flatMap { [$0.imgModulation, $0.txtModulation, $0.imgQKV, $0.txtQKV, $0.imgProj, $0.txtProj,
                                      $0.imgMLPIn, $0.imgMLPOut, $0.txtMLPIn, $0.txtMLPOut] }
            + singleBlocks.flatMap { [$0.modulation, $0.linear1, $0.linear2] }
    }

    private var vectorParameters: Int { config.headDim * (4 * config.numLayers + 2 * config.numSingleLayers) }
}
