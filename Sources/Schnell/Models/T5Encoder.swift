import Foundation

/// T5's encoder stack (transformers' `T5EncoderModel`): shared token embedding, RMS-normed
/// pre-norm blocks of unscaled self-attention with a relative position bias (computed from the
/// first block's table and shared by all blocks) and a feed-forward, final RMS norm. No
/// attention mask: FLUX encodes the padded prompt unmasked.
public final class T5Encoder: @unchecked Sendable {
    struct Block {
        let attentionNorm: Tensor
        let qkv: Linear          // [modelSize] -> [3 * heads * headSize], q | k | v
        let output: Linear       // [heads * headSize] -> [modelSize]
        let feedForwardNorm: Tensor
        let input: Linear        // [modelSize] -> [feedForwardSize] (gated: 2x, wi_0 | wi_1)
        let feedForwardOutput: Linear  // wo: [feedForwardSize] -> [modelSize]
    }

    public let config: T5Config
    let backend: any Backend
    let gated: Bool
    let activation: Activation
    let tokenEmbedding: WeightTensor          // [vocab, modelSize]
    let relativeAttentionBias: WeightTensor   // [buckets, heads]
    let blocks: [Block]
    let finalNorm: Tensor
    /// The memory maps the weights lie in (see `releaseResidentWeights`).
    let weightFiles: [MappedFile]

    /// Builds the encoder from a store holding exactly the tensors `T5WeightNames.table(config)` lists.
    public init(weights store: WeightStore, config: T5Config, backend: any Backend,
                quantization: WeightQuantization? = nil) throws {
        try config.validate(file: store.path)
        let (layout, prefix) = try ModelFamily.t5.requireLayout(of: store)
        let weights = LayerWeights(mapped: try T5WeightNames.table(config).resolve(from: store, layout: layout, prefix: prefix),
                                   backend: backend, quantization: quantization)
        let (gated, activation) = try config.feedForward(file: store.path)
        blocks = try (0..<config.layerCount).map { index in
            let block = "blocks.\(index)"
            return Block(attentionNorm: try weights.vector(block + ".attention_norm"),
                         qkv: try weights.linear(block + ".qkv"),
                         output: try weights.linear(block + ".output"),
                         feedForwardNorm: try weights.vector(block + ".feed_forward_norm"),
                         input: try weights.linear(block + ".input"),
                         feedForwardOutput: try weights.linear(block + ".feed_forward_output"))
        }
        var files: [MappedFile] = []
        for tensor in store.tensors where !files.contains(where: { $0 === tensor.mapping }) { files.append(tensor.mapping) }
        weightFiles = files
        tokenEmbedding = try weights.tensor("token_embedding")
        relativeAttentionBias = try weights.tensor("relative_attention_bias")
        finalNorm = try weights.vector("final_norm")
        self.gated = gated
        self.activation = activation
        self.config = config
        self.backend = backend
    }

    /// A `text_encoder_2/` folder with config.json (or a pipeline folder holding one), or a
    /// single safetensors file such as `t5xxl_fp16.safetensors`. `config` overrides both the
    /// folder's config.json and the configuration inferred from a single file's shapes.
    public static func load(path: String, config: T5Config? = nil, backend: any Backend,
                            quantization: WeightQuantization? = nil) throws -> T5Encoder {
        let checkpoint = try Checkpoint(path: path, family: .t5)
        let resolved = try config ?? T5Config(checkpoint: checkpoint)
        return try T5Encoder(weights: checkpoint.store, config: resolved, backend: backend, quantization: quantization)
    }

    /// Lets the kernel drop the mapped weight pages this process has read: T5-XXL is 5-10 GB that
    /// a FLUX step never touches, so after encoding they need not count against the process
    /// while the transformer runs. The next prompt maps them in again from the page cache (or
    /// the disk, if memory was needed meanwhile). Weights quantized at load are kept.
    public func releaseResidentWeights() {
        for file in weightFiles { file.dropPages(offset: 0, count: file.sizeBytes) }
    }

    /// ids (256 for FLUX.1-schnell, 512 for dev) -> last hidden states [tokens, modelSize].
    public func encode(ids: [Int32]) throws -> Tensor {
        try TextEncoderError.check(ids, vocabularySize: config.vocabularySize, maximumLength: nil)
        let inner = config.headCount * config.headSize
        let eps = config.layerNormEpsilon
        let x = backend.embedding(tokenEmbedding, ids: ids)  // [tokens, modelSize]
        let positionBias = backend.relativePositionBias(  // [heads, tokens, tokens]
            relativeAttentionBias, queryTokens: ids.count, keyTokens: ids.count, bidirectional: true,
            maxDistance: config.relativeAttentionMaxDistance)
        for block in blocks {
            let qkv = backend.linear(backend.rmsNorm(x, weight: block.attentionNorm, eps: eps), block.qkv)  // [tokens, 3 * inner]
            // T5 folds the scale into its weights: scores are q k^T + bias, unscaled.
            let attended = backend.attention(q: qkv.columns(0..<inner), k: qkv.columns(inner..<2 * inner),
                                             v: qkv.columns(2 * inner..<3 * inner), heads: config.headCount,
                                             scale: 1, bias: positionBias, causal: false)
            backend.gatedAdd(x, backend.linear(attended, block.output), gate: nil)
            let hidden = backend.linear(backend.rmsNorm(x, weight: block.feedForwardNorm, eps: eps), block.input)
            let activated: Tensor
            if gated {
                // [tokens, 2 * feedForward] -> act(wi_0 x) * (wi_1 x)
                let width = config.feedForwardSize
                activated = backend.gatedActivation(hidden.columns(0..<width), hidden.columns(width..<2 * width), activation)
            } else {
                backend.activate(hidden, activation)
                activated = hidden
            }
            backend.gatedAdd(x, backend.linear(activated, block.feedForwardOutput), gate: nil)
        }
        return backend.rmsNorm(x, weight: finalNorm, eps: eps)
    }
}
