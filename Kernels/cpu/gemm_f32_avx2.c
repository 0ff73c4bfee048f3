// The AVX2+FMA float32 micro-kernel (gemm_f32.h): 6 rows x 16 columns.
//
// Sixteen ymm registers: 12 accumulators (6 rows x 2 vectors of 8), 2 for the row of B and one
// for the broadcast of a. Per k: 2 loads of B, 6 broadcasts and 12 FMAs, so the two FMA pipes
// of Zen 3 or Alder Lake set the pace (6 cycles) and the loads (8 in 4 cycles) keep up. A
// 16-column panel is 64 bytes per k: one cache line, streamed through L1 in order.
#include <immintrin.h>

#include "dispatch.h"
#include "gemm_f32.h"

enum { MR = SCHNELL_F32_MR, NR = SCHNELL_AVX2_F32_NR };

// Lanes of the two column vectors that lie below `columns`, as maskload/maskstore masks.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void column_masks(size_t columns, __m256i mask[2]) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i count = _mm256_set1_epi32((int)columns);
    mask[0] = _mm256_cmpgt_epi32(count, lanes);
    mask[1] = _mm256_cmpgt_epi32(count, _mm256_add_epi32(lanes, _mm256_set1_epi32(8)));
}

SCHNELL_TARGET_AVX2 SCHNELL_INLINE void micro_kernel(int mr, const float *a, size_t lda, const float *bp, size_t kc,
                                                   const float *bias, int first, float *y, size_t y_stride,
                                                   size_t columns) {
    __m256 acc[MR][2];
    __m256i mask[2];
    int full = columns >= NR;
    column_masks(columns, mask);
    for (int r = 0; r < mr; r++) {
        if (first) {
            acc[r][0] = acc[r][1] = _mm256_set1_ps(bias ? bias[r] : 0.0f);
        } else if (full) {
            acc[r][0] = _mm256_loadu_ps(y + r * y_stride);
            acc[r][1] = _mm256_loadu_ps(y + r * y_stride + 8);
        } else {
            acc[r][0] = _mm256_maskload_ps(y + r * y_stride, mask[0]);
            acc[r][1] = _mm256_maskload_ps(y + r * y_stride + 8, mask[1]);
        }
    }
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp + k * NR), b1 = _mm256_load_ps(bp + k * NR + 8);
        for (int r = 0; r < mr; r++) {
            __m256 broadcast = _mm256_broadcast_ss(a + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(broadcast, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(broadcast, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < mr; r++) {
        if (full) {
            _mm256_storeu_ps(y + r * y_stride, acc[r][0]);
            _mm256_storeu_ps(y + r * y_stride + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(y + r * y_stride, mask[0], acc[r][0]);
            _mm256_maskstore_ps(y + r * y_stride + 8, mask[1], acc[r][1]);
        }
    }
}

#define KERNEL_WITH_ROWS(rows)                                                                    \
    SCHNELL_TARGET_AVX2 static void micro_kernel_##rows(const float *a, size_t lda, const float *bp, \
                                                        size_t kc, const float *bias, int first,   \
                                                        float *y, size_t y_stride, size_t columns) { \
        micro_kernel(rows, a, lda, bp, kc, bias, first, y, y_stride, columns);                   \
    }
KERNEL_WITH_ROWS(1)
KERNEL_WITH_ROWS(2)
KERNEL_WITH_ROWS(3)
KERNEL_WITH_ROWS(4)
KERNEL_WITH_ROWS(5)
KERNEL_WITH_ROWS(6)

const schnell_f32_micro_kernel schnell_f32_micro_kernels_avx2[MR + 1] = {
    NULL, micro_kernel_1, micro_kernel_2, micro_kernel_3, micro_kernel_4, micro_kernel_5, micro_kernel_6,
};
