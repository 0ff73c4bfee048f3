// Image ops for the VAE decoder, NCHW: 3x3 convolution (im2col + cuBLASLt) and nearest x2
// upsampling.
//
// conv3x3 per image, in pixel chunks so the column buffer stays within its fixed scratch:
//   columns [c_in * 9, chunk] (row-major; row = (ci, ky, kx), column = output pixel)
//   y[c_out, p0 : p0 + chunk] = weight[c_out, c_in * 9] . columns      (row stride H*W)
// In column-major terms D[chunk, c_out] (ld H*W) = columns^T . weight^T, with both operands
// stored as-is. The bias is per output channel, i.e. per D column, which cuBLASLt's epilogue
// (per row) cannot add, so a small kernel adds it afterwards.
#include "internal.cuh"

static const unsigned kThreads = 256;

// columns[(ci * 9 + ky * 3 + kx) * chunk + j] = x[ci, y + ky - 1, x + kx - 1] (0 outside),
// for output pixel p0 + j = y * width + x.
__global__ void im2col3x3_kernel(const __nv_bfloat16 *image, __nv_bfloat16 *columns,
                                 size_t c_in, size_t height, size_t width, size_t p0,
                                 size_t chunk) {
    size_t count = c_in * 9 * chunk;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t j = i % chunk, row = i / chunk;
        size_t ci = row / 9, tap = row % 9;
        size_t pixel = p0 + j;
        long long source_y = (long long)(pixel / width) + (long long)(tap / 3) - 1;
        long long source_x = (long long)(pixel % width) + (long long)(tap % 3) - 1;
        bool inside = source_y >= 0 && source_y < (long long)height && source_x >= 0 &&
                      source_x < (long long)width;
        columns[i] = inside ? image[(ci * height + source_y) * width + source_x]
                            : __float2bfloat16_rn(0.0f);
    }
}

// y[b, c, p] += bias[c] for y [batch, channels, pixels].
__global__ void add_channel_bias_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *bias,
                                        size_t channels, size_t pixels, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t channel = (i / pixels) % channels;
        y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + __bfloat162float(bias[channel]));
    }
}

extern "C" int schnell_cuda_conv3x3(const schnell_bf16 *x, size_t batch, size_t c_in,
                                    size_t height, size_t width, const schnell_bf16 *weight,
                                    const schnell_bf16 *bias, size_t c_out, schnell_bf16 *y) {
    if (require_ready("conv3x3")) return -1;
    size_t pixels = height * width;
    if (batch == 0 || pixels == 0 || c_out == 0) return 0;
    if (c_in == 0) return fail("conv3x3: c_in is 0");
    size_t column_rows = c_in * 9;
    // Chunks are a multiple of 8 pixels so each chunk's output columns stay 16-byte aligned.
    size_t chunk = g_cuda.conv_columns_bytes / (column_rows * sizeof(schnell_bf16)) / 8 * 8;
    if (chunk == 0) return fail("conv3x3: c_in=%zu exceeds the column scratch", c_in);
    if (chunk > pixels) chunk = pixels;
    const __nv_bfloat16 *images = (const __nv_bfloat16 *)x;
    for (size_t b = 0; b < batch; b++) {
        const __nv_bfloat16 *image = images + b * c_in * pixels;
        schnell_bf16 *output = y + b * c_out * pixels;
        for (size_t p0 = 0; p0 < pixels; p0 += chunk) {
            size_t count = pixels - p0 < chunk ? pixels - p0 : chunk;
            im2col3x3_kernel<<<grid_for(column_rows * count, kThreads), kThreads, 0,
                               g_cuda.stream>>>(image, (__nv_bfloat16 *)g_cuda.conv_columns,
                                                c_in, height, width, p0, count);
            if (check_launch("conv3x3: im2col")) return -1;
            // D[count, c_out] (ld pixels) = columns^T [count, K] . weight^T [K, c_out]
            if (gemm_bf16(false, false, count, c_out, column_rows, g_cuda.conv_columns, count,
                          weight, column_rows, output + p0, pixels, NULL, false))
                return -1;
        }
    }
    if (bias != NULL) {
        size_t count = batch * c_out * pixels;
        add_channel_bias_kernel<<<grid_for(count, kThreads), kThreads, 0, g_cuda.stream>>>(
            (__nv_bfloat16 *)y, (const __nv_bfloat16 *)bias, c_out, pixels, count);
        return check_launch("conv3x3: bias");
    }
    return 0;
}

// y [batch, C, 2H, 2W] from x [batch, C, H, W]: each output pixel copies its source pixel.
__global__ void upsample_nearest2x_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *y,
                                          size_t planes, size_t height, size_t width) {
    size_t out_width = 2 * width, out_plane = 4 * height * width;
    size_t count = planes * out_plane;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t plane = i / out_plane, within = i % out_plane;
        size_t out_y = within / out_width, out_x = within % out_width;
        y[i] = x[(plane * height + out_y / 2) * width + out_x / 2];
    }
}

extern "C" int schnell_cuda_upsample_nearest2x(const schnell_bf16 *x, schnell_bf16 *y,
                                               size_t batch, size_t channels, size_t height,
                                               size_t width) {
    if (require_ready("upsample_nearest2x")) return -1;
    size_t count = batch * channels * height * width * 4;
    if (count == 0) return 0;
    upsample_nearest2x_kernel<<<grid_for(count, kThreads), kThreads, 0, g_cuda.stream>>>(
        (const __nv_bfloat16 *)x, (__nv_bfloat16 *)y, batch * channels, height, width);
    return check_launch("upsample_nearest2x");
}
