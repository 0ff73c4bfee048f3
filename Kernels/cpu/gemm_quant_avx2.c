// The AVX2 micro-kernels of the linear on quantized blocks (gemm_quant.c; layouts there), 6 rows x
// 16 columns with the float32 accumulators in registers across the k block.
//
//   avx2_kernel    int16 A and weights: vpmaddwd + vpaddd per pair of k. For Q8_0, Q2_K, Q3_K,
//                  Q6_K. (Int8 with vpsignb / vpmaddubsw / vpmaddwd needs twice the multiply-pipe
//                  operations per product and ran at about half this rate on Zen 4.)
//   nibble_kernel  the 4- and 5-bit types: u8 weights (q, or q + 8 / q + 16 for Q4_0 / Q5_0, the
//                  shift taken back through the offset) x int8 A with vpmaddubsw, summed in int16
//                  over runs of steps that cannot overflow, then one vpmaddwd by 1: half the
//                  operations of avx2_kernel.
#include "gemm_quant.h"

// y[0:mr, 0:columns] (+)= a[0:mr, blocks] . panel; a is q widened to int16, rows k values apart,
// and the panel holds int16 pairs: vpmaddwd multiplies and adds each pair to int32 exactly.
// acc[r] += offsets * sums[r * ad_stride] for each row: a block's offsets (its m per column) times
// each activation row's block sum (d_x * sum(q_x)).
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void add_offsets(__m256 acc[][2], int mr, const float *offsets, const float *sums,
                                                  size_t ad_stride) {
    __m256 m0 = _mm256_load_ps(offsets), m1 = _mm256_load_ps(offsets + 8);
#pragma clang loop unroll(full)
    for (int r = 0; r < mr; r++) {
        __m256 sum = _mm256_broadcast_ss(sums + r * ad_stride);
        acc[r][0] = _mm256_fmadd_ps(m0, sum, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(m1, sum, acc[r][1]);
    }
}

// y[0:mr, 0:columns] = acc (+ bias, or + y when not the first k block).
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void store_tile(__m256 acc[][2], int mr, int first, const float *bias, float *y,
                                                 size_t y_stride, size_t columns) {
    for (int r = 0; r < mr; r++) {
        float row[AVX2_NR];
        _mm256_storeu_ps(row, acc[r][0]);
        _mm256_storeu_ps(row + 8, acc[r][1]);
        float *out = y + r * y_stride;
        for (size_t c = 0; c < columns; c++) {
            out[c] = (first ? (bias ? bias[c] : 0.0f) : out[c]) + row[c];
        }
    }
}

SCHNELL_TARGET_AVX2 SCHNELL_INLINE void avx2_kernel(int mr, const uint8_t *a, size_t k, const float *ad,
                                                    size_t ad_stride, const uint32_t *words,
                                                    const float *scales, const float *offsets,
                                                    const float *sums, const float *low_offsets,
                                                    const float *low_sums, size_t blocks, const float *bias,
                                                    int first, float *y, size_t y_stride, size_t columns) {
    const int16_t *a16 = (const int16_t *)a;
    __m256 acc[AVX2_MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t b = 0; b < blocks; b++) {
        const uint32_t *block_words = words + b * (QK / 2) * AVX2_NR;
        __m256i dot[AVX2_MR][2];
#pragma clang loop unroll(full)
        for (int r = 0; r < mr; r++) dot[r][0] = dot[r][1] = _mm256_setzero_si256();
#pragma clang loop unroll(disable)
        for (int s = 0; s < QK / 2; s++) {
            __m256i w0 = _mm256_load_si256((const __m256i *)(block_words + s * AVX2_NR));
            __m256i w1 = _mm256_load_si256((const __m256i *)(block_words + s * AVX2_NR + 8));
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                int32_t word;
                memcpy(&word, a16 + r * k + b * QK + 2 * s, 4);
                __m256i x = _mm256_set1_epi32(word);
                dot[r][0] = _mm256_add_epi32(dot[r][0], _mm256_madd_epi16(x, w0));
                dot[r][1] = _mm256_add_epi32(dot[r][1], _mm256_madd_epi16(x, w1));
            }
        }
        __m256 dw0 = _mm256_load_ps(scales + b * AVX2_NR), dw1 = _mm256_load_ps(scales + b * AVX2_NR + 8);
#pragma clang loop unroll(full)
        for (int r = 0; r < mr; r++) {
            __m256 dx = _mm256_broadcast_ss(ad + r * ad_stride + b);
            acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r][0]), _mm256_mul_ps(dw0, dx), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r][1]), _mm256_mul_ps(dw1, dx), acc[r][1]);
        }
        if (offsets) {
            add_offsets(acc, mr, offsets + b * AVX2_NR, sums + b, ad_stride);
        }
        if (low_offsets) {
            add_offsets(acc, mr, low_offsets + b * AVX2_NR, low_sums + b, ad_stride);
        }
    }
    store_tile(acc, mr, first, bias, y, y_stride, columns);
}

#define AVX2_KERNEL(rows)                                                                          \
    SCHNELL_TARGET_AVX2 static void avx2_kernel_##rows(                                           \
        const uint8_t *a, size_t k, const float *ad, size_t ad_stride, const uint32_t *words,      \
        const float *scales, const int32_t *corrections, const float *offsets, const float *sums,  \
        const float *low_offsets, const float *low_sums, size_t blocks, const float *bias,         \
        int first, float *y, size_t y_stride, size_t columns) {                                    \
        (void)corrections;                                                                         \
        avx2_kernel(rows, a, k, ad, ad_stride, words, scales, offsets, sums, low_offsets,          \
                    low_sums, blocks, bias, first, y, y_stride, columns);                          \
    }
AVX2_KERNEL(1)
AVX2_KERNEL(2)
AVX2_KERNEL(3)
AVX2_KERNEL(4)
AVX2_KERNEL(5)
AVX2_KERNEL(6)

const schnell_quant_kernel schnell_quant_avx2_kernels[AVX2_MR + 1] = {
    NULL, avx2_kernel_1, avx2_kernel_2, avx2_kernel_3, avx2_kernel_4, avx2_kernel_5, avx2_kernel_6};

// The 4-bit types (Q4_0 shifted to 0 ... 15, Q4_1, Q4_K) on AVX2: u8 weights times the signed
// int8 activations with vpmaddubsw (15 x 127 x 2 = 3,810 a pair), `run` (8) steps summed in
// int16 (30,480 < 32,767) before one vpmaddwd by 1: two operations per 32 products where the
// int16 kernel needs four. The 5-bit types (31 x 127 x 2 = 7,874 a pair) take runs of 4 steps,
// each run converted and scaled on its own. a is signed q, rows k bytes apart; words are 4 u8
// weights, 8 steps a block.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void nibble_kernel(int mr, int run, const uint8_t *a, size_t k, const float *ad,
                                                      size_t ad_stride, const uint32_t *words,
                                                      const float *scales, const float *offsets,
                                                      const float *sums, size_t blocks, const float *bias,
                                                      int first, float *y, size_t y_stride, size_t columns) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[AVX2_MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t b = 0; b < blocks; b++) {
        const uint32_t *block_words = words + b * (QK / 4) * AVX2_NR;
        __m256 dw0 = _mm256_load_ps(scales + b * AVX2_NR), dw1 = _mm256_load_ps(scales + b * AVX2_NR + 8);
        for (int start = 0; start < QK / 4; start += run) {
            __m256i dot[AVX2_MR][2];
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) dot[r][0] = dot[r][1] = _mm256_setzero_si256();
#pragma clang loop unroll(disable)
            for (int s = start; s < start + run; s++) {
                __m256i w0 = _mm256_load_si256((const __m256i *)(block_words + s * AVX2_NR));
                __m256i w1 = _mm256_load_si256((const __m256i *)(block_words + s * AVX2_NR + 8));
#pragma clang loop unroll(full)
                for (int r = 0; r < mr; r++) {
                    int32_t word;
                    memcpy(&word, a + r * k + b * QK + 4 * s, 4);
                    __m256i x = _mm256_set1_epi32(word);
                    dot[r][0] = _mm256_add_epi16(dot[r][0], _mm256_maddubs_epi16(w0, x));
                    dot[r][1] = _mm256_add_epi16(dot[r][1], _mm256_maddubs_epi16(w1, x));
                }
            }
#pragma clang loop unroll(full)
            for (int r = 0; r < mr; r++) {
                __m256 dx = _mm256_broadcast_ss(ad + r * ad_stride + b);
                __m256 p0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot[r][0], ones));
                __m256 p1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot[r][1], ones));
                acc[r][0] = _mm256_fmadd_ps(p0, _mm256_mul_ps(dw0, dx), acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(p1, _mm256_mul_ps(dw1, dx), acc[r][1]);
            }
        }
        add_offsets(acc, mr, offsets + b * AVX2_NR, sums + b, ad_stride);
    }
    store_tile(acc, mr, first, bias, y, y_stride, columns);
}

// Every nibble type has an offset (Q4_0's and Q5_0's come from the shift); none has low offsets.
#define NIBBLE_KERNEL(rows, run, name)                                                             \
    SCHNELL_TARGET_AVX2 static void name##_##rows(                                                \
        const uint8_t *a, size_t k, const float *ad, size_t ad_stride, const uint32_t *words,      \
        const float *scales, const int32_t *corrections, const float *offsets, const float *sums,  \
        const float *low_offsets, const float *low_sums, size_t blocks, const float *bias,         \
        int first, float *y, size_t y_stride, size_t columns) {                                    \
        (void)corrections, (void)low_offsets, (void)low_sums;                                      \
        nibble_kernel(rows, run, a, k, ad, ad_stride, words, scales, offsets, sums, blocks, bias,  \
                      first, y, y_stride, columns);                                                \
    }
NIBBLE_KERNEL(1, 8, nibble_kernel)
NIBBLE_KERNEL(2, 8, nibble_kernel)
NIBBLE_KERNEL(3, 8, nibble_kernel)
NIBBLE_KERNEL(4, 8, nibble_kernel)
NIBBLE_KERNEL(5, 8, nibble_kernel)
NIBBLE_KERNEL(6, 8, nibble_kernel)
NIBBLE_KERNEL(1, 4, five_bit_kernel)
NIBBLE_KERNEL(2, 4, five_bit_kernel)
NIBBLE_KERNEL(3, 4, five_bit_kernel)
NIBBLE_KERNEL(4, 4, five_bit_kernel)
NIBBLE_KERNEL(5, 4, five_bit_kernel)
NIBBLE_KERNEL(6, 4, five_bit_kernel)

const schnell_quant_kernel schnell_quant_nibble_kernels[AVX2_MR + 1] = {
    NULL, nibble_kernel_1, nibble_kernel_2, nibble_kernel_3, nibble_kernel_4, nibble_kernel_5, nibble_kernel_6};
const schnell_quant_kernel schnell_quant_five_bit_kernels[AVX2_MR + 1] = {
    NULL, five_bit_kernel_1, five_bit_kernel_2, five_bit_kernel_3, five_bit_kernel_4, five_bit_kernel_5,
    five_bit_kernel_6};
