// Private to the kernel files: the AVX512-BF16 micro-kernels of gemm_bf16.c, shared with the
// convolutions of conv_gemm.c.
#ifndef SCHNELL_GEMM_BF16_H
#define SCHNELL_GEMM_BF16_H

#include <immintrin.h>

#include "dispatch.h"

#define SCHNELL_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

// Rows and columns of one micro-kernel call.
enum { SCHNELL_BF16_MR = 6, SCHNELL_BF16_NR = 64 };

// y[0:mr, 0:columns] (+)= a[0:mr, pairs] . bp[pairs, 0:64], fp32 accumulation.
//   a        mr rows of bf16 (k even, k odd) pairs, rows kp values apart
//   next_a   the next micro-panel of a, prefetched while this one runs (or NULL)
//   bp       a 64-column panel in the pair layout: [pair][column] words (w[2p], w[2p + 1])
//   first    nonzero: start from bias[0:64] (or zero when bias is NULL); zero: add to y
//   columns  valid columns of the panel (1...64); the rest are neither read nor written
typedef void (*schnell_bf16_micro_kernel)(const uint16_t *a, size_t kp, const uint16_t *next_a,
                                          const uint32_t *bp, size_t pairs, const float *bias,
                                          int first, float *y, size_t y_stride, size_t columns);

// a[0:kp] = bf16(x[0:k]) rounded to nearest even (NaN kept quiet), zero from k to kp.
SCHNELL_TARGET_BF16 void schnell_bf16_round_row(const float *x, size_t k, uint16_t *a, size_t kp);

// Up to 256 rows of w [n, k] (from row n0), `pairs` pairs of k from k0, in the micro-kernel's
// B layout: bp[panel][p][c] = (w[n0 + 64 panel + c][k0 + 2p], w[...][k0 + 2p + 1]), zero past
// n, past k and in the odd k's partner.
SCHNELL_TARGET_BF16 void schnell_bf16_pack_block(const uint16_t *w, size_t k, size_t n, size_t n0,
                                                 size_t k0, size_t pairs, uint32_t *bp);

// Indexed by mr, 1...SCHNELL_BF16_MR (entry 0 is NULL).
extern const schnell_bf16_micro_kernel schnell_bf16_micro_kernels[SCHNELL_BF16_MR + 1];

#endif
