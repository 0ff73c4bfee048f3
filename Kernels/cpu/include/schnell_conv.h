// Schnell CPU image kernels: convolution, group norm, upsampling, transpose (conv.c).
//
// Layout: activations are channel-first [C, H, W] float32, batch 1 (the VAE's layout);
// convolution weights are [Cout, Cin, kh, kw] in their stored dtype (see schnell_dtype).
// Every fast kernel has a `_reference` twin, a plain single-threaded loop for the tests.
#ifndef SCHNELL_CONV_H
#define SCHNELL_CONV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Geometry of a 2-D convolution over zero-padded input; padding may differ per side
// (FLUX's encoder downsamples with stride 2 and padding top 0, bottom 1, left 0, right 1).
typedef struct {
    size_t in_channels, height, width;
    size_t out_channels, kernel_h, kernel_w, stride;
    size_t pad_top, pad_bottom, pad_left, pad_right;
} schnell_conv2d_shape;

// Output height/width: (height + pad_top + pad_bottom - kernel_h) / stride + 1 (0 if negative).
size_t schnell_conv2d_out_height(const schnell_conv2d_shape *shape);
size_t schnell_conv2d_out_width(const schnell_conv2d_shape *shape);

// y[Cout, OH, OW] = weight * x[Cin, H, W] (+ bias[Cout]). Returns 0, or -1 when scratch cannot
// be allocated. On AVX2 and AVX-512 tiers it runs as an implicit GEMM (conv_gemm.c,
// conv_gemm_avx2.c: the column matrix is gathered block by block, never built); with
// SCHNELL_PRECISION_BF16, a bf16 weight with an even Cin x kh x kw and AVX512-BF16, that GEMM is
// bf16(x) . weight with fp32 accumulation, as schnell_linear does (on other tiers f16 and bf16
// weights are converted to float32 once per call). 3x3 convolutions with padding 1, an even
// height and a width that is a multiple of 32 (AVX2 tier: 16) run as Winograd F(2x2, 3x3)
// instead (conv_winograd.c: 16 multiply-adds per 2x2 outputs instead of 36; on the bf16 path the
// transformed values are rounded to bf16). On the generic tier it is schnell_conv2d_sgemm.
int schnell_conv2d(const float *x, const void *weight, int weight_dtype,
                   const void *bias, int bias_dtype, float *y, const schnell_conv2d_shape *shape,
                   int precision);
// schnell_conv2d over the nearest x2 upsampling of x, without building it: x is
// [Cin, H / 2, W / 2] where shape's height H and width W (the convolution's input) are even.
// (AVX2 and AVX-512 tiers; the generic tier builds the upsampled input for schnell_conv2d_sgemm.)
// Returns 0, -1 when scratch cannot be allocated, -2 for an odd H or W.
int schnell_conv2d_upsampled(const float *x, const void *weight, int weight_dtype,
                             const void *bias, int bias_dtype, float *y,
                             const schnell_conv2d_shape *shape, int precision);
// The same as im2col over bands of output rows (bounded scratch) and OpenBLAS sgemm.
int schnell_conv2d_sgemm(const float *x, const void *weight, int weight_dtype,
                         const void *bias, int bias_dtype, float *y,
                         const schnell_conv2d_shape *shape);
int schnell_conv2d_reference(const float *x, const void *weight, int weight_dtype,
                             const void *bias, int bias_dtype, float *y,
                             const schnell_conv2d_shape *shape);
// The reference for the bf16 path: x rounded to bf16, then schnell_conv2d_reference.
int schnell_conv2d_bf16_reference(const float *x, const uint16_t *weight, const void *bias,
                                  int bias_dtype, float *y, const schnell_conv2d_shape *shape);

// Group norm over x[C, spatial] with C divisible by groups: each group of C / groups channels is
// normalised by its own mean and variance, then y = norm * weight[c] + bias[c] (either may be
// NULL), then SiLU when `silu` is nonzero.
void schnell_group_norm(const float *x, float *y, size_t channels, size_t spatial, size_t groups,
                        float eps, const float *weight, const float *bias, int silu);
void schnell_group_norm_reference(const float *x, float *y, size_t channels, size_t spatial,
                                  size_t groups, float eps, const float *weight, const float *bias,
                                  int silu);

// Nearest-neighbour x2: x[C, H, W] -> y[C, 2H, 2W].
void schnell_upsample_nearest2x(const float *x, float *y, size_t channels, size_t height,
                                size_t width);
void schnell_upsample_nearest2x_reference(const float *x, float *y, size_t channels,
                                          size_t height, size_t width);

// y[width, rows] = x[rows, width]^T; x rows are x_stride floats apart, y is packed.
// Moves channel-first [C, H * W] data to token-major [H * W, C] and back.
void schnell_transpose(const float *x, size_t x_stride, float *y, size_t rows, size_t width);
void schnell_transpose_reference(const float *x, size_t x_stride, float *y, size_t rows,
                                 size_t width);

#ifdef __cplusplus
}
#endif

#endif
