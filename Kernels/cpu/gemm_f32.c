// Linear layers in float32 on the packed micro-kernels of gemm_f32.h: y = x . w^T (+ bias), for
// CPUs without AVX512-BF16 and for float32 precision on those with it.
//
// Layouts
//   w  the weight as stored, [n, k] row-major: f32, f16, bf16 or fp8 e4m3, read from the memory
//      map. It is converted to float32 only while a block of it is packed, so a bf16 weight is
//      read at 2 bytes per value and never expanded as a whole.
//   B  a block of KC values of k x NC columns of w, packed per work item into the micro-kernel's
//      panels: [panel of NR columns][k][NR] floats, columns past n zero. Whole 8 x 8 tiles are
//      converted and transposed in registers, the edges value by value.
//   A  MC (96) rows of x at a time, KC values each, copied to rows KC + 16 floats apart: FLUX's
//      k are multiples of 1024, so x's own rows (4 KB multiples apart) would all fall into the
//      same L1 sets and evict one another under the stream of B.
//
// Blocking, per tier (the micro-kernel sets NR); as in gemm_bf16.c, the B block stays in L2
// while each 6-row micro-panel of A, in L1, meets its panels in turn. Each k block revisits y
// (from memory at M = 4,608), so KC is as long as L1 and L2 allow.
//   AVX2     6 x 16 micro-kernel, KC = 384, NC = 192: a 288 KB block (Zen 3 has 512 KB of L2)
//            and a 9.6 KB micro-panel (of 32 KB of L1); each 24 KB panel streams from L2.
//            On Zen 5 at M = 4,608 this was ~10 % faster than KC = NC = 256 or KC = 512.
//   AVX-512  6 x 64 micro-kernel, KC = NC = 384: a 576 KB block (Zen 4 and 5 have 1 MB of L2)
//            and a 9.6 KB micro-panel; ~5 % faster than 512 x 512 and ~10 % than 512 x 256.
//   Work items are NC columns x a range of rows, spread over the pool as in gemm_bf16.c. The
//   first k block starts from zero, or from the bias copied into y's rows just before (the
//   micro-kernel's own bias is per row; a linear's is per column); later blocks add to y.
//   Fewer than MR rows in all (the modulation linears have one): no packing, each weight row is
//   streamed once and dotted with every row of x (few_rows_*).
#include <immintrin.h>

#include "dispatch.h"
#include "gemm_f32.h"

enum { MR = SCHNELL_F32_MR };

// A tier's micro-kernels and blocking: NR columns per panel, KC values of k per block, NC columns
// per work item, MC rows of x packed at a time.
typedef struct {
    const schnell_f32_micro_kernel *kernels;
    size_t nr, kc, nc, mc;
} blocking;

// ---- weight values as float32 ----

// Eight weight values from index i on (f32, f16 or bf16; e4m3 is staged as f32 first).
SCHNELL_TARGET_AVX2 SCHNELL_INLINE __m256 load8(const void *w, int dtype, size_t i) {
    if (dtype == SCHNELL_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i half = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (dtype == SCHNELL_F16) return _mm256_cvtph_ps(half);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

SCHNELL_TARGET_AVX2 SCHNELL_INLINE float load1(const void *w, int dtype, size_t i) {
    if (dtype == SCHNELL_F32) return ((const float *)w)[i];
    uint16_t bits = ((const uint16_t *)w)[i];
    if (dtype == SCHNELL_F16) return _cvtsh_ss(bits);
    uint32_t word = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &word, 4);
    return value;
}

// Sixteen values from index i on, lanes outside `mask` zero.
SCHNELL_TARGET_AVX512 SCHNELL_INLINE __m512 load16(const void *w, int dtype, size_t i, __mmask16 mask) {
    if (dtype == SCHNELL_F32) return _mm512_maskz_loadu_ps(mask, (const float *)w + i);
    __m256i half = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i);
    if (dtype == SCHNELL_F16) return _mm512_cvtph_ps(half);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

// ---- packing ----

// r[j] = column j of the 8 x 8 tile whose rows are r[0 ... 7].
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    // s[4h + m]: columns m (low half) and m + 4 (high half) of rows 4h ... 4h + 3.
    for (int h = 0; h < 8; h += 4) {
        s[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
        s[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xee);
        s[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        s[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xee);
    }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(s[m], s[4 + m], 0x20);
        r[m + 4] = _mm256_permute2f128_ps(s[m], s[4 + m], 0x31);
    }
}

// Eight columns of a panel: destination[kk * nr + i] = w[i * ldw + kk] for kk < kc, i < valid,
// zero for i >= valid. destination is 32-byte aligned.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void pack_group(const void *w, size_t ldw, int dtype, size_t valid, size_t kc,
                                                 size_t nr, float *destination) {
    size_t kk = 0;
    if (valid == 8) {
        for (; kk + 8 <= kc; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = load8(w, dtype, i * ldw + kk);
            transpose8(r);
            for (int j = 0; j < 8; j++) _mm256_store_ps(destination + (kk + j) * nr, r[j]);
        }
    }
    for (; kk < kc; kk++) {
        for (size_t i = 0; i < 8; i++) destination[kk * nr + i] = i < valid ? load1(w, dtype, i * ldw + kk) : 0.0f;
    }
}

// `columns` rows of w (from w, which points at the block's first value, k apart) and kc values
// of each into bp's panels, padded with zero columns to a whole panel.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void pack_block_body(const void *w, size_t k, int dtype, size_t columns,
                                                      size_t kc, size_t nr, float *bp) {
    size_t element = schnell_dtype_size(dtype);
    size_t padded = (columns + nr - 1) / nr * nr;
    for (size_t c = 0; c < padded; c += 8) {
        size_t valid = c >= columns ? 0 : columns - c < 8 ? columns - c : 8;
        const void *source = valid ? (const char *)w + c * k * element : w;
        pack_group(source, k, dtype, valid, kc, nr, bp + c / nr * kc * nr + c % nr);
    }
}

#define PACK_BLOCK(suffix, dtype)                                                                         \
    SCHNELL_TARGET_AVX2 static void pack_block_##suffix(const void *w, size_t k, size_t columns, size_t kc, \
                                                        size_t nr, float *bp) {                           \
        pack_block_body(w, k, dtype, columns, kc, nr, bp);                                                \
    }
PACK_BLOCK(f32, SCHNELL_F32)
PACK_BLOCK(f16, SCHNELL_F16)
PACK_BLOCK(bf16, SCHNELL_BF16)

// fp8 e4m3: eight weight rows at a time are converted through the table in convert.c into
// `staging` [8][kc], then packed as float32.
SCHNELL_TARGET_AVX2 static void pack_block_e4m3(const void *w, size_t k, size_t columns, size_t kc, size_t nr,
                                                float *bp, float *staging) {
    size_t padded = (columns + nr - 1) / nr * nr;
    for (size_t c = 0; c < padded; c += 8) {
        size_t valid = c >= columns ? 0 : columns - c < 8 ? columns - c : 8;
        for (size_t i = 0; i < valid; i++) {
            schnell_convert_to_f32((const uint8_t *)w + (c + i) * k, SCHNELL_F8_E4M3, staging + i * kc, kc);
        }
        pack_group(staging, kc, SCHNELL_F32, valid, kc, nr, bp + c / nr * kc * nr + c % nr);
    }
}

// ---- packed GEMM ----

typedef struct {
    const float *x;         // [rows, k]
    size_t rows, k;
    const void *w;          // [n, k], stored dtype
    int dtype;
    const float *bias_f32;  // [n] or NULL
    size_t n;
    float *y;
    size_t y_stride;
    const schnell_f32_micro_kernel *kernels;
    size_t nr, kc, nc, mc;  // the tier's blocking
    size_t row_chunks, rows_per_chunk;
    float *scratch;         // per worker: the packed block, the packed rows of x, e4m3 staging
    size_t scratch_floats;
} gemm_job;

static void pack_block(const gemm_job *job, size_t n0, size_t k0, size_t columns, size_t kc, float *bp) {
    size_t element = schnell_dtype_size(job->dtype);
    const void *w = (const char *)job->w + (n0 * job->k + k0) * element;
    switch (job->dtype) {
    case SCHNELL_F32: pack_block_f32(w, job->k, columns, kc, job->nr, bp); break;
    case SCHNELL_F16: pack_block_f16(w, job->k, columns, kc, job->nr, bp); break;
    case SCHNELL_BF16: pack_block_bf16(w, job->k, columns, kc, job->nr, bp); break;
    default:
        pack_block_e4m3(w, job->k, columns, kc, job->nr, bp, bp + job->kc * job->nc + job->mc * (job->kc + 16));
        break;
    }
}

// x[m : m + count, k0 : k0 + kc] into a, rows lda apart.
static void pack_rows(const gemm_job *job, size_t m, size_t count, size_t k0, size_t kc, float *a, size_t lda) {
    for (size_t r = 0; r < count; r++) memcpy(a + r * lda, job->x + (m + r) * job->k + k0, kc * sizeof(float));
}

static void gemm_items(void *context, size_t begin, size_t end) {
    const gemm_job *job = context;
    float *bp = job->scratch + (size_t)schnell_worker_index() * job->scratch_floats;
    float *a = bp + job->kc * job->nc;
    size_t nr = job->nr, nc = job->nc, mc = job->mc;
    for (size_t item = begin; item < end; item++) {
        size_t n0 = item / job->row_chunks * nc;
        size_t m_begin = item % job->row_chunks * job->rows_per_chunk;
        size_t m_end = m_begin + job->rows_per_chunk < job->rows ? m_begin + job->rows_per_chunk : job->rows;
        size_t columns = job->n - n0 < nc ? job->n - n0 : nc;
        for (size_t k0 = 0; k0 < job->k; k0 += job->kc) {
            size_t kc = job->k - k0 < job->kc ? job->k - k0 : job->kc;
            size_t lda = kc + 16;  // a line of padding: rows k = 1024 ... apart would share L1 sets
            int first = k0 == 0 && !job->bias_f32;
            pack_block(job, n0, k0, columns, kc, bp);
            for (size_t m0 = m_begin; m0 < m_end; m0 += mc) {
                size_t count = m_end - m0 < mc ? m_end - m0 : mc;
                pack_rows(job, m0, count, k0, kc, a, lda);
                float *y = job->y + m0 * job->y_stride + n0;
                if (k0 == 0 && job->bias_f32) {
                    for (size_t r = 0; r < count; r++) memcpy(y + r * job->y_stride, job->bias_f32 + n0, columns * sizeof(float));
                }
                // The rows of x the next copy will read (the next MC rows, or the first ones at the
                // next k block) are fetched while these compute: the copy would otherwise wait on
                // memory once x outgrows L3 (M = 4,608: 56 MB).
                size_t next_m = m0 + mc < m_end ? m0 + mc : m_begin;
                size_t next_k = m0 + mc < m_end ? k0 : k0 + job->kc;
                size_t next_count = next_k < job->k ? (m_end - next_m < mc ? m_end - next_m : mc) : 0;
                size_t next_kc = next_k < job->k && job->k - next_k < job->kc ? job->k - next_k : job->kc;
                size_t lines = (next_kc + 15) / 16, panels = (columns + nr - 1) / nr;
                size_t lines_per_panel = (lines + panels - 1) / panels;
                for (size_t m = 0; m < count; m += MR) {
                    size_t mr = count - m < MR ? count - m : MR;
                    for (size_t c = 0; c < columns; c += nr) {
                        size_t line = c / nr * lines_per_panel;
                        for (size_t r = m; r < m + MR && r < next_count; r++) {
                            const float *row = job->x + (next_m + r) * job->k + next_k;
                            for (size_t l = line; l < line + lines_per_panel && l < lines; l++) {
                                _mm_prefetch((const char *)(row + 16 * l), _MM_HINT_T0);
                            }
                        }
                        job->kernels[mr](a + m * lda, lda, bp + c / nr * kc * nr, kc, NULL, first,
                                         y + m * job->y_stride + c, job->y_stride,
                                         columns - c < nr ? columns - c : nr);
                    }
                }
            }
        }
    }
}

// ---- few rows: weight rows streamed once ----

typedef struct {
    const float *x;         // [rows, k], rows < MR
    size_t rows, k;
    const void *w;
    int dtype;
    const float *bias_f32;
    float *y;
    size_t y_stride;
    float *rows_f32;        // e4m3 only: k floats per worker
} few_rows_job;

// y[r, j] for r < rows from one weight row w[0:k]: two accumulators per row of x.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void dot_rows_avx2(const few_rows_job *job, const void *w, int dtype, size_t j) {
    size_t k = job->k;
    __m256 acc[MR - 1][2];
    float tail[MR - 1] = {0};
    for (int r = 0; r < MR - 1; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m256 w0 = load8(w, dtype, i), w1 = load8(w, dtype, i + 8);
        for (int r = 0; r < MR - 1; r++) {
            if ((size_t)r >= job->rows) break;
            const float *x = job->x + r * k + i;
            acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), w1, acc[r][1]);
        }
    }
    for (; i < k; i++) {
        float value = load1(w, dtype, i);
        for (size_t r = 0; r < job->rows; r++) tail[r] += job->x[r * k + i] * value;
    }
    float b = job->bias_f32 ? job->bias_f32[j] : 0.0f;
    for (size_t r = 0; r < job->rows; r++) {
        __m256 sum = _mm256_add_ps(acc[r][0], acc[r][1]);
        __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        half = _mm_add_ss(half, _mm_movehdup_ps(half));
        job->y[r * job->y_stride + j] = _mm_cvtss_f32(half) + tail[r] + b;
    }
}

SCHNELL_TARGET_AVX512 SCHNELL_INLINE void dot_rows_avx512(const few_rows_job *job, const void *w, int dtype, size_t j) {
    size_t k = job->k;
    __m512 acc[MR - 1][2];
    for (int r = 0; r < MR - 1; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= k; i += 32) {
        __m512 w0 = load16(w, dtype, i, 0xffff), w1 = load16(w, dtype, i + 16, 0xffff);
        for (int r = 0; r < MR - 1; r++) {
            if ((size_t)r >= job->rows) break;
            const float *x = job->x + r * k + i;
            acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(x), w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(x + 16), w1, acc[r][1]);
        }
    }
    for (; i < k; i += 16) {
        __mmask16 mask = k - i >= 16 ? 0xffff : (__mmask16)((1u << (k - i)) - 1);
        __m512 w0 = load16(w, dtype, i, mask);
        for (size_t r = 0; r < job->rows; r++) {
            acc[r][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, job->x + r * k + i), w0, acc[r][0]);
        }
    }
    float b = job->bias_f32 ? job->bias_f32[j] : 0.0f;
    for (size_t r = 0; r < job->rows; r++) {
        job->y[r * job->y_stride + j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + b;
    }
}

// Columns [begin, end); an e4m3 row is converted into the worker's `rows_f32` (k floats) first.
#define FEW_ROWS(tier, target)                                                                       \
    target static void few_rows_##tier(void *context, size_t begin, size_t end) {                    \
        const few_rows_job *job = context;                                                           \
        size_t element = schnell_dtype_size(job->dtype);                                             \
        float *row = job->rows_f32 + (size_t)schnell_worker_index() * job->k;                        \
        for (size_t j = begin; j < end; j++) {                                                       \
            const void *w = (const char *)job->w + j * job->k * element;                             \
            switch (job->dtype) {                                                                    \
            case SCHNELL_F32: dot_rows_##tier(job, w, SCHNELL_F32, j); break;                        \
            case SCHNELL_F16: dot_rows_##tier(job, w, SCHNELL_F16, j); break;                        \
            case SCHNELL_BF16: dot_rows_##tier(job, w, SCHNELL_BF16, j); break;                      \
            default:                                                                                 \
                schnell_convert_to_f32(w, job->dtype, row, job->k);                                  \
                dot_rows_##tier(job, row, SCHNELL_F32, j);                                           \
            }                                                                                        \
        }                                                                                            \
    }
FEW_ROWS(avx2, SCHNELL_TARGET_AVX2)
FEW_ROWS(avx512, SCHNELL_TARGET_AVX512)

// ---- driver ----

int schnell_linear_f32(const float *x, size_t rows, size_t k, const void *weight, int weight_dtype,
                       const void *bias, int bias_dtype, size_t n, float *y, size_t y_stride) {
    int level = schnell_cpu_level();
    if (level < SCHNELL_CPU_AVX2) return -1;
    if (rows == 0 || n == 0) return 0;
    float *bias_f32 = bias ? malloc(n * sizeof(float)) : NULL;
    if (bias && !bias_f32) return -1;
    if (bias) schnell_convert_to_f32(bias, bias_dtype, bias_f32, n);
    if (rows < MR || k == 0) {
        float *rows_f32 = NULL;
        if (weight_dtype == SCHNELL_F8_E4M3) {
            rows_f32 = schnell_buffer_allocate((size_t)schnell_threads() * k * sizeof(float));
            if (!rows_f32) {
                free(bias_f32);
                return -1;
            }
        }
        few_rows_job few = {x, rows, k, weight, weight_dtype, bias_f32, y, y_stride, rows_f32};
        schnell_parallel_for(n, 64, level >= SCHNELL_CPU_AVX512 ? few_rows_avx512 : few_rows_avx2, &few);
        schnell_buffer_free(rows_f32);
        free(bias_f32);
        return 0;
    }

    blocking tier = level >= SCHNELL_CPU_AVX512
                        ? (blocking){schnell_f32_micro_kernels, SCHNELL_AVX512_F32_NR, 384, 384, 96}
                        : (blocking){schnell_f32_micro_kernels_avx2, SCHNELL_AVX2_F32_NR, 384, 192, 96};
    size_t column_blocks = (n + tier.nc - 1) / tier.nc, row_chunks;
    size_t rows_per_chunk = schnell_gemm_row_chunks(rows, column_blocks, MR, &row_chunks);
    size_t workers = (size_t)schnell_threads();
    // Per worker, in whole cache lines: the packed block, the packed rows of x, and for e4m3
    // the staging rows.
    size_t scratch_floats = schnell_round_up(tier.kc * tier.nc + tier.mc * (tier.kc + 16) + 8 * tier.kc, 16);
    float *scratch = schnell_buffer_allocate(workers * scratch_floats * sizeof(float));
    if (!scratch) {
        free(bias_f32);
        return -1;
    }
    gemm_job job = {x, rows, k, weight, weight_dtype, bias_f32, n, y, y_stride,
                    tier.kernels, tier.nr, tier.kc, tier.nc, tier.mc,
                    row_chunks, rows_per_chunk, scratch, scratch_floats};
    schnell_parallel_for(column_blocks * row_chunks, 1, gemm_items, &job);
    schnell_buffer_free(scratch);
    free(bias_f32);
    return 0;
}
