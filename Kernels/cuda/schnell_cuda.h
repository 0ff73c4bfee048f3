// Schnell CUDA backend: the C interface of libschnell_cuda.so.
//
// The library is loaded at run time (dlopen) and exports exactly one symbol,
// schnell_cuda_get_api(), which returns a versioned table of function pointers. A caller checks
// api_version before touching anything else, so an old library is refused, not misused.
// Swift reads this header as the module CSchnellCUDA (module.modulemap beside it).
//
// Conventions:
//   - activations and weights are bfloat16 in device memory (schnell_bf16 = raw bits), with
//     float32 accumulation in every op; RoPE tables are float32;
//   - all matrices are row-major; a "row" is one token (transformer) and strides are in elements;
//   - images (conv, group norm, upsample) are NCHW, as PyTorch stores them;
//   - every op is enqueued on the library's single stream; functions return 0 on success and
//     -1 on failure, with the reason in last_error(); nothing aborts the process.
// One device per process: init() picks it, creates the stream, the cuBLASLt handle and the arena.
#ifndef SCHNELL_CUDA_H
#define SCHNELL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SCHNELL_CUDA_API_VERSION 1u

typedef uint16_t schnell_bf16;

// What query_device() reports.
typedef struct {
    int32_t device_count;         // devices the driver sees (0 when none)
    int32_t compute_major;        // compute capability of the queried device, e.g. 9 . 0
    int32_t compute_minor;
    int32_t multiprocessor_count;
    uint64_t free_bytes;          // device memory free now / in total
    uint64_t total_bytes;
    char name[256];               // e.g. "NVIDIA H100 80GB HBM3"
    char error[256];              // empty when the device is usable, else why not
} schnell_cuda_device_info;

typedef enum {
    SCHNELL_CUDA_GELU_TANH = 0,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    SCHNELL_CUDA_SILU = 1,       // x sigmoid(x)
} schnell_cuda_activation_kind;

// An instantiated CUDA graph (opaque).
typedef struct schnell_cuda_graph schnell_cuda_graph;

typedef struct {
    uint32_t api_version;  // SCHNELL_CUDA_API_VERSION of the library
    uint32_t table_size;   // sizeof(schnell_cuda_api) of the library

    // ---- availability and lifetime (arena.cu) ----
    // Safe to call with no driver or GPU: returns -1 and fills info->error instead.
    int (*query_device)(int device_index, schnell_cuda_device_info *info);
    // Selects the device, creates the stream, the cuBLASLt handle and workspace, and one
    // arena of arena_bytes (a single cudaMalloc). Calling it again first releases everything.
    int (*init)(int device_index, size_t arena_bytes);
    void (*shutdown)(void);
    const char *(*last_error)(void);
    int (*synchronize)(void);

    // ---- memory (arena.cu) ----
    // Per-step scratch: bump allocation, 256-byte aligned; NULL (with last_error) when full.
    void *(*arena_alloc)(size_t bytes);
    void (*arena_reset)(void);
    size_t (*arena_used_bytes)(void);
    // Weights live outside the arena: uploaded once (one cudaMalloc each), freed by weight_free.
    void *(*weight_upload)(const void *host, size_t bytes);
    int (*weight_free)(void *device);
    // Stream-ordered copies; copy_to_host waits for the stream so host memory is ready on return.
    int (*copy_to_device)(void *device, const void *host, size_t bytes);
    int (*copy_to_host)(void *host, const void *device, size_t bytes);

    // ---- conversion (elementwise.cu), device pointers ----
    int (*f32_to_bf16)(const float *x, schnell_bf16 *y, size_t count);  // round to nearest even
    int (*bf16_to_f32)(const schnell_bf16 *x, float *y, size_t count);

    // ---- GEMM (gemm.cu) ----
    // y[r, 0:n] = x[r, 0:k] . weight[0:n, 0:k]^T (+ bias[0:n]), then GELU-tanh when
    // gelu_tanh != 0, all in the cuBLASLt epilogue. bias may be NULL. Row strides in elements.
    int (*linear)(const schnell_bf16 *x, size_t x_stride, size_t rows, size_t k,
                  const schnell_bf16 *weight, const schnell_bf16 *bias, size_t n,
                  schnell_bf16 *y, size_t y_stride, int gelu_tanh);

    // ---- attention (attention.cu) ----
    // out[i, h*d:(h+1)*d] = softmax(scale * q_i[h] . k[:, h]^T) . v[:, h] for each head h;
    // q/k/v/out token-major with their own strides; head_dim 64 or 128. Flash-style: online
    // softmax over key blocks, no [q_tokens, kv_tokens] matrix is ever stored.
    int (*attention)(const schnell_bf16 *q, size_t q_stride,
                     const schnell_bf16 *k, size_t k_stride,
                     const schnell_bf16 *v, size_t v_stride,
                     schnell_bf16 *out, size_t out_stride,
                     size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                     float scale);

    // ---- norms (norm.cu) ----
    // FLUX's adaptive norm: y = layer_norm(x) * (1 + scale) + shift, no affine weights;
    // x, y [rows, dim]; scale, shift [dim].
    int (*layer_norm_modulate)(const schnell_bf16 *x, schnell_bf16 *y, size_t rows, size_t dim,
                               float eps, const schnell_bf16 *scale, const schnell_bf16 *shift);
    // y = group_norm(x) * weight[c] + bias[c] (then SiLU when silu != 0) on x, y [batch, C, H*W];
    // channels split into `groups` contiguous groups.
    int (*group_norm)(const schnell_bf16 *x, schnell_bf16 *y, size_t batch, size_t channels,
                      size_t pixels, size_t groups, float eps,
                      const schnell_bf16 *weight, const schnell_bf16 *bias, int silu);

    // ---- RoPE (rope.cu) ----
    // In place on x viewed as [tokens, heads, head_dim] with token_stride elements between
    // tokens: RMS norm over head_dim (times norm_weight [head_dim]), then the rotary embedding
    // on interleaved pairs (a, b) -> (a cos - b sin, b cos + a sin); cos/sin [tokens, head_dim].
    int (*qk_norm_rope)(schnell_bf16 *x, size_t tokens, size_t heads, size_t head_dim,
                        size_t token_stride, const schnell_bf16 *norm_weight, float eps,
                        const float *cos_table, const float *sin_table);

    // ---- elementwise (elementwise.cu) ----
    // x[r, c] += gate[c] * y[r, c] (gate NULL means 1); x, y [rows, width] with row strides.
    int (*gated_add)(schnell_bf16 *x, size_t x_stride, const schnell_bf16 *y, size_t y_stride,
                     const schnell_bf16 *gate, size_t rows, size_t width);
    // In place on x[r * stride + c], r < rows, c < width; kind is a schnell_cuda_activation_kind.
    int (*activation)(schnell_bf16 *x, size_t rows, size_t width, size_t stride, int kind);

    // ---- images (conv.cu), NCHW ----
    // 3x3 convolution, stride 1, padding 1: y [batch, c_out, H, W] = conv(x [batch, c_in, H, W],
    // weight [c_out, c_in, 3, 3]) + bias [c_out] (bias may be NULL). im2col + cuBLASLt.
    int (*conv3x3)(const schnell_bf16 *x, size_t batch, size_t c_in, size_t height, size_t width,
                   const schnell_bf16 *weight, const schnell_bf16 *bias, size_t c_out,
                   schnell_bf16 *y);
    // y [batch, C, 2H, 2W] = nearest-neighbour x2 of x [batch, C, H, W].
    int (*upsample_nearest2x)(const schnell_bf16 *x, schnell_bf16 *y, size_t batch,
                              size_t channels, size_t height, size_t width);

    // ---- CUDA graphs (graph.cu) ----
    // Between begin and end, ops are recorded on the stream instead of run; end instantiates the
    // recording. A step captured once is replayed with graph_launch, with no allocation or
    // launch overhead, as long as its pointers (arena offsets) stay the same.
    int (*graph_begin_capture)(void);
    int (*graph_end_capture)(schnell_cuda_graph **graph);
    int (*graph_launch)(schnell_cuda_graph *graph);
    void (*graph_destroy)(schnell_cuda_graph *graph);
} schnell_cuda_api;

// The library's only export. Never NULL.
const schnell_cuda_api *schnell_cuda_get_api(void);

#ifdef __cplusplus
}
#endif

#endif
