// Shared state and helpers of the CUDA library; not part of the public interface.
#ifndef SCHNELL_CUDA_INTERNAL_CUH
#define SCHNELL_CUDA_INTERNAL_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "schnell_cuda.h"

// The one device context: set up by init(), released by shutdown().
struct schnell_cuda_context {
    bool ready;
    int device;
    cudaStream_t stream;
    cublasLtHandle_t blas;
    void *blas_workspace;  // cuBLASLt scratch, fixed so GEMMs can be graph-captured
    size_t blas_workspace_bytes;
    char *arena;           // one cudaMalloc, bump-allocated per step
    size_t arena_bytes;
    size_t arena_offset;
    schnell_bf16 *conv_columns;  // im2col scratch for conv3x3
    size_t conv_columns_bytes;
};

extern schnell_cuda_context g_cuda;

// Records a message for last_error(); always returns -1 so callers can `return fail(...)`.
int fail(const char *format, ...);
// 0 when status is cudaSuccess, else records "what: CUDA's message" and returns -1.
int check_cuda(cudaError_t status, const char *what);
// Checks the launch just made on the stream (bad configuration, missing kernel image).
int check_launch(const char *kernel_name);
// -1 with a message when init() has not run.
int require_ready(const char *op_name);

// Grid size for a 1-D loop over count items, capped so grid-stride loops cover the rest.
inline unsigned grid_for(size_t count, unsigned threads) {
    size_t blocks = (count + threads - 1) / threads;
    return (unsigned)(blocks < 65535u * 16u ? (blocks > 0 ? blocks : 1) : 65535u * 16u);
}

// cuBLASLt bf16 GEMM in column-major terms with fp32 accumulation:
// D[m, n] (ld ldd) = op(A)[m, k] . op(B)[k, n] (+ bias[m]) (then GELU), A/B transposed when
// trans_a/trans_b. Shared by linear() and conv3x3().
int gemm_bf16(bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
              const schnell_bf16 *a, size_t lda, const schnell_bf16 *b, size_t ldb,
              schnell_bf16 *d, size_t ldd, const schnell_bf16 *bias, bool gelu_tanh);

// Ops behind the table, one family per file.
extern "C" {
int schnell_cuda_query_device(int device_index, schnell_cuda_device_info *info);
int schnell_cuda_init(int device_index, size_t arena_bytes);
void schnell_cuda_shutdown(void);
const char *schnell_cuda_last_error(void);
int schnell_cuda_synchronize(void);
void *schnell_cuda_arena_alloc(size_t bytes);
void schnell_cuda_arena_reset(void);
size_t schnell_cuda_arena_used_bytes(void);
void *schnell_cuda_weight_upload(const void *host, size_t bytes);
int schnell_cuda_weight_free(void *device);
int schnell_cuda_copy_to_device(void *device, const void *host, size_t bytes);
int schnell_cuda_copy_to_host(void *host, const void *device, size_t bytes);
int schnell_cuda_f32_to_bf16(const float *x, schnell_bf16 *y, size_t count);
int schnell_cuda_bf16_to_f32(const schnell_bf16 *x, float *y, size_t count);
int schnell_cuda_linear(const schnell_bf16 *x, size_t x_stride, size_t rows, size_t k,
                        const schnell_bf16 *weight, const schnell_bf16 *bias, size_t n,
                        schnell_bf16 *y, size_t y_stride, int gelu_tanh);
int schnell_cuda_attention(const schnell_bf16 *q, size_t q_stride,
                           const schnell_bf16 *k, size_t k_stride,
                           const schnell_bf16 *v, size_t v_stride,
                           schnell_bf16 *out, size_t out_stride,
                           size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                           float scale);
int schnell_cuda_layer_norm_modulate(const schnell_bf16 *x, schnell_bf16 *y, size_t rows,
                                     size_t dim, float eps, const schnell_bf16 *scale,
                                     const schnell_bf16 *shift);
int schnell_cuda_group_norm(const schnell_bf16 *x, schnell_bf16 *y, size_t batch,
                            size_t channels, size_t pixels, size_t groups, float eps,
                            const schnell_bf16 *weight, const schnell_bf16 *bias, int silu);
int schnell_cuda_qk_norm_rope(schnell_bf16 *x, size_t tokens, size_t heads, size_t head_dim,
                              size_t token_stride, const schnell_bf16 *norm_weight, float eps,
                              const float *cos_table, const float *sin_table);
int schnell_cuda_gated_add(schnell_bf16 *x, size_t x_stride, const schnell_bf16 *y,
                           size_t y_stride, const schnell_bf16 *gate, size_t rows, size_t width);
int schnell_cuda_activation(schnell_bf16 *x, size_t rows, size_t width, size_t stride, int kind);
int schnell_cuda_conv3x3(const schnell_bf16 *x, size_t batch, size_t c_in, size_t height,
                         size_t width, const schnell_bf16 *weight, const schnell_bf16 *bias,
                         size_t c_out, schnell_bf16 *y);
int schnell_cuda_upsample_nearest2x(const schnell_bf16 *x, schnell_bf16 *y, size_t batch,
                                    size_t channels, size_t height, size_t width);
int schnell_cuda_graph_begin_capture(void);
int schnell_cuda_graph_end_capture(schnell_cuda_graph **graph);
int schnell_cuda_graph_launch(schnell_cuda_graph *graph);
void schnell_cuda_graph_destroy(schnell_cuda_graph *graph);
}

// Whether attention's kernels were given their shared-memory limit (done once by init()).
int attention_prepare(void);

#endif
