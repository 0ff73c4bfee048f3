// Private to the kernel files: the Winograd F(2x2, 3x3) path of conv_winograd.c, which
// schnell_conv2d takes for bf16 activations where it applies.
#ifndef SCHNELL_CONV_WINOGRAD_H
#define SCHNELL_CONV_WINOGRAD_H

#include "schnell_conv.h"

// 3x3, stride 1, padding 1 on every side, even height, width a multiple of 32, even Cin.
int schnell_winograd_applies(const schnell_conv2d_shape *shape);

// y = conv(x, weight) + bias (bias float32 or NULL) with bf16 operands; needs AVX512-BF16.
// Returns 0, or -1 when scratch memory cannot be had.
int schnell_conv2d_winograd_bf16(const float *x, const uint16_t *weight, const float *bias, float *y,
                                 const schnell_conv2d_shape *shape);

#endif
