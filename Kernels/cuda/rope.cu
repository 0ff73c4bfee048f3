// q/k RMS norm + rotary embedding, fused: one warp per (token, head), in place.
//
// x viewed as [tokens, heads, head_dim] with token_stride elements between tokens (so the
// q and k column blocks of a fused qkv projection are processed where they lie).
// Lane l handles pairs p = l, l + 32, ...: elements (2p, 2p + 1) rotate together, as
// diffusers' interleaved ("repeat_interleave_real") layout; cos/sin are [tokens, head_dim].
#include "internal.cuh"

static const unsigned kWarpsPerBlock = 8;

__global__ void qk_norm_rope_kernel(__nv_bfloat162 *x, size_t tokens, size_t heads,
                                    size_t head_dim, size_t token_stride,
                                    const __nv_bfloat16 *norm_weight, float eps,
                                    const float *cos_table, const float *sin_table) {
    size_t item = blockIdx.x * (size_t)kWarpsPerBlock + threadIdx.x / 32;
    if (item >= tokens * heads) return;
    size_t token = item / heads, head = item % heads;
    int lane = threadIdx.x & 31;
    size_t pairs = head_dim / 2;
    // token_stride and head_dim are even (checked by the caller), so pairs are bf16x2-aligned.
    __nv_bfloat162 *vector = x + (token * token_stride + head * head_dim) / 2;
    float squares = 0.0f;
    for (size_t p = lane; p < pairs; p += 32) {
        float2 value = __bfloat1622float2(vector[p]);
        squares += value.x * value.x + value.y * value.y;
    }
    for (int offset = 16; offset > 0; offset >>= 1)
        squares += __shfl_xor_sync(0xffffffffu, squares, offset);
    float inverse_rms = rsqrtf(squares / (float)head_dim + eps);
    const float *cos_row = cos_table + token * head_dim;
    const float *sin_row = sin_table + token * head_dim;
    for (size_t p = lane; p < pairs; p += 32) {
        float2 value = __bfloat1622float2(vector[p]);
        float a = value.x * inverse_rms * __bfloat162float(norm_weight[2 * p]);
        float b = value.y * inverse_rms * __bfloat162float(norm_weight[2 * p + 1]);
        float c0 = cos_row[2 * p], s0 = sin_row[2 * p];
        float c1 = cos_row[2 * p + 1], s1 = sin_row[2 * p + 1];
        vector[p] = __floats2bfloat162_rn(a * c0 - b * s0, b * c1 + a * s1);
    }
}

extern "C" int schnell_cuda_qk_norm_rope(schnell_bf16 *x, size_t tokens, size_t heads,
                                         size_t head_dim, size_t token_stride,
                                         const schnell_bf16 *norm_weight, float eps,
                                         const float *cos_table, const float *sin_table) {
    if (require_ready("qk_norm_rope")) return -1;
    if (tokens == 0 || heads == 0) return 0;
    if (head_dim == 0 || head_dim % 2 != 0 || token_stride % 2 != 0 ||
        token_stride < heads * head_dim || ((uintptr_t)x & 3) != 0)
        return fail("qk_norm_rope: needs even head_dim and stride and 4-byte aligned x "
                    "(head_dim=%zu stride=%zu)", head_dim, token_stride);
    if (norm_weight == NULL) return fail("qk_norm_rope: norm_weight is required");
    size_t items = tokens * heads;
    size_t blocks = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > 0x7fffffffu) return fail("qk_norm_rope: too many tokens");
    qk_norm_rope_kernel<<<(unsigned)blocks, kWarpsPerBlock * 32, 0, g_cuda.stream>>>(
        (__nv_bfloat162 *)x, tokens, heads, head_dim, token_stride,
        (const __nv_bfloat16 *)norm_weight, eps, cos_table, sin_table);
    return check_launch("qk_norm_rope");
}
