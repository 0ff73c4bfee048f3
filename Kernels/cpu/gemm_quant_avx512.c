// The AVX-512 VNNI micro-kernels of the linear on quantized blocks (gemm_quant.c; layouts there).
//
//   vnni_kernel    6 rows x 32 columns: per block of 32 values and 16-column vector, 6 int32
//                  accumulators, 8 vpdpbusd each, A's 4 bytes (q + 128, unsigned) broadcast from
//                  memory against 4 signed weight bytes per column; the accumulator starts from
//                  -128 sum(q_w), which undoes the +128. Then cvt, x (d_w * d_x), add to the float32
//                  accumulators, which stay in registers across the k block. Measured on Zen 4 at
//                  about 1.4x the native bf16 GEMM (gemm_bf16.c); a 6 x 64 tile with the columns in
//                  a loop spilled its broadcasts and ran at 0.6 of this rate.
//   vnni16_kernel  the same tile for Q3_K / Q6_K's int16 weights: int16 A pairs and vpdpwssd, 16
//                  steps a block.
#include "gemm_quant.h"

// y[0:mr, 0:columns] (+)= a[0:mr, blocks] . panel; a is q + 128 (u8), rows k bytes apart.
// With offsets (not NULL), each block also adds offsets[column] * sums[row] (m times the sum of
// the row's activations in the block), and with low_offsets low_offsets[column] * low_sums[row].
SCHNELL_TARGET_VNNI SCHNELL_INLINE void vnni_kernel(int mr, const uint8_t *a, size_t k, const float *ad,
                                                    size_t ad_stride, const uint32_t *words,
                                                    const float *scales, const int32_t *corrections,
                                                    const float *offsets, const float *sums,
                                                    const float *low_offsets, const float *low_sums,
                                                    size_t blocks, const float *bias, int first, float *y,
                                                    size_t y_stride, size_t columns) {
    __m512 acc[VNNI_MR][VNNI_NV];
#pragma clang loop unroll(full)
    for (int r = 0; r < mr; r++) {
#pragma clang loop unroll(full)
        for (int v = 0; v < VNNI_NV; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (size_t b = 0; b < blocks; b++) {
        const uint32_t *block_words = words + b * (QK / 4) * VNNI_NR;
        __m512i dot[VNNI_MR][VNNI_NV];
#pragma clang loop unroll(full)
        for (int v = 0; v < VNNI_NV; v++) {
            __m512i correction = _mm512_load_si512(corrections + b * VNNI_NR + 16 * v);
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) dot[r][v] = correction;
        }
#pragma clang loop unroll(disable)
        for (int s = 0; s < QK / 4; s++) {
            __m512i w0 = _mm512_load_si512(block_words + s * VNNI_NR);
            __m512i w1 = _mm512_load_si512(block_words + s * VNNI_NR + 16);
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                int32_t word;
                memcpy(&word, a + r * k + b * QK + 4 * s, 4);
                __m512i x = _mm512_set1_epi32(word);
                dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], x, w0);
                dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], x, w1);
            }
        }
        __m512 dw0 = _mm512_load_ps(scales + b * VNNI_NR), dw1 = _mm512_load_ps(scales + b * VNNI_NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < mr; r++) {
            __m512 dx = _mm512_set1_ps(ad[r * ad_stride + b]);
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][0]), _mm512_mul_ps(dw0, dx), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][1]), _mm512_mul_ps(dw1, dx), acc[r][1]);
        }
        if (offsets) {
            __m512 m0 = _mm512_load_ps(offsets + b * VNNI_NR), m1 = _mm512_load_ps(offsets + b * VNNI_NR + 16);
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                __m512 sum = _mm512_set1_ps(sums[r * ad_stride + b]);
                acc[r][0] = _mm512_fmadd_ps(m0, sum, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(m1, sum, acc[r][1]);
            }
        }
        if (low_offsets) {
            __m512 m0 = _mm512_load_ps(low_offsets + b * VNNI_NR), m1 = _mm512_load_ps(low_offsets + b * VNNI_NR + 16);
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                __m512 sum = _mm512_set1_ps(low_sums[r * ad_stride + b]);
                acc[r][0] = _mm512_fmadd_ps(m0, sum, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(m1, sum, acc[r][1]);
            }
        }
    }
    for (int v = 0; v < VNNI_NV; v++) {
        size_t lo = (size_t)v * 16;
        if (columns <= lo) break;
        __mmask16 mask = columns >= lo + 16 ? 0xffff : (__mmask16)((1u << (columns - lo)) - 1);
        __m512 start = first && bias ? _mm512_maskz_loadu_ps(mask, bias + lo) : _mm512_setzero_ps();
        for (int r = 0; r < mr; r++) {
            float *out = y + r * y_stride + lo;
            __m512 base = first ? start : _mm512_maskz_loadu_ps(mask, out);
            _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(base, acc[r][v]));
        }
    }
}

#define VNNI_KERNEL(rows)                                                                          \
    SCHNELL_TARGET_VNNI static void vnni_kernel_##rows(                                           \
        const uint8_t *a, size_t k, const float *ad, size_t ad_stride, const uint32_t *words,      \
        const float *scales, const int32_t *corrections, const float *offsets, const float *sums,  \
        const float *low_offsets, const float *low_sums, size_t blocks, const float *bias,         \
        int first, float *y, size_t y_stride, size_t columns) {                                    \
        vnni_kernel(rows, a, k, ad, ad_stride, words, scales, corrections, offsets, sums,          \
                    low_offsets, low_sums, blocks, bias, first, y, y_stride, columns);             \
    }
VNNI_KERNEL(1)
VNNI_KERNEL(2)
VNNI_KERNEL(3)
VNNI_KERNEL(4)
VNNI_KERNEL(5)
VNNI_KERNEL(6)

const schnell_quant_kernel schnell_quant_vnni_kernels[VNNI_MR + 1] = {
    NULL, vnni_kernel_1, vnni_kernel_2, vnni_kernel_3, vnni_kernel_4, vnni_kernel_5, vnni_kernel_6};

// The int16 weights of Q3_K and Q6_K at the VNNI tier: the same tile with a widened to int16 pairs
// (rows k values apart) and vpdpwssd (int16 x int16 pairs to int32), 16 steps a block, no
// correction. Half vpdpbusd's products per instruction, twice the AVX2 kernel's per cycle.
SCHNELL_TARGET_VNNI SCHNELL_INLINE void vnni16_kernel(int mr, const uint8_t *a, size_t k, const float *ad,
                                                      size_t ad_stride, const uint32_t *words,
                                                      const float *scales, size_t blocks, const float *bias,
                                                      int first, float *y, size_t y_stride, size_t columns) {
    const int16_t *a16 = (const int16_t *)a;
    __m512 acc[VNNI_MR][VNNI_NV];
#pragma clang loop unroll(full)
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t b = 0; b < blocks; b++) {
        const uint32_t *block_words = words + b * (QK / 2) * VNNI_NR;
        __m512i dot[VNNI_MR][VNNI_NV];
#pragma clang loop unroll(full)
        for (int r = 0; r < mr; r++) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
#pragma clang loop unroll(disable)
        for (int s = 0; s < QK / 2; s++) {
            __m512i w0 = _mm512_load_si512(block_words + s * VNNI_NR);
            __m512i w1 = _mm512_load_si512(block_words + s * VNNI_NR + 16);
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                int32_t word;
                memcpy(&word, a16 + r * k + b * QK + 2 * s, 4);
                __m512i x = _mm512_set1_epi32(word);
                dot[r][0] = _mm512_dpwssd_epi32(dot[r][0], x, w0);
                dot[r][1] = _mm512_dpwssd_epi32(dot[r][1], x, w1);
            }
        }
        __m512 dw0 = _mm512_load_ps(scales + b * VNNI_NR), dw1 = _mm512_load_ps(scales + b * VNNI_NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < mr; r++) {
            __m512 dx = _mm512_set1_ps(ad[r * ad_stride + b]);
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][0]), _mm512_mul_ps(dw0, dx), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][1]), _mm512_mul_ps(dw1, dx), acc[r][1]);
        }
    }
    for (int v = 0; v < VNNI_NV; v++) {
        size_t lo = (size_t)v * 16;
        if (columns <= lo) break;
        __mmask16 mask = columns >= lo + 16 ? 0xffff : (__mmask16)((1u << (columns - lo)) - 1);
        __m512 start = first && bias ? _mm512_maskz_loadu_ps(mask, bias + lo) : _mm512_setzero_ps();
        for (int r = 0; r < mr; r++) {
            float *out = y + r * y_stride + lo;
            __m512 base = first ? start : _mm512_maskz_loadu_ps(mask, out);
            _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(base, acc[r][v]));
        }
    }
}

// Q3_K and Q6_K have no offsets: those arguments are unused.
#define VNNI16_KERNEL(rows)                                                                        \
    SCHNELL_TARGET_VNNI static void vnni16_kernel_##rows(                                         \
        const uint8_t *a, size_t k, const float *ad, size_t ad_stride, const uint32_t *words,      \
        const float *scales, const int32_t *corrections, const float *offsets, const float *sums,  \
        const float *low_offsets, const float *low_sums, size_t blocks, const float *bias,         \
        int first, float *y, size_t y_stride, size_t columns) {                                    \
        (void)corrections, (void)offsets, (void)sums, (void)low_offsets, (void)low_sums;           \
        vnni16_kernel(rows, a, k, ad, ad_stride, words, scales, blocks, bias, first, y, y_stride,  \
                      columns);                                                                    \
    }
VNNI16_KERNEL(1)
VNNI16_KERNEL(2)
VNNI16_KERNEL(3)
VNNI16_KERNEL(4)
VNNI16_KERNEL(5)
VNNI16_KERNEL(6)

const schnell_quant_kernel schnell_quant_vnni16_kernels[VNNI_MR + 1] = {
    NULL, vnni16_kernel_1, vnni16_kernel_2, vnni16_kernel_3, vnni16_kernel_4, vnni16_kernel_5, vnni16_kernel_6};
