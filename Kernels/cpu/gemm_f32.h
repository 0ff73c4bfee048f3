// Private to the kernel files: the float32 GEMM micro-kernels shared by the convolutions
// (conv_gemm.c, conv_winograd.c) and the linear layers, one set per vector tier.
//
// Every micro-kernel computes y[0:mr, 0:columns] (+)= a[0:mr, 0:kc] . bp[0:kc, 0:NR]:
//   a        mr rows of float32, lda apart, read by broadcasting one value at a time
//   bp       a packed panel of NR columns: bp[k][c], NR floats per k, aligned to 32 bytes
//   first    nonzero: start from the row bias (bias[r], or zero when bias is NULL);
//            zero: add to what y holds
//   columns  valid columns of the panel (1...NR); the rest are neither read nor written
#ifndef SCHNELL_GEMM_F32_H
#define SCHNELL_GEMM_F32_H

#include <stddef.h>

typedef void (*schnell_f32_micro_kernel)(const float *a, size_t lda, const float *bp, size_t kc,
                                         const float *bias, int first, float *y, size_t y_stride,
                                         size_t columns);

enum {
    SCHNELL_F32_MR = 6,         // rows of a micro-kernel call, both tiers
    SCHNELL_AVX512_F32_NR = 64, // 6 x 64: 24 zmm accumulators, 4 loads of B and 6 broadcasts per k
    SCHNELL_AVX2_F32_NR = 16,   // 6 x 16: 12 ymm accumulators, 2 loads of B and 6 broadcasts per k
};

// Indexed by mr, 1...SCHNELL_F32_MR (entry 0 is NULL).
extern const schnell_f32_micro_kernel schnell_f32_micro_kernels[SCHNELL_F32_MR + 1];       // AVX-512
extern const schnell_f32_micro_kernel schnell_f32_micro_kernels_avx2[SCHNELL_F32_MR + 1];  // AVX2+FMA

#endif
