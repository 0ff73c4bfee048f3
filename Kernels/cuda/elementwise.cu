// Elementwise ops: float32 <-> bf16 conversion, gated residual add, GELU-tanh / SiLU.
// Memory-bound; grid-stride loops, arithmetic in fp32.
#include "internal.cuh"

static const unsigned kThreads = 256;

__global__ void f32_to_bf16_kernel(const float *x, __nv_bfloat16 *y, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

__global__ void bf16_to_f32_kernel(const __nv_bfloat16 *x, float *y, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __bfloat162float(x[i]);
}

extern "C" int schnell_cuda_f32_to_bf16(const float *x, schnell_bf16 *y, size_t count) {
    if (require_ready("f32_to_bf16")) return -1;
    if (count == 0) return 0;
    f32_to_bf16_kernel<<<grid_for(count, kThreads), kThreads, 0, g_cuda.stream>>>(
        x, (__nv_bfloat16 *)y, count);
    return check_launch("f32_to_bf16");
}

extern "C" int schnell_cuda_bf16_to_f32(const schnell_bf16 *x, float *y, size_t count) {
    if (require_ready("bf16_to_f32")) return -1;
    if (count == 0) return 0;
    bf16_to_f32_kernel<<<grid_for(count, kThreads), kThreads, 0, g_cuda.stream>>>(
        (const __nv_bfloat16 *)x, y, count);
    return check_launch("bf16_to_f32");
}

// x, y [rows, width] with row strides; gate [width] or NULL. x += gate * y.
__global__ void gated_add_kernel(__nv_bfloat16 *x, size_t x_stride, const __nv_bfloat16 *y,
                                 size_t y_stride, const __nv_bfloat16 *gate, size_t rows,
                                 size_t width) {
    size_t count = rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / width, c = i % width;
        float g = gate != NULL ? __bfloat162float(gate[c]) : 1.0f;
        float sum = __bfloat162float(x[r * x_stride + c]) + g * __bfloat162float(y[r * y_stride + c]);
        x[r * x_stride + c] = __float2bfloat16_rn(sum);
    }
}

extern "C" int schnell_cuda_gated_add(schnell_bf16 *x, size_t x_stride, const schnell_bf16 *y,
                                      size_t y_stride, const schnell_bf16 *gate, size_t rows,
                                      size_t width) {
    if (require_ready("gated_add")) return -1;
    if (rows == 0 || width == 0) return 0;
    if (x_stride < width || y_stride < width)
        return fail("gated_add: strides %zu, %zu below width %zu", x_stride, y_stride, width);
    gated_add_kernel<<<grid_for(rows * width, kThreads), kThreads, 0, g_cuda.stream>>>(
        (__nv_bfloat16 *)x, x_stride, (const __nv_bfloat16 *)y, y_stride,
        (const __nv_bfloat16 *)gate, rows, width);
    return check_launch("gated_add");
}

__device__ inline float gelu_tanh(float x) {
    const float kSqrt2OverPi = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

__device__ inline float silu(float x) { return x / (1.0f + __expf(-x)); }

// x[r * stride + c] for r < rows, c < width, in place.
template <int kKind>
__global__ void activation_kernel(__nv_bfloat16 *x, size_t rows, size_t width, size_t stride) {
    size_t count = rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t index = (i / width) * stride + i % width;
        float value = __bfloat162float(x[index]);
        value = kKind == SCHNELL_CUDA_GELU_TANH ? gelu_tanh(value) : silu(value);
        x[index] = __float2bfloat16_rn(value);
    }
}

extern "C" int schnell_cuda_activation(schnell_bf16 *x, size_t rows, size_t width, size_t stride,
                                       int kind) {
    if (require_ready("activation")) return -1;
    if (rows == 0 || width == 0) return 0;
    if (stride < width) return fail("activation: stride %zu below width %zu", stride, width);
    unsigned blocks = grid_for(rows * width, kThreads);
    __nv_bfloat16 *values = (__nv_bfloat16 *)x;
    switch (kind) {
    case SCHNELL_CUDA_GELU_TANH:
        activation_kernel<SCHNELL_CUDA_GELU_TANH><<<blocks, kThreads, 0, g_cuda.stream>>>(
            values, rows, width, stride);
        break;
    case SCHNELL_CUDA_SILU:
        activation_kernel<SCHNELL_CUDA_SILU><<<blocks, kThreads, 0, g_cuda.stream>>>(
            values, rows, width, stride);
        break;
    default:
        return fail("activation: unknown kind %d", kind);
    }
    return check_launch("activation");
}
