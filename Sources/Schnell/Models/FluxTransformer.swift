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
    /// The layers by engine name, for copies with LoRA updates (`adapted`).
    let layers: BuiltLayers

    /// Builds the model from resolved checkpoint tensors; see `load(path:)` for files. Every layer
    /// is prepared by `backend` here, once.
    convenience init(config: TransformerConfig, store: WeightStore, layout: CheckpointLayout, prefix: String,
                     backend: any Backend, quantization: WeightQuantization? = nil) throws {
        guard config.axesDimsRope != nil else {
            throw WeightsError.invalidConfig(file: store.path, reason: "cannot infer the rotary axes for head width \(config.headDim); put a diffusers config.json beside the file or pass the axes explicitly")
        }
        let mapped = try FluxWeightNames.table(config).resolve(from: store, layout: layout, prefix: prefix)
        try self.init(config: config, layout: layout, backend: backend,
                      layers: BuiltLayers(recording: LayerWeights(mapped: mapped, backend: backend, quantization: quantization)))
    }

    private init(config: TransformerConfig, layout: CheckpointLayout, backend: any Backend, layers weights: BuiltLayers) throws {
        self.config = config
        self.layout = layout
        layers = weights
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

    /// This model with LoRA updates (engine layer name -> deltas, `LoRAAdapter.transformerDeltas`):
    /// only the updated layers change, merged into copies or added at run time per `mode`; the
    /// memory map and this model are left as they are.
    public func adapted(_ deltas: [String: [LowRankDelta]], mode: LoRAMode) throws -> FluxTransformer {
        let source = AdaptedLayers(base: layers, deltas: deltas, mode: mode, backend: ops)
        return try FluxTransformer(config: config, layout: layout, backend: ops, layers: BuiltLayers(recording: source))
    }

    /// One denoiser call.
    /// - latents: packed latent tokens [Ni, inChannels]; text: T5 states [Nt, jointAttentionDim];
    ///   pooled: CLIP pooled [pooledProjectionDim]
    /// - timestep: sigma in [0, 1] (the pipeline's t / 1000); guidance: dev's guidance scale
    /// - rotary: tables for [text; image] tokens (`rotaryTable`)
    /// - observe: sees "temb" (before SiLU), "double.N.txt" and "double.N.img" after each
    ///   double-stream block, "single.N" (the joint [text; image] tokens) after each single one
    /// -> velocity [Ni, outChannels]
    public func callAsFunction(latents: Tensor, text: Tensor, pooled: Tensor, timestep: Float,
                               guidance: Float?, rotary: RotaryTable,
                               observe: IntermediateObserver? = nil) -> Tensor {
        let temb = embed(timestep * 1000, timeIn, timeOut)  // [1, inner]
        if let guidanceIn, let guidanceOut {
            ops.gatedAdd(temb, embed((guidance ?? 3.5) * 1000, guidanceIn, guidanceOut), gate: nil)
        }
        let pooledHidden = ops.linear(pooled.reshaped([1, pooled.count]), vectorIn)
        ops.activate(pooledHidden, .silu)
        ops.gatedAdd(temb, ops.linear(pooledHidden, vectorOut), gate: nil)
        observe?("temb", temb)
        ops.activate(temb, .silu)  // every modulation reads silu(temb)

        // Text and image tokens live in one buffer [Nt + Ni, inner], text first: the double blocks
        // update each stream in place, and the single blocks run on the joint sequence as it is.
        let textTokens = text.rows, inner = config.innerDim
        let joint = ops.allocate([textTokens + latents.rows, inner], dtype: .f32)
        let txt = joint.rows(0..<textTokens), img = joint.rows(textTokens..<joint.rows)
        ops.linear(text, textIn, into: txt)
        ops.linear(latents, imageIn, into: img)
        for (index, block) in doubleBlocks.enumerated() {
            block(txt: txt, img: img, conditioning: temb, rotary: rotary, heads: config.heads, ops: ops)
            observe?("double.\(index).txt", txt)
            observe?("double.\(index).img", img)
        }
        for (index, block) in singleBlocks.enumerated() {
            block(joint, conditioning: temb, rotary: rotary, heads: config.heads, ops: ops)
            observe?("single.\(index)", joint)
        }
        let mod = ops.linear(temb, finalModulation)  // [1, 2 * inner]: scale, shift
        let normed = ops.layerNormModulate(img, scale: mod.columns(0..<inner),
                                           shift: mod.columns(inner..<(2 * inner)), eps: 1e-6)
        return ops.linear(normed, finalLinear)
    }

    /// Rotary tables for a prompt of `textTokens` and a packed latent grid.
    public func rotaryTable(textTokens: Int, gridHeight: Int, gridWidth: Int) -> RotaryTable {
        FluxEmbeddings.rotaryTable(ids: FluxEmbeddings.positionIDs(textTokens: textTokens, gridHeight: gridHeight,
                                                                    gridWidth: gridWidth),
                                   axesDims: config.axesDimsRope ?? [], backend: ops)
    }

    /// second(silu(first(sinusoid(value)))): the time (and guidance) embedding, [1, inner].
    private func embed(_ value: Float, _ first: Linear, _ second: Linear) -> Tensor {
        let sinusoid = ops.upload(FluxEmbeddings.timestepSinusoid(value), shape: [1, TransformerConfig.timestepChannels])
        let hidden = ops.linear(sinusoid, first)
        ops.activate(hidden, .silu)
        return ops.linear(hidden, second)
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
            + singleBlocks.flatMap { [$0.modulation, $0.qkv, $0.mlpIn, $0.linear2] }
    }

    private var vectorParameters: Int { config.headDim * (4 * config.numLayers + 2 * config.numSingleLayers) }
}
