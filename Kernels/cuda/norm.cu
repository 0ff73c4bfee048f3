// Norms: FLUX's adaptive layer norm with modulation, and GroupNorm (+ SiLU) for the VAE.
// Statistics in fp32, two passes (mean, then centred variance) to avoid cancellation.
#include "internal.cuh"

static const unsigned kThreads = 256;

// Sum over the block; every thread gets the result. scratch holds 32 floats.
__device__ float block_sum(float value, float *scratch) {
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = value;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    value = lane < warps ? scratch[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

// One block per row. x, y [rows, dim]; scale, shift [dim].
__global__ void layer_norm_modulate_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *y, size_t dim,
                                           float eps, const __nv_bfloat16 *scale,
                                           const __nv_bfloat16 *shift) {
    __shared__ float scratch[32];
    const __nv_bfloat16 *row = x + blockIdx.x * dim;
    __nv_bfloat16 *out = y + blockIdx.x * dim;
    float sum = 0.0f;
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) sum += __bfloat162float(row[c]);
    float mean = block_sum(sum, scratch) / (float)dim;
    float squares = 0.0f;
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) {
        float centred = __bfloat162float(row[c]) - mean;
        squares += centred * centred;
    }
    float inverse_std = rsqrtf(block_sum(squares, scratch) / (float)dim + eps);
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) {
        float normed = (__bfloat162float(row[c]) - mean) * inverse_std;
        float value = normed * (1.0f + __bfloat162float(scale[c])) + __bfloat162float(shift[c]);
        out[c] = __float2bfloat16_rn(value);
    }
}

extern "C" int schnell_cuda_layer_norm_modulate(const schnell_bf16 *x, schnell_bf16 *y,
                                                size_t rows, size_t dim, float eps,
                                                const schnell_bf16 *scale,
                                                const schnell_bf16 *shift) {
    if (require_ready("layer_norm_modulate")) return -1;
    if (rows == 0) return 0;
    if (dim == 0 || rows > 0x7fffffffu) return fail("layer_norm_modulate: bad shape");
    layer_norm_modulate_kernel<<<(unsigned)rows, kThreads, 0, g_cuda.stream>>>(
        (const __nv_bfloat16 *)x, (__nv_bfloat16 *)y, dim, eps, (const __nv_bfloat16 *)scale,
        (const __nv_bfloat16 *)shift);
    return check_launch("layer_norm_modulate");
}

// One block per (batch, group). A group is channels_per_group contiguous channels of `pixels`
// values each, so it is one contiguous span of x [batch, channels, pixels].
__global__ void group_norm_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *y, size_t channels,
                                  size_t pixels, size_t groups, float eps,
                                  const __nv_bfloat16 *weight, const __nv_bfloat16 *bias,
                                  int silu) {
    __shared__ float scratch[32];
    size_t batch_index = blockIdx.x / groups, group = blockIdx.x % groups;
    size_t channels_per_group = channels / groups;
    size_t span = channels_per_group * pixels;
    size_t start = (batch_index * channels + group * channels_per_group) * pixels;
    const __nv_bfloat16 *source = x + start;
    __nv_bfloat16 *destination = y + start;
    float sum = 0.0f;
    for (size_t i = threadIdx.x; i < span; i += blockDim.x) sum += __bfloat162float(source[i]);
    float mean = block_sum(sum, scratch) / (float)span;
    float squares = 0.0f;
    for (size_t i = threadIdx.x; i < span; i += blockDim.x) {
        float centred = __bfloat162float(source[i]) - mean;
        squares += centred * centred;
    }
    float inverse_std = rsqrtf(block_sum(squares, scratch) / (float)span + eps);
    for (size_t i = threadIdx.x; i < span; i += blockDim.x) {
        size_t channel = group * channels_per_group + i / pixels;
        float value = (__bfloat162float(source[i]) - mean) * inverse_std;
        value = value * __bfloat162float(weight[channel]) + __bfloat162float(bias[channel]);
        if (silu) value = value / (1.0f + __expf(-value));
        destination[i] = __float2bfloat16_rn(value);
    }
}

extern "C" int schnell_cuda_group_norm(const schnell_bf16 *x, schnell_bf16 *y, size_t batch,
                                       size_t channels, size_t pixels, size_t groups, float eps,
                                       const schnell_bf16 *weight, const schnell_bf16 *bias,
                                       int silu) {
    if (require_ready("group_norm")) return -1;
    if (batch == 0 || pixels == 0) return 0;
    if (groups == 0 || channels % groups != 0 || batch * groups > 0x7fffffffu)
        return fail("group_norm: %zu channels do not split into %zu groups", channels, groups);
    if (weight == NULL || bias == NULL) return fail("group_norm: weight and bias are required");
    // Few, long blocks (batch * groups of them); 1024 threads keep each SM's loads in flight.
    group_norm_kernel<<<(unsigned)(batch * groups), 1024, 0, g_cuda.stream>>>(
        (const __nv_bfloat16 *)x, (__nv_bfloat16 *)y, channels, pixels, groups, eps,
        (const __nv_bfloat16 *)weight, (const __nv_bfloat16 *)bias, silu);
    return check_launch("group_norm");
}
