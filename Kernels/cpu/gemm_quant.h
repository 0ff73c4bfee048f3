// Private to gemm_quant*.c: the linear on quantized blocks' micro-kernels, one file per tier.
#ifndef SCHNELL_GEMM_QUANT_H
#define SCHNELL_GEMM_QUANT_H

#include <immintrin.h>

#include "dispatch.h"

#define SCHNELL_TARGET_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

// QK values a block; NC columns a work item; KB blocks of k packed at a time.
enum { QK = 32, NC = 256, KB = 32 };
enum { VNNI_MR = 6, VNNI_NV = 2, VNNI_NR = 16 * VNNI_NV, AVX2_MR = 6, AVX2_NR = 16 };

// y[0:mr, 0:columns] (+)= a[0:mr, blocks] . panel, one call per micro-tile and k block:
//   a, k          mr rows of quantized activations (in the kernel's form), rows k values apart
//   ad            the rows' block scales d_x, ad_stride apart; sums / low_sums (same stride) the
//                 rows' d_x sum(q_x) over each block / its low 16 values, for the offsets
//   words, scales the packed panel: [block][step][column] words, [block][column] d_w
//                 ([block][half][column] for the halves kernels, as the corrections)
//   corrections   [block][column] -128 sum(q_w) for the VNNI u8 form (else unused)
//   offsets       [block][column] m (NULL: none); low_offsets the low 16 values' extra m
//   first         nonzero: start from bias[0:columns] (or zero when bias is NULL); zero: add to y
//   columns       valid columns of the panel; the rest are neither read nor written
typedef void (*schnell_quant_kernel)(const uint8_t *a, size_t k, const float *ad, size_t ad_stride,
                                     const uint32_t *words, const float *scales, const int32_t *corrections,
                                     const float *offsets, const float *sums, const float *low_offsets,
                                     const float *low_sums, size_t blocks, const float *bias, int first,
                                     float *y, size_t y_stride, size_t columns);

// Indexed by mr, 1...6 (entry 0 is NULL).
extern const schnell_quant_kernel schnell_quant_vnni_kernels[VNNI_MR + 1];      // u8 A, vpdpbusd
extern const schnell_quant_kernel schnell_quant_vnni_halves_kernels[VNNI_MR + 1];  // scale per 16
extern const schnell_quant_kernel schnell_quant_avx2_kernels[AVX2_MR + 1];      // int16, vpmaddwd
extern const schnell_quant_kernel schnell_quant_nibble_kernels[AVX2_MR + 1];    // 4-bit, vpmaddubsw
extern const schnell_quant_kernel schnell_quant_five_bit_kernels[AVX2_MR + 1];  // 5-bit, vpmaddubsw

#endif
