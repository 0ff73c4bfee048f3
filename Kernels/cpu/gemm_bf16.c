// Linear layers with bf16 weights on AVX512-BF16: y = bf16(x) . w^T (+ bias), fp32 accumulation.
//
// Opt-in (SCHNELL_PRECISION_BF16, per call): rounding the activations to bf16 changes results by
// about 2^-9 relative, so float32 parity with PyTorch holds only on the default float32 path.
//
// Layouts
//   A  activations rounded to bf16 (round-to-nearest-even), row-major [rows, kp], kp = k rounded
//      up to even with a zero pad: each row is a run of (k even, k odd) pairs, one 32-bit word
//      per pair, which the micro-kernel broadcasts.
//   B  a block of the weight [n, k] repacked per call into the VNNI pair layout:
//      [panel of 64 columns][pair p][column 0..63][2] bf16, i.e. one 32-bit word
//      (w[col][2p], w[col][2p+1]) per column. Sixteen consecutive words are one zmm operand of
//      vdpbf16ps, so a pair-row of a panel is four vectors. Columns past n and the odd k's
//      partner are zero. The mmapped weight is never copied as a whole: a block is 512 KB.
//
// Blocking (Zen 5: 48 KB L1d, 1 MB L2 per core)
//   work item    = NC (256) output columns x a range of rows; items are spread over the pool
//   k block      = KC (1024) values of k: the packed B block (KC/2 pairs x NC x 4 B = 512 KB)
//                  stays in L2 while each 6-row micro-panel of A (12 KB, in L1) meets its four
//                  64-column panels in turn. Measured ~5 % faster than KC = 512 (half the
//                  reloads of y); 1536 was no faster.
//   micro-kernel = MR (6) rows x NR (64) columns: 24 zmm accumulators, 4 B loads and 6
//                  broadcasts per pair of k (8 x 48 and 12 x 32 measured the same). The first
//                  k block starts from the bias; later ones add to y. Edges: fewer rows take a
//                  narrower kernel, fewer columns a masked store.
//   fewer than MR rows in all: no packing, one dot product per output (few_rows_columns).
#include <pthread.h>
#include <stdlib.h>

#include "gemm_bf16.h"

enum { MR = SCHNELL_BF16_MR, NR = SCHNELL_BF16_NR, NC = 256, KC = 1024 };

// A's (k even, k odd) pairs are read as one word from the uint16_t buffer.
typedef uint32_t __attribute__((may_alias)) pair_word;

static float bf16_value(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float result;
    memcpy(&result, &bits, 4);
    return result;
}

// Allocation-free, so it is also the fallback when a packing buffer cannot be had.
void schnell_linear_bf16_reference(const float *x, size_t rows, size_t k, const uint16_t *weight,
                                   const void *bias, int bias_dtype, size_t n, float *y,
                                   size_t y_stride) {
    size_t bias_element = schnell_dtype_size(bias_dtype);
    for (size_t j = 0; j < n; j++) {
        float b = 0.0f;
        if (bias) schnell_convert_to_f32_reference((const char *)bias + j * bias_element, bias_dtype, &b, 1);
        for (size_t r = 0; r < rows; r++) {
            double sum = 0.0;
            for (size_t i = 0; i < k; i++) {
                uint16_t rounded;
                schnell_f32_to_bf16(&x[r * k + i], &rounded, 1);
                sum += (double)bf16_value(rounded) * bf16_value(weight[j * k + i]);
            }
            y[r * y_stride + j] = (float)sum + b;
        }
    }
}

// ---- activations to bf16 ----

// Sixteen floats (as bits) rounded to bf16 as schnell_f32_to_bf16 does (round to nearest even,
// NaN kept quiet); the bf16 bits are the low 16 of each lane, the high 16 are garbage.
SCHNELL_TARGET_BF16 SCHNELL_INLINE __m512i round_bits(__m512i bits) {
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
}

SCHNELL_TARGET_BF16 void schnell_bf16_round_row(const float *x, size_t k, uint16_t *a, size_t kp) {
    for (size_t i = 0; i < k; i += 16) {
        size_t left = k - i;
        __mmask16 mask = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        __m512i bits = _mm512_castps_si512(_mm512_maskz_loadu_ps(mask, x + i));
        _mm256_mask_storeu_epi16(a + i, mask, _mm512_cvtepi32_epi16(round_bits(bits)));
    }
    for (size_t i = k; i < kp; i++) a[i] = 0;
}

typedef struct {
    const float *x;
    size_t k, kp;
    uint16_t *a;
} round_job;

static void round_rows(void *context, size_t begin, size_t end) {
    const round_job *job = context;
    for (size_t r = begin; r < end; r++) schnell_bf16_round_row(job->x + r * job->k, job->k, job->a + r * job->kp, job->kp);
}

// ---- weight packing ----

// Sixteen weight rows x sixteen pair words, transposed: destination[j * NR + i] = pair word j of
// row i. Source rows are k values apart; 64 shuffles for 256 words (three stages: 32-bit and
// 64-bit interleaves within 128-bit lanes, then a 4x4 transpose of the lanes).
SCHNELL_TARGET_BF16 static void transpose_tile(const uint16_t *source, size_t k, uint32_t *destination) {
    __m512i r[16], a[16], b[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(source + (size_t)i * k);
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    // b[4g + m], 128-bit lane L: word 4L + m of rows 4g ... 4g + 3.
    for (int g = 0; g < 16; g += 4) {
        b[g] = _mm512_unpacklo_epi64(a[g], a[g + 2]);
        b[g + 1] = _mm512_unpackhi_epi64(a[g], a[g + 2]);
        b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
        b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
    }
    for (int m = 0; m < 4; m++) {
        __m512i c0 = _mm512_shuffle_i32x4(b[m], b[4 + m], 0x44), c1 = _mm512_shuffle_i32x4(b[m], b[4 + m], 0xee);
        __m512i c2 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0x44);
        __m512i c3 = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], 0xee);
        _mm512_store_si512(destination + (size_t)m * NR, _mm512_shuffle_i32x4(c0, c2, 0x88));
        _mm512_store_si512(destination + (size_t)(4 + m) * NR, _mm512_shuffle_i32x4(c0, c2, 0xdd));
        _mm512_store_si512(destination + (size_t)(8 + m) * NR, _mm512_shuffle_i32x4(c1, c3, 0x88));
        _mm512_store_si512(destination + (size_t)(12 + m) * NR, _mm512_shuffle_i32x4(c1, c3, 0xdd));
    }
}

// Whole 16 x 16 tiles transposed in registers, the edges word by word.
SCHNELL_TARGET_BF16 void schnell_bf16_pack_block(const uint16_t *w, size_t k, size_t n, size_t n0, size_t k0,
                              size_t pairs, uint32_t *bp) {
    size_t columns = n - n0 < NC ? n - n0 : NC;
    size_t padded = (columns + NR - 1) / NR * NR;
    size_t full = (k - k0) / 2 < pairs ? (k - k0) / 2 : pairs;
    size_t tiled_columns = columns / 16 * 16, tiled_pairs = full / 16 * 16;
    for (size_t c = 0; c < tiled_columns; c += 16) {
        for (size_t p = 0; p < tiled_pairs; p += 16) {
            transpose_tile(w + (n0 + c) * k + k0 + 2 * p, k, bp + (c / NR) * pairs * NR + p * NR + c % NR);
        }
    }
    for (size_t c = 0; c < padded; c++) {
        uint32_t *destination = bp + (c / NR) * pairs * NR + c % NR;
        size_t first = c < tiled_columns ? tiled_pairs : 0;
        if (c >= columns) {
            for (size_t p = first; p < pairs; p++) destination[p * NR] = 0;
            continue;
        }
        const uint16_t *source = w + (n0 + c) * k + k0;
        for (size_t p = first; p < full; p++) {
            destination[p * NR] = (uint32_t)source[2 * p] | (uint32_t)source[2 * p + 1] << 16;
        }
        if (full < pairs) destination[full * NR] = source[2 * full];  // odd k: zero partner
    }
}

// ---- micro-kernel ----

SCHNELL_TARGET_BF16 SCHNELL_INLINE __mmask16 column_mask(size_t columns, int v) {
    size_t first = (size_t)v * 16;
    if (columns >= first + 16) return 0xffff;
    if (columns <= first) return 0;
    return (__mmask16)((1u << (columns - first)) - 1);
}

// y[0:mr, 0:columns] (+)= a[0:mr, pairs] . bp[pairs, 0:64]; `first` starts from bias (or 0).
SCHNELL_TARGET_BF16 SCHNELL_INLINE void micro_kernel(int mr, const uint16_t *a, size_t kp,
                                 const uint16_t *next_a, const uint32_t *bp, size_t pairs, const float *bias, int first, float *y,
                                 size_t y_stride, size_t columns) {
    __m512 acc[MR][4];
    __mmask16 mask[4];
    for (int v = 0; v < 4; v++) mask[v] = column_mask(columns, v);
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < 4; v++) {
            if (!first) acc[r][v] = _mm512_maskz_loadu_ps(mask[v], y + r * y_stride + v * 16);
            else if (bias) acc[r][v] = _mm512_maskz_loadu_ps(mask[v], bias + v * 16);
            else acc[r][v] = _mm512_setzero_ps();
        }
    }
    const pair_word *rows[MR];
    for (int r = 0; r < mr; r++) rows[r] = (const pair_word *)(a + r * kp);
    for (size_t p = 0; p < pairs; p++) {
        // One cache line of each of the next micro-panel's rows per 16 pairs: A comes from
        // memory the first time it meets a B block, and six broadcast streams outrun the
        // hardware prefetcher on long rows.
        if (next_a && (p & 15) == 0) {
            for (int r = 0; r < MR; r++) _mm_prefetch((const char *)(next_a + r * kp + 2 * p), _MM_HINT_T0);
        }
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp + p * NR);
        __m512bh b1 = (__m512bh)_mm512_load_si512(bp + p * NR + 16);
        __m512bh b2 = (__m512bh)_mm512_load_si512(bp + p * NR + 32);
        __m512bh b3 = (__m512bh)_mm512_load_si512(bp + p * NR + 48);
        for (int r = 0; r < mr; r++) {
            __m512bh broadcast = (__m512bh)_mm512_set1_epi32((int)rows[r][p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], broadcast, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], broadcast, b1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], broadcast, b2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], broadcast, b3);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(y + r * y_stride + v * 16, mask[v], acc[r][v]);
    }
}

#define KERNEL_WITH_ROWS(rows_constant)                                                            \
    SCHNELL_TARGET_BF16 static void micro_kernel_##rows_constant(                                  \
        const uint16_t *a, size_t kp, const uint16_t *next_a, const uint32_t *bp, size_t pairs,   \
        const float *bias, int first, float *y, size_t y_stride, size_t columns) {                \
        micro_kernel(rows_constant, a, kp, next_a, bp, pairs, bias, first, y, y_stride, columns); \
    }
KERNEL_WITH_ROWS(1)
KERNEL_WITH_ROWS(2)
KERNEL_WITH_ROWS(3)
KERNEL_WITH_ROWS(4)
KERNEL_WITH_ROWS(5)
KERNEL_WITH_ROWS(6)

const schnell_bf16_micro_kernel schnell_bf16_micro_kernels[MR + 1] = {
    NULL, micro_kernel_1, micro_kernel_2, micro_kernel_3, micro_kernel_4, micro_kernel_5,
    micro_kernel_6,
};

// ---- few rows: weight rows read in place ----

// Below MR rows (the modulation linears on the time embedding have one) packing the weight
// would cost more than the arithmetic. A weight row's natural layout is already (k even,
// k odd) pairs, so each output is a dot product of two contiguous bf16 runs, streamed once.
typedef struct {
    const uint16_t *a;
    size_t rows, k, kp;
    const uint16_t *w;
    const float *bias_f32;
    float *y;
    size_t y_stride;
} few_rows_job;

SCHNELL_TARGET_BF16 static void few_rows_columns(void *context, size_t begin, size_t end) {
    const few_rows_job *job = context;
    for (size_t j = begin; j < end; j++) {
        const uint16_t *w = job->w + j * job->k;
        __m512 acc[MR - 1];
        for (size_t r = 0; r < job->rows; r++) acc[r] = _mm512_setzero_ps();
        for (size_t i = 0; i < job->k; i += 32) {
            size_t left = job->k - i;
            __mmask32 mask = left >= 32 ? 0xffffffffu : (__mmask32)((1u << left) - 1);
            __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + i);
            for (size_t r = 0; r < job->rows; r++) {
                __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(mask, job->a + r * job->kp + i);
                acc[r] = _mm512_dpbf16_ps(acc[r], av, wv);
            }
        }
        float b = job->bias_f32 ? job->bias_f32[j] : 0.0f;
        for (size_t r = 0; r < job->rows; r++) job->y[r * job->y_stride + j] = _mm512_reduce_add_ps(acc[r]) + b;
    }
}

// ---- driver ----

typedef struct {
    const float *x;           // for the reference fallback
    const uint16_t *a;        // [rows, kp] bf16
    size_t rows, k, kp;
    const uint16_t *w;        // [n, k] bf16
    const void *bias;         // stored dtype, for the reference fallback
    int bias_dtype;
    const float *bias_f32;    // [n] or NULL
    size_t n;
    float *y;
    size_t y_stride;
    size_t row_chunks, rows_per_chunk;
} gemm_job;

static void gemm_items(void *context, size_t begin, size_t end) {
    const gemm_job *job = context;
    uint32_t *bp = aligned_alloc(64, (size_t)KC / 2 * NC * sizeof(uint32_t));
    for (size_t item = begin; item < end; item++) {
        size_t n0 = item / job->row_chunks * NC;
        size_t m_begin = item % job->row_chunks * job->rows_per_chunk;
        size_t m_end = m_begin + job->rows_per_chunk < job->rows ? m_begin + job->rows_per_chunk : job->rows;
        size_t columns = job->n - n0 < NC ? job->n - n0 : NC;
        if (!bp) {
            size_t bias_offset = n0 * schnell_dtype_size(job->bias_dtype);
            schnell_linear_bf16_reference(job->x + m_begin * job->k, m_end - m_begin, job->k,
                                          job->w + n0 * job->k,
                                          job->bias ? (const char *)job->bias + bias_offset : NULL,
                                          job->bias_dtype, columns, job->y + m_begin * job->y_stride + n0,
                                          job->y_stride);
            continue;
        }
        size_t k0 = 0;
        do {
            size_t pairs = (job->kp - k0) / 2 < KC / 2 ? (job->kp - k0) / 2 : KC / 2;
            schnell_bf16_pack_block(job->w, job->k, job->n, n0, k0, pairs, bp);
            for (size_t m = m_begin; m < m_end; m += MR) {
                size_t mr = m_end - m < MR ? m_end - m : MR;
                const uint16_t *a = job->a + m * job->kp + k0;
                const uint16_t *next_a = m + 2 * MR <= m_end ? a + MR * job->kp : NULL;
                for (size_t c = 0; c < columns; c += NR) {
                    schnell_bf16_micro_kernels[mr](a, job->kp, c == 0 ? next_a : NULL, bp + c / NR * pairs * NR,
                                      pairs, job->bias_f32 ? job->bias_f32 + n0 + c : NULL, k0 == 0,
                                      job->y + m * job->y_stride + n0 + c, job->y_stride,
                                      columns - c < NR ? columns - c : NR);
                }
            }
            k0 += 2 * pairs;
        } while (k0 < job->kp);
    }
    free(bp);
}

// The bf16 copy of the activations (up to 141 MB for the transformer's widest input) is kept
// between calls: faulting in that many fresh pages every call cost more than the rounding
// itself, ~10 % of a K = 15,360 GEMM. It never exceeds half the largest float32 input seen.
// A caller that finds it in use by another thread takes a private buffer instead.
static schnell_scratch activation_scratch = SCHNELL_SCRATCH_INIT;

int schnell_linear_bf16(const float *x, size_t rows, size_t k, const uint16_t *weight,
                        const void *bias, int bias_dtype, size_t n, float *y, size_t y_stride) {
    if (schnell_cpu_level() < SCHNELL_CPU_AVX512_BF16) return -1;
    if (rows == 0 || n == 0) return 0;
    size_t kp = k + (k & 1);
    int shared;
    uint16_t *a = schnell_scratch_take(&activation_scratch, (rows * kp ? rows * kp : 1) * sizeof(uint16_t), &shared);
    float *bias_f32 = bias ? malloc(n * sizeof(float)) : NULL;
    if (!a || (bias && !bias_f32)) {
        if (a) schnell_scratch_release(&activation_scratch, a, shared);
        free(bias_f32);
        return -1;
    }
    if (bias) schnell_convert_to_f32(bias, bias_dtype, bias_f32, n);
    round_job rounding = {x, k, kp, a};
    schnell_parallel_for(rows, 16, round_rows, &rounding);
    if (rows < MR) {
        few_rows_job few = {a, rows, k, kp, weight, bias_f32, y, y_stride};
        schnell_parallel_for(n, 64, few_rows_columns, &few);
        schnell_scratch_release(&activation_scratch, a, shared);
        free(bias_f32);
        return 0;
    }

    size_t column_blocks = (n + NC - 1) / NC, row_chunks;
    size_t rows_per_chunk = schnell_gemm_row_chunks(rows, column_blocks, MR, &row_chunks);
    gemm_job job = {x, a, rows, k, kp, weight, bias, bias_dtype, bias_f32, n, y, y_stride,
                    row_chunks, rows_per_chunk};
    schnell_parallel_for(column_blocks * row_chunks, 1, gemm_items, &job);
    schnell_scratch_release(&activation_scratch, a, shared);
    free(bias_f32);
    return 0;
}
