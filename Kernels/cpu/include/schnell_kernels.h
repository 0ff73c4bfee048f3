// Schnell CPU kernels: the C half of the CPU op set.
//
// Layout conventions (all row-major, float32 activations):
//   - a "row" is one token (or one pixel for channel-last data); `dim` is its width;
//   - attention operands are token-major [tokens, heads * head_dim] with an explicit
//     stride per token, so fused q|k|v projections are read in place;
//   - weights are [out_features, in_features] in their stored dtype (see schnell_dtype).
//
// Every fast kernel has a `_reference` twin: a plain single-threaded loop that the tests
// compare against. Fast kernels pick an AVX-512 or a generic build of their inner loop at
// run time and split work over the thread pool (parallel.c).
#ifndef SCHNELL_KERNELS_H
#define SCHNELL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- threads (parallel.c) ----
// Sets the worker count for our loops and for OpenBLAS (so the two never oversubscribe).
void schnell_set_threads(int count);
int schnell_threads(void);
typedef void (*schnell_range_fn)(void *context, size_t begin, size_t end);
// Calls fn(context, b, e) over disjoint ranges covering [0, count), at least `grain` items each.
void schnell_parallel_for(size_t count, size_t grain, schnell_range_fn fn, void *context);
// Inside a range function: which worker runs it, 0 ... schnell_threads() - 1 (for per-worker
// scratch). Outside a job: 0.
int schnell_worker_index(void);
// While set, OpenBLAS runs each call on the calling thread only, so our workers can each run
// their own small GEMMs side by side; cleared, it uses schnell_threads() threads again.
void schnell_blas_single_threaded(int single);
// ---- CPU tiers (parallel.c) ----
// Each fast kernel is built once per tier and picked at run time by the tier in use.
enum {
    SCHNELL_CPU_GENERIC = 0,      // baseline x86-64 (SSE2)
    SCHNELL_CPU_AVX2 = 1,         // AVX2, FMA, F16C
    SCHNELL_CPU_AVX512 = 2,       // AVX-512 F/BW/VL/DQ (with the above)
    SCHNELL_CPU_AVX512_BF16 = 3,  // AVX-512 and AVX512-BF16
};
// The tier in use: the CPU's highest, or the lower one SCHNELL_CPU names
// (generic|avx2|avx512|avx512bf16), or the one last set with schnell_set_cpu_level.
int schnell_cpu_level(void);
// The highest tier this CPU supports.
int schnell_cpu_supported_level(void);
// Whether the CPU has AVX512-VNNI (vpdpbusd) beside AVX-512; not a tier of its own: the
// linear on quantized blocks (gemm_quant.c) uses it at the AVX-512 tiers.
int schnell_cpu_has_avx512_vnni(void);
// Uses `level` from now on (kernels running meanwhile finish on the old one). Returns 0, or -1
// when the CPU lacks it or it is not a tier (nothing changes).
int schnell_set_cpu_level(int level);
// "generic", "avx2", "avx512", "avx512bf16"; NULL for a number that is not a tier.
const char *schnell_cpu_level_name(int level);
// Why SCHNELL_CPU was not applied (not a tier name, or a tier the CPU lacks), or NULL when it
// was applied or is unset. The tier in use is then the CPU's highest.
const char *schnell_cpu_environment_error(void);
// The kernel family OpenBLAS chose when it loaded ("Haswell", "SkylakeX", ...).
const char *schnell_blas_core_name(void);

// ---- buffers (memory.c) ----
// `bytes` of memory, 64-byte aligned (NULL when there is not enough); release with
// schnell_buffer_free.
void *schnell_buffer_allocate(size_t bytes);
void schnell_buffer_free(void *buffer);

// ---- dtypes (convert.c) ----
// Float types are stored value by value; the block types are ggml's (GGUF's) layouts, a row of
// a weight being whole blocks of `block values` values in `block bytes` bytes each:
//   type   values bytes  layout (ggml's block_* structs, little-endian, no padding)
//   Q4_0   32     18     f16 d; 16 bytes of 4-bit q (low nibbles values 0-15, high 16-31); v = d (q - 8)
//   Q4_1   32     20     f16 d, f16 m; 16 bytes of nibbles; v = d q + m
//   Q5_0   32     22     f16 d; 4 bytes of high bits; 16 bytes of nibbles; v = d (q - 16)
//   Q5_1   32     24     f16 d, f16 m; 4 bytes of high bits; 16 bytes of nibbles; v = d q + m
//   Q8_0   32     34     f16 d; 32 int8 q; v = d q
//   Q2_K   256    84     16 bytes of 4-bit scales|mins; 64 bytes of 2-bit q; f16 d, f16 dmin
//   Q3_K   256    110    32 bytes of high bits; 64 bytes of 2-bit q; 12 bytes of 6-bit scales; f16 d
//   Q4_K   256    144    f16 d, f16 dmin; 12 bytes of 6-bit scales|mins; 128 bytes of nibbles
//   Q5_K   256    176    f16 d, f16 dmin; 12 bytes of scales|mins; 32 bytes high bits; 128 nibbles
//   Q6_K   256    210    128 bytes of low nibbles; 64 bytes of high 2 bits; 16 int8 scales; f16 d
typedef enum {
    SCHNELL_F32 = 0,
    SCHNELL_F16 = 1,
    SCHNELL_BF16 = 2,
    SCHNELL_F8_E4M3 = 3,  // OCP e4m3fn (torch.float8_e4m3fn)
    SCHNELL_F8_E5M2 = 4,  // OCP e5m2 (torch.float8_e5m2)
    SCHNELL_Q4_0 = 16,
    SCHNELL_Q4_1 = 17,
    SCHNELL_Q5_0 = 18,
    SCHNELL_Q5_1 = 19,
    SCHNELL_Q8_0 = 20,
    SCHNELL_Q2_K = 21,
    SCHNELL_Q3_K = 22,
    SCHNELL_Q4_K = 23,
    SCHNELL_Q5_K = 24,
    SCHNELL_Q6_K = 25,
} schnell_dtype;
// Bytes per value of a float type; 0 for a block type (use the row size).
size_t schnell_dtype_size(int dtype);
// Values per block (1 for float types) and bytes per block; 0 for a code that is not a dtype.
size_t schnell_dtype_block_values(int dtype);
size_t schnell_dtype_block_bytes(int dtype);
// Bytes of `count` values (count a multiple of the block values).
size_t schnell_dtype_row_bytes(int dtype, size_t count);
// Any dtype -> float32. For a block type `source` is at a block start and count is a multiple of
// the block values. The block types' reference follows ggml's dequantize_row_* exactly (bit for
// bit the same floats as the gguf Python package's dequantize).
void schnell_convert_to_f32(const void *source, int dtype, float *destination, size_t count);
void schnell_convert_to_f32_reference(const void *source, int dtype, float *destination, size_t count);
// float32 -> a block type (count a multiple of its block values), rounding as ggml's reference
// quantizers (quantize_row_*_ref, no importance matrix) do; also F32, F16 (round to nearest even),
// BF16 (as schnell_f32_to_bf16), F8_E4M3 and F8_E5M2 (round to nearest even as torch's casts:
// e4m3fn saturates to +-448, infinities included; e5m2 overflows to infinity; NaN stays NaN).
void schnell_quantize_reference(const float *source, int dtype, void *destination, size_t count);
// ---- LoRA (lowrank.c) ----
// out[r, c] += scale * sum_k (x[r] . down[k]) up[c, k] for r < rows, c < n: the product a LoRA adds
// to a linear layer's output columns. x [rows, in] packed, down [rank, in], up [n, rank], out rows
// `out_stride` apart. Returns 0, or -1 when its rows x rank scratch cannot be allocated.
int schnell_lowrank_add(const float *x, size_t rows, size_t in, const float *down, size_t rank, const float *up, size_t n,
                        float scale, float *out, size_t out_stride);
void schnell_lowrank_add_reference(const float *x, size_t rows, size_t in, const float *down, size_t rank, const float *up,
                                   size_t n, float scale, float *out, size_t out_stride);
// weight [n, in] += scale * up [n, rank] down [rank, in]: a LoRA merged into a float32 weight.
void schnell_lowrank_merge(float *weight, size_t n, size_t in, const float *down, size_t rank, const float *up, float scale);
void schnell_lowrank_merge_reference(float *weight, size_t n, size_t in, const float *down, size_t rank, const float *up,
                                     float scale);

// Round-to-nearest-even float32 -> bfloat16, as torch's .to(torch.bfloat16).
void schnell_f32_to_bf16(const float *source, uint16_t *destination, size_t count);

// ---- compute precision ----
// How a kernel computes with bf16 weights, chosen per call by the backend that runs it (two
// backends of different precisions can live in one process).
typedef enum {
    SCHNELL_PRECISION_F32 = 0,   // float32 math whatever the stored dtype, as PyTorch in float32
    SCHNELL_PRECISION_BF16 = 1,  // bf16 weights meet bf16-rounded activations on AVX512-BF16
} schnell_precision;

// ---- GEMM (gemm.c) ----
// y[m, 0:n] = x[m, 0:k] . weight[0:n, 0:k]^T (+ bias[0:n]) for m < rows.
// weight and bias are in `weight_dtype` / `bias_dtype`; bias may be NULL.
// y has row stride `y_stride` (>= n), so several weight blocks fill one wide output.
// With SCHNELL_PRECISION_BF16 and AVX512-BF16, a bf16 weight runs on schnell_linear_bf16;
// otherwise bf16 and f16 weights run on schnell_linear_f32 (AVX2 tier and up), float32 on sgemm.
// GGUF block types run on schnell_linear_quantized at either precision (int8 activations).
void schnell_linear(const float *x, size_t rows, size_t k,
                    const void *weight, int weight_dtype,
                    const void *bias, int bias_dtype,
                    size_t n, float *y, size_t y_stride, int precision);
void schnell_linear_reference(const float *x, size_t rows, size_t k,
                              const void *weight, int weight_dtype,
                              const void *bias, int bias_dtype,
                              size_t n, float *y, size_t y_stride);

// y[m, j] = y[m, j] * scale[j] (+ bias[j]) for m < rows, j < n; scale_count is 1 (one scale
// for every column) or n. Applies a scaled fp8 weight's scale after the GEMM on its raw values.
void schnell_scale_columns(float *y, size_t rows, size_t n, size_t y_stride, const float *scale,
                           size_t scale_count, const void *bias, int bias_dtype);

// ---- packed float32 GEMM (gemm_f32.c) ----
// schnell_linear's contract in float32 on the AVX2 or AVX-512 micro-kernels; the weight (any
// dtype) is converted to float32 block by block while it is packed, never as a whole.
// Returns 0 when done, -1 (y untouched) on the generic tier or when memory is short.
// Its reference is schnell_linear_reference.
int schnell_linear_f32(const float *x, size_t rows, size_t k, const void *weight, int weight_dtype,
                       const void *bias, int bias_dtype, size_t n, float *y, size_t y_stride);

// ---- bf16 GEMM (gemm_bf16.c) ----
// schnell_linear's contract for a bf16 weight, computed as bf16(x) . weight^T in fp32.
// Returns 0 when done, -1 (y untouched) when the CPU lacks AVX512-BF16 or memory is short.
int schnell_linear_bf16(const float *x, size_t rows, size_t k, const uint16_t *weight,
                        const void *bias, int bias_dtype, size_t n, float *y, size_t y_stride);
// The same with a plain loop and double accumulation over the same bf16-rounded activations.
void schnell_linear_bf16_reference(const float *x, size_t rows, size_t k, const uint16_t *weight,
                                   const void *bias, int bias_dtype, size_t n, float *y,
                                   size_t y_stride);

// ---- GEMM on quantized blocks (gemm_quant.c) ----
// schnell_linear's contract for a GGUF block-type weight (k whole blocks), computed on the
// blocks: x quantized per 32 values to int8 as ggml's q8_0 (d = amax / 127, q = x / d rounded to
// nearest even, d kept in float32), integer dot products per 32-value block pair, each scaled by
// d_w * d_x (plus m_w * d_x * sum(q_x) for the types with an offset) and summed in float32.
// Handles every block type at every tier (AVX-512 VNNI, AVX2, generic);
// returns -1 (y untouched) for the float types, k not whole blocks, or when memory is short.
int schnell_linear_quantized(const float *x, size_t rows, size_t k, const void *weight, int weight_dtype,
                             const void *bias, int bias_dtype, size_t n, float *y, size_t y_stride);
// The same integer math in plain loops (writes nothing for a type without a fast path).
void schnell_linear_quantized_reference(const float *x, size_t rows, size_t k,
                                        const void *weight, int weight_dtype,
                                        const void *bias, int bias_dtype,
                                        size_t n, float *y, size_t y_stride);

// ---- norms (norm.c) ----
// y = (x - mean) / sqrt(var + eps) * weight + bias per row; weight/bias may be NULL.
void schnell_layer_norm(const float *x, float *y, size_t rows, size_t dim, float eps,
                        const float *weight, const float *bias);
void schnell_layer_norm_reference(const float *x, float *y, size_t rows, size_t dim, float eps,
                                  const float *weight, const float *bias);
// FLUX's adaptive norm: y = layer_norm(x) * (1 + scale) + shift, scale/shift of width dim.
void schnell_layer_norm_modulate(const float *x, float *y, size_t rows, size_t dim, float eps,
                                 const float *scale, const float *shift);
void schnell_layer_norm_modulate_reference(const float *x, float *y, size_t rows, size_t dim,
                                           float eps, const float *scale, const float *shift);
// y = x / sqrt(mean(x^2) + eps) * weight; weight may be NULL.
void schnell_rms_norm(const float *x, float *y, size_t rows, size_t dim, float eps,
                      const float *weight);
void schnell_rms_norm_reference(const float *x, float *y, size_t rows, size_t dim, float eps,
                                const float *weight);

// ---- RoPE (rope.c) ----
// In place on x viewed as [tokens, heads, head_dim] with `token_stride` floats between tokens:
// per head, RMS norm over head_dim (weight of width head_dim), then FLUX's rotary embedding on
// interleaved pairs: (a, b) -> (a cos - b sin, b cos + a sin), with cos/sin [tokens, head_dim]
// (each pair's angle repeated twice, as diffusers' repeat_interleave_real layout).
void schnell_qk_norm_rope(float *x, size_t tokens, size_t heads, size_t head_dim,
                          size_t token_stride, const float *norm_weight, float eps,
                          const float *cos_table, const float *sin_table);
void schnell_qk_norm_rope_reference(float *x, size_t tokens, size_t heads, size_t head_dim,
                                    size_t token_stride, const float *norm_weight, float eps,
                                    const float *cos_table, const float *sin_table);

// ---- attention (attention.c) ----
// out[i, h*d:(h+1)*d] = softmax(scale * q_i . k^T + bias[h, i, :] (+ causal mask)) . v for each
// head h. q/k/v/out are token-major with the given strides; bias is [heads, q_tokens, kv_tokens]
// or NULL. Memory use is O(block * kv_tokens), never O(q_tokens * kv_tokens * heads).
void schnell_attention(const float *q, size_t q_stride,
                       const float *k, size_t k_stride,
                       const float *v, size_t v_stride,
                       float *out, size_t out_stride,
                       size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                       float scale, const float *bias, int causal, int precision);
void schnell_attention_reference(const float *q, size_t q_stride,
                                 const float *k, size_t k_stride,
                                 const float *v, size_t v_stride,
                                 float *out, size_t out_stride,
                                 size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                                 float scale, const float *bias, int causal);
// The same with Q, K, V and the softmax weights rounded to bf16 (float32 scores, sums and
// outputs) on AVX512-BF16; schnell_attention takes this path with SCHNELL_PRECISION_BF16.
// Returns -1 (writing nothing) on CPUs without AVX512-BF16 or when scratch memory is short.
int schnell_attention_bf16(const float *q, size_t q_stride,
                           const float *k, size_t k_stride,
                           const float *v, size_t v_stride,
                           float *out, size_t out_stride,
                           size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                           float scale, const float *bias, int causal);
void schnell_attention_bf16_reference(const float *q, size_t q_stride,
                                      const float *k, size_t k_stride,
                                      const float *v, size_t v_stride,
                                      float *out, size_t out_stride,
                                      size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                                      float scale, const float *bias, int causal);
// In place over rows of width dim.
void schnell_softmax(float *x, size_t rows, size_t dim);
void schnell_softmax_reference(float *x, size_t rows, size_t dim);

// ---- activations and elementwise (activation.c) ----
typedef enum {
    SCHNELL_GELU_TANH = 0,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    SCHNELL_GELU_ERF = 1,   // 0.5 x (1 + erf(x / sqrt(2)))
    SCHNELL_QUICK_GELU = 2, // x sigmoid(1.702 x)
    SCHNELL_SILU = 3,       // x sigmoid(x)
    SCHNELL_RELU = 4,
} schnell_activation_kind;
// In place on `count` floats with row stride: x[r * stride + c] for r < rows, c < width.
void schnell_activation(float *x, size_t rows, size_t width, size_t stride, int kind);
void schnell_activation_reference(float *x, size_t rows, size_t width, size_t stride, int kind);
// x[r, c] += gate[c] * y[r, c] (gate NULL means 1); x and y have their own row strides.
void schnell_gated_add(float *x, size_t x_stride, const float *y, size_t y_stride,
                       const float *gate, size_t rows, size_t width);
void schnell_gated_add_reference(float *x, size_t x_stride, const float *y, size_t y_stride,
                                 const float *gate, size_t rows, size_t width);
// out[r, c] = act(a[r, c]) * b[r, c]: gated feed-forward (T5's gated-GELU).
void schnell_gated_activation(const float *a, size_t a_stride, const float *b, size_t b_stride,
                              float *out, size_t rows, size_t width, int kind);
void schnell_gated_activation_reference(const float *a, size_t a_stride, const float *b,
                                        size_t b_stride, float *out, size_t rows, size_t width,
                                        int kind);

// ---- latent and pixel ops (latent.c) ----
// Plain loops over packed float32 values. latent.c is built for baseline x86-64 (no FMA), so
// each product is rounded before it is added, as PyTorch's float32 elementwise ops do.
// y = x * scale + shift (y may be x).
void schnell_affine(const float *x, float *y, size_t count, float scale, float shift);
// x clamped to [low, high], in place.
void schnell_clamp(float *x, size_t count, float low, float high);
// FlowMatchEulerDiscreteScheduler.step: sample += delta * velocity, delta = sigma_next - sigma.
void schnell_euler_step(float *sample, const float *velocity, size_t count, float delta);
// The scheduler's scale_noise: y = sigma * noise + (1 - sigma) * x (y may be x).
void schnell_noise_mix(const float *x, const float *noise, float *y, size_t count, float sigma);
// Inpainting: x = (1 - mask) * kept + mask * x.
void schnell_mask_blend(float *x, const float *kept, const float *mask, size_t count);
// A draw from the VAE's latent distribution: y = mean + exp(0.5 * log_variance) * noise.
void schnell_gaussian_sample(const float *mean, const float *log_variance, const float *noise,
                             float *y, size_t count);
// [C, H, W] -> [(H / 2) (W / 2), 4C], per token in the order (c, dy, dx), as diffusers'
// _pack_latents; schnell_unpack_latents is its inverse.
void schnell_pack_latents(const float *x, float *y, size_t channels, size_t height, size_t width);
void schnell_unpack_latents(const float *x, float *y, size_t channels, size_t height, size_t width);
// A decoded image [3, pixels] in [-1, 1] -> interleaved 8-bit RGB as diffusers' image processor:
// (x * 0.5 + 0.5) clamped to [0, 1], times 255, rounded half to even.
void schnell_rgb8_from_planes(const float *x, uint8_t *rgb, size_t pixels);
// Interleaved 8-bit RGB -> [3, pixels]: 2 * (v / 255) - 1, as VaeImageProcessor normalises.
void schnell_planes_from_rgb8(const uint8_t *rgb, float *x, size_t pixels);

// ---- previews (preview.c) ----
// Packed latent tokens [(latent_height / 2) (latent_width / 2), 4 * channels] -> interleaved 8-bit
// RGB [height, width, 3]: per latent pixel rgb = weight [3, channels] . latent + bias [3] in [-1, 1]
// image units, turned into [0, 255] levels ((v * 0.5 + 0.5) * 255, clamped), then scaled to
// width x height bilinearly (half-pixel centres, as PyTorch's interpolate with align_corners=False)
// and rounded. Threaded over output rows. Returns 0, or -1 when scratch memory is short.
int schnell_preview_rgb8(const float *packed, size_t channels, size_t latent_height, size_t latent_width,
                         const float *weight, const float *bias, uint8_t *rgb, size_t width, size_t height);
void schnell_preview_rgb8_reference(const float *packed, size_t channels, size_t latent_height, size_t latent_width,
                                    const float *weight, const float *bias, uint8_t *rgb, size_t width, size_t height);

#ifdef __cplusplus
}
#endif

#endif
