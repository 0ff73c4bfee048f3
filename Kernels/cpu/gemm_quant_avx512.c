// The AVX-512 VNNI micro-kernels of the linear on quantized blocks (gemm_quant.c; layouts there).
//
//   vnni_kernel    6 rows x 32 columns: per block of 32 values and 16-column vector, 6 int32
//                  accumulators, 8 vpdpbusd each, A's 4 bytes (q + 128, unsigned) broadcast from
//                  memory against 4 signed weight bytes per column; the accumulator starts from
//                  -128 sum(q_w), which undoes the +128. Then cvt, x (d_w * d_x), add to the float32
//                  accumulators, which stay in registers across the k block. Measured on Zen 4 at
//                  about 1.4x the native bf16 GEMM (gemm_bf16.c); a 6 x 64 tile with the columns in
//                  a loop spilled its broadcasts and ran at 0.6 of this rate.
//   vnni_halves_kernel  the same tile for Q3_K / Q6_K, whose scales are per 16 values: int8 q
//                  and a scale and correction per half block (about 1.2x bf16 where int16 weights
//                  with vpdpwssd, half the products per instruction, ran at 0.7x).
#include "gemm_quant.h"

// y[0:mr, 0:columns] (+)= a[0:mr, blocks] . panel; a is q + 128 (u8), rows k bytes apart.
// With offsets (not NULL), each block also adds offsets[column] * sums[row] (m times the sum of
// the row's activations in the block), and with low_offsets low_offsets[column] * low_sums[row].
// sub: scale sub-blocks per block (2 for Q3_K / Q6_K, whose scales and corrections are then per
// 16 values: [block][half][column]); the offsets are only used with sub = 1.
SCHNELL_TARGET_VNNI SCHNELL_INLINE void vnni_kernel(int mr, int sub, const uint8_t *a, size_t k, const float *ad,
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
    const int steps = QK / 4 / sub;  // of 4 values per scale sub-block
    for (size_t b = 0; b < blocks; b++) {
        for (int h = 0; h < sub; h++) {
            size_t part = b * (size_t)sub + (size_t)h;
            const uint32_t *part_words = words + part * (size_t)steps * VNNI_NR;
            const uint8_t *part_a = a + b * QK + (size_t)h * (QK / sub);
            __m512i dot[VNNI_MR][VNNI_NV];
#pragma clang loop unroll(full)
            for (int v = 0; v < VNNI_NV; v++) {
                __m512i correction = _mm512_load_si512(corrections + part * VNNI_NR + 16 * v);
#pragma clang loop unroll(full)
                for (int r = 0; r < mr; r++) dot[r][v] = correction;
            }
#pragma clang loop unroll(disable)
            for (int s = 0; s < steps; s++) {
                __m512i w0 = _mm512_load_si512(part_words + s * VNNI_NR);
                __m512i w1 = _mm512_load_si512(part_words + s * VNNI_NR + 16);
#pragma clang loop unroll(full)
                for (int r = 0; r < mr; r++) {
                    int32_t word;
                    memcpy(&word, part_a + r * k + 4 * s, 4);
                    __m512i x = _mm512_set1_epi32(word);
                    dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], x, w0);
                    dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], x, w1);
                }
            }
            __m512 dw0 = _mm512_load_ps(scales + part * VNNI_NR), dw1 = _mm512_load_ps(scales + part * VNNI_NR + 16);
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                __m512 dx = _mm512_set1_ps(ad[r * ad_stride + b]);
                acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][0]), _mm512_mul_ps(dw0, dx), acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][1]), _mm512_mul_ps(dw1, dx), acc[r][1]);
            }
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

#define VNNI_KERNEL(rows, sub, name)                                                               \
    SCHNELL_TARGET_VNNI static void name##_##rows(                                                \
        const uint8_t *a, size_t k, const float *ad, size_t ad_stride, const uint32_t *words,      \
        const float *scales, const int32_t *corrections, const float *offsets, const float *sums,  \
        const float *low_offsets, const float *low_sums, size_t blocks, const float *bias,         \
        int first, float *y, size_t y_stride, size_t columns) {                                    \
        vnni_kernel(rows, sub, a, k, ad, ad_stride, words, scales, corrections, offsets, sums,     \
                    low_offsets, low_sums, blocks, bias, first, y, y_stride, columns);             \
    }
VNNI_KERNEL(1, 1, vnni_kernel)
VNNI_KERNEL(2, 1, vnni_kernel)
VNNI_KERNEL(3, 1, vnni_kernel)
VNNI_KERNEL(4, 1, vnni_kernel)
VNNI_KERNEL(5, 1, vnni_kernel)
VNNI_KERNEL(6, 1, vnni_kernel)
VNNI_KERNEL(1, 2, vnni_halves_kernel)
VNNI_KERNEL(2, 2, vnni_halves_kernel)
VNNI_KERNEL(3, 2, vnni_halves_kernel)
VNNI_KERNEL(4, 2, vnni_halves_kernel)
VNNI_KERNEL(5, 2, vnni_halves_kernel)
VNNI_KERNEL(6, 2, vnni_halves_kernel)

const schnell_quant_kernel schnell_quant_vnni_kernels[VNNI_MR + 1] = {
    NULL, vnni_kernel_1, vnni_kernel_2, vnni_kernel_3, vnni_kernel_4, vnni_kernel_5, vnni_kernel_6};
const schnell_quant_kernel schnell_quant_vnni_halves_kernels[VNNI_MR + 1] = {
    NULL,           vnni_halves_kernel_1, vnni_halves_kernel_2, vnni_halves_kernel_3, vnni_halves_kernel_4,
    vnni_halves_kernel_5, vnni_halves_kernel_6};

