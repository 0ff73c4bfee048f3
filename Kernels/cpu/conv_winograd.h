// Private to the kernel files: the Winograd F(2x2, 3x3) path of conv_winograd.c, which
// schnell_conv2d takes where it applies.
#ifndef SCHNELL_CONV_WINOGRAD_H
#define SCHNELL_CONV_WINOGRAD_H

#include "gemm_f32.h"
#include "schnell_conv.h"

#include <stddef.h>
#include <stdint.h>

// 3x3, stride 1, padding 1 on every side, even height, width a multiple of 32.
int schnell_winograd_applies(const schnell_conv2d_shape *shape);

// y = conv(x, weight) + bias (bias float32 or NULL), on AVX-512. `bf16`: weight is bf16 and
// the products run on AVX512-BF16 with bf16 operands (then Cin must be even); otherwise weight
// is float32 and so is all arithmetic. Returns 0, or -1 when scratch memory cannot be had.
int schnell_conv2d_winograd(const float *x, const void *weight, int bf16, const float *bias, float *y,
                            const schnell_conv2d_shape *shape);

#endif
