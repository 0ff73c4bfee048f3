// Linear layers whose weight is in a GGUF block type, computed on the quantized blocks:
// y = x . w^T (+ bias) with x quantized per 32-value block to int8 (as ggml's q8_0), integer dot
// products per block pair, each block's sum scaled by d_w * d_x and added in float32.
//
// Every GGUF block type has a fast path; a type's values are d * q + m per 32 values, with q
// small integers: Q8_0, Q4_0, Q5_0 (m = 0), Q4_1, Q5_1, Q4_K, Q5_K (a K type's 256-value
// super-block is eight 32-value sub-blocks with 6-bit scales and mins). A block unpacks to q, d
// and m; m adds m * d_x * sum(q_x), ggml's block-sum term. Q3_K and Q6_K have a scale per 16
// values: the VNNI kernel scales each half block on its own; elsewhere the scales are folded
// into q (sub-block scale x quant, int16) with one d a block. Q2_K
// (0 <= sc q <= 45) has a min per 16 values: its low half's extra offset meets the sum of the
// low 16 activations.
//
// Layouts
//   A   the activations quantized as ggml's quantize_row_q8_0: per 32-value block d = amax / 127,
//       q = round-to-nearest-even(x / d) (x * (1 / d), as ggml), [rows, k] int8 and [rows, k/32]
//       float32 scales (kept in float32: ggml rounds d to f16 only to store it). The micro-kernel
//       decides the form q is stored in: + 128 as u8 (vpdpbusd multiplies u8 by s8), int16 (for
//       vpmaddwd) or plain int8.
//   B   a block of the weight repacked per work item into panels of NR columns:
//       [panel][block][step][column] 32-bit words (4 int8 / u8 weights or 2 int16 weights of one
//       column), then per [panel][block][column] the float32 scale d_w, the offsets m, and for
//       the u8 form of A -128 * sum(q_w), the accumulator's start that undoes the +128.
//
// Micro-kernels (gemm_quant_avx512.c, gemm_quant_avx2.c; 6 rows x 32 or 16 columns):
//   AVX-512 VNNI  vpdpbusd on u8 A (Q3_K / Q6_K: a scale and correction per half block).
//   AVX2          4- and 5-bit types: u8 weights x int8 A with vpmaddubsw, summed in int16 over
//                 runs of steps, then vpmaddwd; the others int16 with vpmaddwd.
//   generic       plain C per (row, column) block dot products, columns split over the pool.
//   few rows      (fewer than 6, AVX2 and up) block pairs with vpsignb / vpmaddubsw / vpmaddwd
//                 (|w| <= 128, |x| <= 127: no int16 saturation), int16 weights with vpmaddwd.
//
// Blocking: work item = NC (256) columns x a range of rows, spread over the pool as in
// gemm_bf16.c; the packed block (KB = 32 blocks of 32 values x 256 columns: 256 KB of int8,
// 512 KB of int16) stays in L2 while each micro-panel of A (6 x 1 KB) meets its panels in turn.
// The first k block starts from the bias, later ones add to y. Fewer than 6 rows in all (the
// modulation linears have one): no packing, each weight row is streamed once and dotted with
// every row.
#include <pthread.h>
#include <stdlib.h>

#include "gemm_quant.h"

// ---- weight blocks as int8 ----

static float half_value(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | mantissa << 13;
    } else if (exponent != 0) {
        bits = sign | (exponent + 112) << 23 | mantissa << 13;
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: renormalise
        exponent = 113;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | exponent << 23 | (mantissa & 0x3ff) << 13;
    }
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

static uint16_t half_bits(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

// 32-value block `block` of a weight row as q[32], its scale d and its offsets m[2]:
// value i = d * q[i] + m[0] (+ m[1] for i < 16: Q2_K's min per 16 values; the caller sets
// m[1] = 0 and only Q2_K writes it; m[0] = 0 for the types without an offset). q fits int8
// except for Q3_K and Q6_K, whose q carry their 16-value sub-block scales here (wide_weights).
typedef void (*block_unpack_fn)(const uint8_t *row, size_t block, int16_t *q, float *d, float *m);

static void unpack_q8_0(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block * 34;
    *d = half_value(half_bits(x));
    *m = 0.0f;
    for (int i = 0; i < QK; i++) q[i] = (int8_t)x[2 + i];
}

// Q4_0 and Q4_1: nibbles, the low ones values 0-15, the high ones 16-31.
static void unpack_nibbles(const uint8_t *qs, int bias, int16_t *q) {
    for (int i = 0; i < 16; i++) {
        q[i] = (int16_t)((qs[i] & 0x0f) - bias);
        q[i + 16] = (int16_t)((qs[i] >> 4) - bias);
    }
}

// Q5_0 and Q5_1: nibbles plus a fifth bit per value from 32 bits of high bits.
static void unpack_fives(const uint8_t *qh, const uint8_t *qs, int bias, int16_t *q) {
    uint32_t high;
    memcpy(&high, qh, 4);
    for (int i = 0; i < 16; i++) {
        q[i] = (int16_t)(((qs[i] & 0x0f) | ((high >> i) & 1) << 4) - bias);
        q[i + 16] = (int16_t)(((qs[i] >> 4) | ((high >> (i + 16)) & 1) << 4) - bias);
    }
}

static void unpack_q4_0(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block * 18;
    *d = half_value(half_bits(x));
    *m = 0.0f;
    unpack_nibbles(x + 2, 8, q);
}

static void unpack_q4_1(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block * 20;
    *d = half_value(half_bits(x));
    *m = half_value(half_bits(x + 2));
    unpack_nibbles(x + 4, 0, q);
}

static void unpack_q5_0(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block * 22;
    *d = half_value(half_bits(x));
    *m = 0.0f;
    unpack_fives(x + 2, x + 6, 16, q);
}

static void unpack_q5_1(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block * 24;
    *d = half_value(half_bits(x));
    *m = half_value(half_bits(x + 2));
    unpack_fives(x + 4, x + 8, 0, q);
}

// The 6-bit scale and min of sub-block j (0-7) of a Q4_K / Q5_K super-block (ggml's
// get_scale_min_k4).
static void k_scale_min(const uint8_t *scales, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = scales[j] & 63;
        *min = scales[j + 4] & 63;
    } else {
        *scale = (scales[j + 4] & 0x0f) | (scales[j - 4] >> 6) << 4;
        *min = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
    }
}

// Q4_K: 256-value super-blocks of eight 32-value sub-blocks; value = d sc q - dmin mn, q 0-15
// (sub-blocks 2i and 2i + 1 are the low and high nibbles of qs[32 i ... 32 i + 31]).
static void unpack_q4_k(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block / 8 * 144;
    int j = (int)(block % 8), scale, min;
    k_scale_min(x + 4, j, &scale, &min);
    *d = half_value(half_bits(x)) * (float)scale;
    *m = -half_value(half_bits(x + 2)) * (float)min;
    const uint8_t *qs = x + 16 + j / 2 * 32;
    for (int i = 0; i < QK; i++) q[i] = (int16_t)(j % 2 ? qs[i] >> 4 : qs[i] & 0x0f);
}

// Q5_K: as Q4_K plus a fifth bit, bit j of qh[i] for value i of sub-block j; q 0-31.
static void unpack_q5_k(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block / 8 * 176;
    int j = (int)(block % 8), scale, min;
    k_scale_min(x + 4, j, &scale, &min);
    *d = half_value(half_bits(x)) * (float)scale;
    *m = -half_value(half_bits(x + 2)) * (float)min;
    const uint8_t *qh = x + 16, *qs = x + 48 + j / 2 * 32;
    for (int i = 0; i < QK; i++) {
        q[i] = (int16_t)((j % 2 ? qs[i] >> 4 : qs[i] & 0x0f) | ((qh[i] >> j) & 1) << 4);
    }
}

// Q3_K and Q6_K keep a scale per 16 values. These give a block as int8-range q, the super-block's
// d and the two 16-value sub-blocks' integer scales: value i = d * scales[i / 16] * q[i].
typedef void (*block_halves_fn)(const uint8_t *row, size_t block, int16_t *q, float *d, int *scales);

// Q3_K: 256-value super-blocks (32 bytes of high bits, 64 of 2-bit q, 12 of 6-bit scales, f16 d);
// value = d (sc - 32) (q - 4 if the high bit is clear) (ggml's dequantize_row_q3_K).
static void halves_q3_k(const uint8_t *row, size_t block, int16_t *q, float *d, int *scales) {
    const uint8_t *x = row + block / 8 * 110;
    const uint8_t *hmask = x, *qs = x + 32, *packed = x + 96;
    uint32_t aux[4];
    memcpy(aux, packed, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4);
    aux[3] = ((aux[1] >> 4) & 0x0f0f0f0f) | (((tmp >> 6) & 0x03030303) << 4);
    aux[0] = (aux[0] & 0x0f0f0f0f) | (((tmp >> 0) & 0x03030303) << 4);
    aux[1] = (aux[1] & 0x0f0f0f0f) | (((tmp >> 2) & 0x03030303) << 4);
    int8_t all[16];
    memcpy(all, aux, 16);
    int j = (int)(block % 8), half = j / 4, shift = 2 * (j % 4);
    uint8_t bit = (uint8_t)(1u << j);
    const uint8_t *q2 = qs + 32 * half;
    for (int i = 0; i < QK; i++) q[i] = (int16_t)(((q2[i] >> shift) & 3) - ((hmask[i] & bit) ? 0 : 4));
    scales[0] = all[2 * j] - 32;
    scales[1] = all[2 * j + 1] - 32;
    *d = half_value(half_bits(x + 108));
}

// Q6_K: 256-value super-blocks (128 bytes of low nibbles, 64 of high 2 bits, 16 int8 scales,
// f16 d); value = d sc (q - 32) (ggml's dequantize_row_q6_K).
static void halves_q6_k(const uint8_t *row, size_t block, int16_t *q, float *d, int *scales) {
    const uint8_t *x = row + block / 8 * 210;
    int j = (int)(block % 8), half = j / 4, quarter = j % 4;
    const uint8_t *ql = x + 64 * half + (quarter % 2) * 32, *qh = x + 128 + 32 * half;
    const int8_t *all = (const int8_t *)(x + 192) + 8 * half;
    for (int i = 0; i < QK; i++) {
        int low = quarter < 2 ? ql[i] & 0x0f : ql[i] >> 4;
        q[i] = (int16_t)((low | ((qh[i] >> (2 * quarter)) & 3) << 4) - 32);
    }
    scales[0] = all[2 * quarter];
    scales[1] = all[2 * quarter + 1];
    *d = half_value(half_bits(x + 208));
}

// As unpackers: the sub-block scales folded into q (up to 128 and 4,096 in magnitude: int16).
static void unpack_q3_k(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    int scales[2];
    halves_q3_k(row, block, q, d, scales);
    for (int i = 0; i < QK; i++) q[i] = (int16_t)(q[i] * scales[i / 16]);
    *m = 0.0f;
}

static void unpack_q6_k(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    int scales[2];
    halves_q6_k(row, block, q, d, scales);
    for (int i = 0; i < QK; i++) q[i] = (int16_t)(q[i] * scales[i / 16]);
    *m = 0.0f;
}

static block_halves_fn halves_for(int dtype) {
    return dtype == SCHNELL_Q3_K ? halves_q3_k : dtype == SCHNELL_Q6_K ? halves_q6_k : NULL;
}

// Q2_K: 256-value super-blocks (16 bytes of 4-bit scale | 4-bit min per 16 values, 64 bytes of
// 2-bit q, f16 d, f16 dmin); value = d sc q - dmin mn (ggml's dequantize_row_q2_K). q here is
// sc q (0 ... 45); the high half's -dmin mn is m[0], the low half's difference to it m[1].
static void unpack_q2_k(const uint8_t *row, size_t block, int16_t *q, float *d, float *m) {
    const uint8_t *x = row + block / 8 * 84;
    const uint8_t *scales = x, *qs = x + 16;
    int j = (int)(block % 8), half = j / 4, shift = 2 * (j % 4);
    const uint8_t *q2 = qs + 32 * half;
    for (int i = 0; i < QK; i++) q[i] = (int16_t)((scales[2 * j + i / 16] & 0x0f) * ((q2[i] >> shift) & 3));
    float dmin = half_value(half_bits(x + 82));
    *d = half_value(half_bits(x + 80));
    float low = -dmin * (float)(scales[2 * j] >> 4), high = -dmin * (float)(scales[2 * j + 1] >> 4);
    m[0] = high;
    m[1] = low - high;
}

static block_unpack_fn unpack_for(int dtype) {
    switch (dtype) {
    case SCHNELL_Q8_0: return unpack_q8_0;
    case SCHNELL_Q4_0: return unpack_q4_0;
    case SCHNELL_Q4_1: return unpack_q4_1;
    case SCHNELL_Q5_0: return unpack_q5_0;
    case SCHNELL_Q5_1: return unpack_q5_1;
    case SCHNELL_Q4_K: return unpack_q4_k;
    case SCHNELL_Q5_K: return unpack_q5_k;
    case SCHNELL_Q3_K: return unpack_q3_k;
    case SCHNELL_Q6_K: return unpack_q6_k;
    case SCHNELL_Q2_K: return unpack_q2_k;
    default: return NULL;
    }
}

// Whether values carry an offset m: the block's result then gains m * (sum of the activations),
// taken as d_x * sum(q_x) (ggml's block sums), so the integer dot products stay as they are.
static int wide_weights(int dtype) { return dtype == SCHNELL_Q3_K || dtype == SCHNELL_Q6_K; }

static int has_offsets(int dtype) {
    return dtype == SCHNELL_Q4_1 || dtype == SCHNELL_Q5_1 || dtype == SCHNELL_Q4_K || dtype == SCHNELL_Q5_K ||
           dtype == SCHNELL_Q2_K;
}

// For the AVX2 nibble kernel, the types whose q + shift is 0 ... 15 or, 5-bit, 0 ... 31: the
// shift (Q4_0 stores q - 8, Q5_0 q - 16), or -1 for the types it does not take.
static int nibble_shift(int dtype) {
    switch (dtype) {
    case SCHNELL_Q4_0: return 8;
    case SCHNELL_Q5_0: return 16;
    case SCHNELL_Q4_1: case SCHNELL_Q4_K: case SCHNELL_Q5_1: case SCHNELL_Q5_K: return 0;
    default: return -1;
    }
}

static int five_bit(int dtype) {
    return dtype == SCHNELL_Q5_0 || dtype == SCHNELL_Q5_1 || dtype == SCHNELL_Q5_K;
}

// Whether the first 16 values of a block have an offset of their own (m[1]), which then meets
// the sum of those 16 activations.
static int has_low_offsets(int dtype) { return dtype == SCHNELL_Q2_K; }

// ---- activations to q8 ----

// x[0:k] -> q[0:k] and d[0:k/32] as ggml's quantize_row_q8_0_ref, rounding to nearest even;
// offset 128 stores q + 128 (as the same bytes, q ^ 0x80).
static void quantize_row_generic(const float *x, size_t k, int8_t *q, float *d, int offset) {
    for (size_t b = 0; b < k / QK; b++) {
        const float *block = x + b * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) amax = fmaxf(amax, fabsf(block[i]));
        float scale = amax / 127.0f, inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        d[b] = scale;
        for (int i = 0; i < QK; i++) {
            int value = (int)rintf(block[i] * inverse);
            q[b * QK + i] = (int8_t)(offset ? value ^ 0x80 : value);
        }
    }
}

SCHNELL_TARGET_AVX512 static void quantize_row_avx512(const float *x, size_t k, int8_t *q, float *d, int offset) {
    const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m128i flip = _mm_set1_epi8(offset ? (char)0x80 : 0);
    for (size_t b = 0; b < k / QK; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * QK), v1 = _mm512_loadu_ps(x + b * QK + 16);
        __m512 m = _mm512_max_ps(_mm512_and_ps(v0, magnitude), _mm512_and_ps(v1, magnitude));
        float amax = _mm512_reduce_max_ps(m);
        float scale = amax / 127.0f, inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        d[b] = scale;
        __m512 iv = _mm512_set1_ps(inverse);
        __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, iv)));
        __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, iv)));
        _mm_storeu_si128((__m128i *)(q + b * QK), _mm_xor_si128(q0, flip));
        _mm_storeu_si128((__m128i *)(q + b * QK + 16), _mm_xor_si128(q1, flip));
    }
}

SCHNELL_TARGET_AVX2 static void quantize_row_avx2(const float *x, size_t k, int8_t *q, float *d, int offset) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i flip = _mm256_set1_epi8(offset ? (char)0x80 : 0);
    for (size_t b = 0; b < k / QK; b++) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + b * QK + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], magnitude));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float scale = amax / 127.0f, inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        d[b] = scale;
        __m256 iv = _mm256_set1_ps(inverse);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], iv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], iv));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], iv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], iv));
        // packs work within 128-bit lanes: bytes come out as dwords 0,2,4,6,1,3,5,7 of the block.
        __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        packed = _mm256_permutevar8x32_epi32(packed, order);
        _mm256_storeu_si256((__m256i *)(q + b * QK), _mm256_xor_si256(packed, flip));
    }
}

typedef struct {
    const float *x;
    size_t k;
    int8_t *q;
    float *d;
    float *sums;  // [rows, k / 32] d_x * sum(q), or NULL
    float *low_sums;  // [rows, k / 32] d_x * sum(q[0:16]), or NULL
    int offset, wide, level;  // wide: q stored as int16 (the AVX2 micro-kernel's form)
} quantize_job;

static void quantize_rows(void *context, size_t begin, size_t end) {
    const quantize_job *job = context;
    size_t blocks = job->k / QK;
    int8_t *narrow = job->wide ? malloc(job->k) : NULL;
    for (size_t r = begin; r < end; r++) {
        const float *x = job->x + r * job->k;
        int8_t *q = job->wide ? narrow : job->q + r * job->k;
        float *d = job->d + r * blocks;
        if (!q) q = job->q + r * job->k * 2 + job->k;  // no scratch: the row's own upper half
        if (job->level >= SCHNELL_CPU_AVX512) quantize_row_avx512(x, job->k, q, d, job->offset);
        else if (job->level >= SCHNELL_CPU_AVX2) quantize_row_avx2(x, job->k, q, d, job->offset);
        else quantize_row_generic(x, job->k, q, d, job->offset);
        if (job->sums) {
            for (size_t b = 0; b < blocks; b++) {
                int32_t sum = 0, low = 0;
                for (int i = 0; i < QK; i++) {
                    sum += job->offset ? (uint8_t)q[b * QK + i] - 128 : q[b * QK + i];
                    if (i == 15) low = sum;
                }
                job->sums[r * blocks + b] = d[b] * (float)sum;
                if (job->low_sums) job->low_sums[r * blocks + b] = d[b] * (float)low;
            }
        }
        if (job->wide) {
            int16_t *wide = (int16_t *)(job->q + r * job->k * 2);
            for (size_t i = 0; i < job->k; i++) wide[i] = q[i];
        }
    }
    free(narrow);
}

// ---- reference ----

void schnell_linear_quantized_reference(const float *x, size_t rows, size_t k,
                                        const void *weight, int weight_dtype,
                                        const void *bias, int bias_dtype,
                                        size_t n, float *y, size_t y_stride) {
    block_unpack_fn unpack = unpack_for(weight_dtype);
    if (!unpack || k % schnell_dtype_block_values(weight_dtype)) return;
    size_t blocks = k / QK, row_bytes = schnell_dtype_row_bytes(weight_dtype, k);
    size_t bias_element = schnell_dtype_size(bias_dtype);
    int8_t *q = malloc(k ? k : 1);
    float *d = malloc((blocks ? blocks : 1) * sizeof(float));
    if (!q || !d) {
        free(q);
        free(d);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        quantize_row_generic(x + r * k, k, q, d, 0);
        for (size_t j = 0; j < n; j++) {
            const uint8_t *w = (const uint8_t *)weight + j * row_bytes;
            float sum = 0.0f;
            for (size_t b = 0; b < blocks; b++) {
                int16_t wq[QK];
                float wd, wm[2] = {0.0f, 0.0f};
                unpack(w, b, wq, &wd, wm);
                int32_t dot = 0, xsum = 0, low = 0;
                for (int i = 0; i < QK; i++) {
                    dot += (int32_t)wq[i] * q[b * QK + i];
                    xsum += q[b * QK + i];
                    if (i == 15) low = xsum;
                }
                sum += (float)dot * (wd * d[b]);
                if (wm[0] != 0.0f) sum += wm[0] * (d[b] * (float)xsum);
                if (wm[1] != 0.0f) sum += wm[1] * (d[b] * (float)low);
            }
            float bias_value = 0.0f;
            if (bias) schnell_convert_to_f32_reference((const char *)bias + j * bias_element, bias_dtype, &bias_value, 1);
            y[r * y_stride + j] = sum + bias_value;
        }
    }
    free(q);
    free(d);
}

// ---- packing ----

// Columns n0 ... n0 + NC - 1 of w (those past n zero), blocks b0 ... b0 + count - 1, into panels
// of nr columns: words[panel][block][step][column], scales[panel][block][column] and, when
// corrections is not NULL, corrections[panel][block][column] = -128 * sum of the column's q;
// offsets[panel][block][column] and low_offsets[...] the blocks' m[0] and m[1]. A word holds 4
// int8 weights (steps = 8 a block) or, wide, 2 int16 weights (steps = 16). shift is added to
// every q (stored as u8 then) and taken back through the offset: m[0] - shift * d. With halves
// (Q3_K, Q6_K at the VNNI tier) q are int8 and scales and corrections are per 16 values,
// [panel][block][half][column], the scale d * sc.
static void pack_block(const uint8_t *w, size_t row_bytes, block_unpack_fn unpack, block_halves_fn halves,
                       size_t n, size_t n0, size_t b0, size_t count, size_t nr, int wide, int shift,
                       uint32_t *words, float *scales, float *offsets, float *low_offsets, int32_t *corrections) {
    size_t steps = wide ? QK / 2 : QK / 4, sub = halves ? 2 : 1;
    for (size_t c = 0; c < NC; c += nr) {
        uint32_t *panel_words = words + c / nr * count * steps * nr;
        float *panel_scales = scales + c / nr * count * sub * nr, *panel_offsets = offsets + c / nr * count * nr;
        float *panel_low_offsets = low_offsets + c / nr * count * nr;
        int32_t *panel_corrections = corrections ? corrections + c / nr * count * sub * nr : NULL;
        for (size_t i = 0; i < nr; i++) {
            size_t column = n0 + c + i;
            for (size_t b = 0; b < count; b++) {
                int16_t q[QK];
                float d = 0.0f, m[2] = {0.0f, 0.0f};
                int sub_scales[2] = {0, 0};
                if (column >= n) memset(q, 0, sizeof q);
                else if (halves) halves(w + column * row_bytes, b0 + b, q, &d, sub_scales);
                else unpack(w + column * row_bytes, b0 + b, q, &d, m);
                if (shift) {
                    for (int v = 0; v < QK; v++) q[v] = (int16_t)(q[v] + shift);
                    m[0] -= (float)shift * d;
                }
                int32_t sum = 0;
                for (size_t s = 0; s < steps; s++) {
                    uint32_t word;
                    if (wide) {
                        word = (uint16_t)q[2 * s] | (uint32_t)(uint16_t)q[2 * s + 1] << 16;
                    } else {
                        word = (uint8_t)q[4 * s] | (uint32_t)(uint8_t)q[4 * s + 1] << 8 |
                               (uint32_t)(uint8_t)q[4 * s + 2] << 16 | (uint32_t)(uint8_t)q[4 * s + 3] << 24;
                    }
                    panel_words[(b * steps + s) * nr + i] = word;
                }
                panel_offsets[b * nr + i] = m[0];
                panel_low_offsets[b * nr + i] = m[1];
                if (halves) {
                    int32_t low = 0;
                    for (int v = 0; v < QK; v++) {
                        if (v < 16) low += q[v];
                        else sum += q[v];
                    }
                    panel_scales[(2 * b) * nr + i] = d * (float)sub_scales[0];
                    panel_scales[(2 * b + 1) * nr + i] = d * (float)sub_scales[1];
                    panel_corrections[(2 * b) * nr + i] = -128 * low;
                    panel_corrections[(2 * b + 1) * nr + i] = -128 * sum;
                    continue;
                }
                for (int v = 0; v < QK; v++) sum += q[v];
                panel_scales[b * nr + i] = d;
                if (panel_corrections) panel_corrections[b * nr + i] = -128 * sum;
            }
        }
    }
}

// ---- few rows and the generic tier: block dot products straight from the weight ----

// Activation i of a quantized row in any of its three forms.
static int activation_value(const uint8_t *a, size_t i, int offset, int wide) {
    return wide ? ((const int16_t *)a)[i] : offset ? a[i] - 128 : (int8_t)a[i];
}

// sum over blocks of dot(w block, q block) * d_w * d_x (+ m_w * sums) for one weight row and
// one row of A (sums, low_sums NULL for types without those offsets).
static float row_dot_generic(const uint8_t *w, block_unpack_fn unpack, const uint8_t *a, int offset, int wide,
                             const float *d, const float *sums, const float *low_sums, size_t blocks) {
    float sum = 0.0f;
    for (size_t b = 0; b < blocks; b++) {
        int16_t wq[QK];
        float wd, wm[2] = {0.0f, 0.0f};
        unpack(w, b, wq, &wd, wm);
        int32_t dot = 0;
        for (int i = 0; i < QK; i++) dot += (int32_t)wq[i] * activation_value(a, b * QK + i, offset, wide);
        sum += (float)dot * (wd * d[b]);
        if (sums) sum += wm[0] * sums[b];
        if (low_sums) sum += wm[1] * low_sums[b];
    }
    return sum;
}

typedef struct {
    const uint8_t *w;
    size_t row_bytes;
    block_unpack_fn unpack;
    const int8_t *q;     // [rows, k] signed
    const float *d;      // [rows, k / 32]
    const float *sums;   // [rows, k / 32] or NULL
    const float *low_sums;
    size_t rows, k;
    const float *bias_f32;
    float *y;
    size_t y_stride;
    int wide_weights;
} dot_job;

// Columns [begin, end) for all rows, 64 rows at a time so a few weight rows stay in L1.
static void dot_columns(void *context, size_t begin, size_t end) {
    const dot_job *job = context;
    size_t blocks = job->k / QK;
    for (size_t r0 = 0; r0 < job->rows; r0 += 64) {
        size_t r1 = r0 + 64 < job->rows ? r0 + 64 : job->rows;
        for (size_t j = begin; j < end; j++) {
            const uint8_t *w = job->w + j * job->row_bytes;
            float bias = job->bias_f32 ? job->bias_f32[j] : 0.0f;
            for (size_t r = r0; r < r1; r++) {
                job->y[r * job->y_stride + j] =
                    row_dot_generic(w, job->unpack, (const uint8_t *)job->q + r * job->k, 0, 0, job->d + r * blocks,
                                    job->sums ? job->sums + r * blocks : NULL,
                                    job->low_sums ? job->low_sums + r * blocks : NULL, blocks) + bias;
            }
        }
    }
}

// The same on AVX2, for fewer rows than a micro-kernel (each weight row is read once): per block
// pair |w| (vpabsb) times sign(w) * x (vpsignb) with vpmaddubsw (|w| <= 128, |x| <= 127: no
// int16 saturation), vpmaddwd by 1 to int32, then scaled into eight float lanes per row.
SCHNELL_TARGET_AVX2 static void dot_columns_avx2(void *context, size_t begin, size_t end) {
    const dot_job *job = context;
    size_t blocks = job->k / QK;
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t r0 = 0; r0 < job->rows; r0 += 4) {
        size_t count = job->rows - r0 < 4 ? job->rows - r0 : 4;
        for (size_t j = begin; j < end; j++) {
            const uint8_t *w = job->w + j * job->row_bytes;
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            float offset_sums[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (size_t b = 0; b < blocks; b++) {
                int16_t unpacked[QK];
                float wd, wm[2] = {0.0f, 0.0f};
                __m256i wv, w_low = _mm256_setzero_si256(), w_high = _mm256_setzero_si256();
                if (job->unpack == unpack_q8_0) {
                    wd = _cvtsh_ss(half_bits(w + b * 34));
                    wv = _mm256_loadu_si256((const __m256i *)(w + b * 34 + 2));
                } else if (job->unpack == unpack_q4_0 || job->unpack == unpack_q4_1) {
                    // Nibbles in registers: low ones are values 0-15, high ones 16-31.
                    int has_min = job->unpack == unpack_q4_1;
                    const uint8_t *x = w + b * (has_min ? 20 : 18);
                    wd = half_value(half_bits(x));
                    if (has_min) wm[0] = half_value(half_bits(x + 2));
                    __m128i qs = _mm_loadu_si128((const __m128i *)(x + (has_min ? 4 : 2)));
                    const __m128i low_bits = _mm_set1_epi8(0x0f);
                    wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), low_bits), _mm_and_si128(qs, low_bits));
                    if (!has_min) wv = _mm256_sub_epi8(wv, _mm256_set1_epi8(8));
                } else if (job->unpack == unpack_q4_k) {
                    const uint8_t *x = w + b / 8 * 144;
                    int j = (int)(b % 8), scale, min;
                    k_scale_min(x + 4, j, &scale, &min);
                    wd = half_value(half_bits(x)) * (float)scale;
                    wm[0] = -half_value(half_bits(x + 2)) * (float)min;
                    __m256i qs = _mm256_loadu_si256((const __m256i *)(x + 16 + j / 2 * 32));
                    if (j % 2) qs = _mm256_srli_epi16(qs, 4);
                    wv = _mm256_and_si256(qs, _mm256_set1_epi8(0x0f));
                } else {
                    job->unpack(w, b, unpacked, &wd, wm);
                    w_low = _mm256_loadu_si256((const __m256i *)unpacked);
                    w_high = _mm256_loadu_si256((const __m256i *)(unpacked + 16));
                    // int8 types: narrow to bytes in order (packs interleaves 128-bit lanes).
                    wv = _mm256_permute4x64_epi64(_mm256_packs_epi16(w_low, w_high), 0xd8);
                }
                __m256i magnitude = _mm256_abs_epi8(wv);
                for (size_t r = 0; r < count; r++) {
                    const int8_t *q = job->q + (r0 + r) * job->k + b * QK;
                    __m256i dot;
                    if (job->wide_weights) {  // int16 weights: widen x, vpmaddwd
                        __m256i x_low = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));
                        __m256i x_high = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16)));
                        dot = _mm256_add_epi32(_mm256_madd_epi16(x_low, w_low), _mm256_madd_epi16(x_high, w_high));
                    } else {
                        __m256i xv = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q), wv);
                        dot = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, xv), ones);
                    }
                    __m256 scale = _mm256_set1_ps(wd * job->d[(r0 + r) * blocks + b]);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[r]);
                    if (job->sums) offset_sums[r] += wm[0] * job->sums[(r0 + r) * blocks + b];
                    if (job->low_sums) offset_sums[r] += wm[1] * job->low_sums[(r0 + r) * blocks + b];
                }
            }
            float bias = job->bias_f32 ? job->bias_f32[j] : 0.0f;
            for (size_t r = 0; r < count; r++) {
                __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
                h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                h = _mm_add_ss(h, _mm_movehdup_ps(h));
                job->y[(r0 + r) * job->y_stride + j] = _mm_cvtss_f32(h) + offset_sums[r] + bias;
            }
        }
    }
}

// ---- driver ----

typedef struct {
    const uint8_t *w;
    size_t row_bytes;
    block_unpack_fn unpack;
    const uint8_t *a;    // [rows, k] quantized activations (u8 offset for VNNI, int16 for AVX2)
    const float *ad;     // [rows, k / 32]
    const float *sums;   // [rows, k / 32] or NULL
    const float *low_sums;
    size_t rows, k;
    const float *bias_f32;
    size_t n;
    float *y;
    size_t y_stride;
    size_t row_chunks, rows_per_chunk;
    const schnell_quant_kernel *kernels;
    size_t mr, nr;
    int corrections, wide, shift;
    block_halves_fn halves;  // Q3_K / Q6_K on the VNNI halves kernel, else NULL
} gemm_job;

static void gemm_items(void *context, size_t begin, size_t end) {
    const gemm_job *job = context;
    size_t blocks = job->k / QK;
    size_t per_block = (size_t)NC * KB;
    size_t steps = job->wide ? QK / 2 : QK / 4, a_element = job->wide ? 2 : 1;
    uint32_t *words = aligned_alloc(64, per_block * steps * sizeof(uint32_t));
    size_t sub = job->halves ? 2 : 1;
    float *scales = aligned_alloc(64, sub * per_block * sizeof(float));
    float *offsets = aligned_alloc(64, per_block * sizeof(float));
    float *low_offsets = aligned_alloc(64, per_block * sizeof(float));
    int32_t *corrections = job->corrections ? aligned_alloc(64, sub * per_block * sizeof(int32_t)) : NULL;
    if (!words || !scales || !offsets || !low_offsets || (job->corrections && !corrections)) {
        // No memory for the packed block: finish these items one block dot product at a time.
        for (size_t item = begin; item < end; item++) {
            size_t n0 = item / job->row_chunks * NC;
            size_t m_begin = item % job->row_chunks * job->rows_per_chunk;
            size_t m_end = m_begin + job->rows_per_chunk < job->rows ? m_begin + job->rows_per_chunk : job->rows;
            for (size_t r = m_begin; r < m_end; r++) {
                for (size_t j = n0; j < n0 + NC && j < job->n; j++) {
                    float sum = row_dot_generic(job->w + j * job->row_bytes, job->unpack,
                                                job->a + r * job->k * a_element, job->corrections, job->wide,
                                                job->ad + r * blocks, job->sums ? job->sums + r * blocks : NULL,
                                                job->low_sums ? job->low_sums + r * blocks : NULL, blocks);
                    job->y[r * job->y_stride + j] = sum + (job->bias_f32 ? job->bias_f32[j] : 0.0f);
                }
            }
        }
        free(words);
        free(scales);
        free(offsets);
        free(low_offsets);
        free(corrections);
        return;
    }
    for (size_t item = begin; item < end; item++) {
        size_t n0 = item / job->row_chunks * NC;
        size_t m_begin = item % job->row_chunks * job->rows_per_chunk;
        size_t m_end = m_begin + job->rows_per_chunk < job->rows ? m_begin + job->rows_per_chunk : job->rows;
        size_t columns = job->n - n0 < NC ? job->n - n0 : NC;
        for (size_t b0 = 0; b0 < blocks; b0 += KB) {
            size_t count = blocks - b0 < KB ? blocks - b0 : KB;
            pack_block(job->w, job->row_bytes, job->unpack, job->halves, job->n, n0, b0, count, job->nr, job->wide,
                       job->shift, words, scales, offsets, low_offsets, corrections);
            for (size_t m = m_begin; m < m_end; m += job->mr) {
                size_t mr = m_end - m < job->mr ? m_end - m : job->mr;
                for (size_t c = 0; c < columns; c += job->nr) {
                    size_t panel = c / job->nr;
                    job->kernels[mr](job->a + (m * job->k + b0 * QK) * a_element, job->k, job->ad + m * blocks + b0, blocks,
                                     words + panel * count * steps * job->nr, scales + panel * count * sub * job->nr,
                                     corrections ? corrections + panel * count * sub * job->nr : NULL,
                                     job->sums ? offsets + panel * count * job->nr : NULL,
                                     job->sums ? job->sums + m * blocks + b0 : NULL,
                                     job->low_sums ? low_offsets + panel * count * job->nr : NULL,
                                     job->low_sums ? job->low_sums + m * blocks + b0 : NULL, count,
                                     job->bias_f32 ? job->bias_f32 + n0 + c : NULL, b0 == 0,
                                     job->y + m * job->y_stride + n0 + c, job->y_stride,
                                     columns - c < job->nr ? columns - c : job->nr);
                }
            }
        }
    }
    free(words);
    free(scales);
    free(offsets);
    free(low_offsets);
    free(corrections);
}

// The quantized activations are kept between calls (as gemm_bf16.c's bf16 copy): faulting in
// fresh pages every call costs more than the quantization. A caller that finds the buffer in use
// by another thread takes a private one.
static schnell_scratch activation_scratch = SCHNELL_SCRATCH_INIT;

int schnell_linear_quantized(const float *x, size_t rows, size_t k, const void *weight, int weight_dtype,
                             const void *bias, int bias_dtype, size_t n, float *y, size_t y_stride) {
    block_unpack_fn unpack = unpack_for(weight_dtype);
    if (!unpack || k % schnell_dtype_block_values(weight_dtype)) return -1;
    if (rows == 0 || n == 0) return 0;
    int level = schnell_cpu_level();
    int vnni = level >= SCHNELL_CPU_AVX512 && schnell_cpu_has_avx512_vnni();
    size_t blocks = k / QK;
    size_t q_bytes = schnell_round_up(rows * k, 64);
    int shared;
    uint8_t *a = schnell_scratch_take(&activation_scratch, 2 * q_bytes + 3 * rows * blocks * sizeof(float), &shared);
    float *bias_f32 = bias ? malloc(n * sizeof(float)) : NULL;
    if (!a || (bias && !bias_f32)) {
        if (a) schnell_scratch_release(&activation_scratch, a, shared);
        free(bias_f32);
        return -1;
    }
    if (bias) schnell_convert_to_f32(bias, bias_dtype, bias_f32, n);
    float *ad = (float *)(a + 2 * q_bytes);
    size_t row_bytes = schnell_dtype_row_bytes(weight_dtype, k);

    // The packed kernel and the form of A it reads: u8 (q + 128) for vpdpbusd, int16 for the AVX2
    // int16 kernel.
    // The 4- and 5-bit types take the nibble kernels on AVX2 (signed A).
    const schnell_quant_kernel *kernels = NULL;
    size_t mr = 0, nr = 0;
    int offset_form = 0, wide = 0, shift = 0;
    block_halves_fn halves = NULL;
    if (vnni && !wide_weights(weight_dtype)) {
        kernels = schnell_quant_vnni_kernels, mr = VNNI_MR, nr = VNNI_NR, offset_form = 1;
    } else if (vnni) {
        kernels = schnell_quant_vnni_halves_kernels, mr = VNNI_MR, nr = VNNI_NR, offset_form = 1;
        halves = halves_for(weight_dtype);
    } else if (level >= SCHNELL_CPU_AVX2 && nibble_shift(weight_dtype) >= 0) {
        kernels = five_bit(weight_dtype) ? schnell_quant_five_bit_kernels : schnell_quant_nibble_kernels;
        mr = AVX2_MR, nr = AVX2_NR, shift = nibble_shift(weight_dtype);
    } else if (level >= SCHNELL_CPU_AVX2) {
        kernels = schnell_quant_avx2_kernels, mr = AVX2_MR, nr = AVX2_NR, wide = 1;
    }
    int packed = kernels && rows >= mr;
    if (!packed) offset_form = wide = shift = 0, halves = NULL;
    // Block sums of the activations, for the offsets (Q4_0's shifted q on the nibble kernel has one).
    float *sums = has_offsets(weight_dtype) || shift ? ad + rows * blocks : NULL;
    float *low_sums = has_low_offsets(weight_dtype) ? ad + 2 * rows * blocks : NULL;
    quantize_job quantize = {x, k, (int8_t *)a, ad, sums, low_sums, offset_form, wide, level};
    schnell_parallel_for(rows, 16, quantize_rows, &quantize);

    if (!packed) {
        dot_job job = {weight, row_bytes, unpack, (const int8_t *)a, ad, sums, low_sums, rows, k, bias_f32, y, y_stride,
                       wide_weights(weight_dtype)};
        schnell_parallel_for(n, 16, level >= SCHNELL_CPU_AVX2 ? dot_columns_avx2 : dot_columns, &job);
    } else {
        size_t column_blocks = (n + NC - 1) / NC, row_chunks;
        size_t rows_per_chunk = schnell_gemm_row_chunks(rows, column_blocks, mr, &row_chunks);
        gemm_job job = {weight, row_bytes, unpack, a, ad, sums, low_sums, rows, k, bias_f32, n, y, y_stride,
                        row_chunks, rows_per_chunk, kernels, mr, nr, offset_form, wide, shift, halves};
        schnell_parallel_for(column_blocks * row_chunks, 1, gemm_items, &job);
    }
    schnell_scratch_release(&activation_scratch, a, shared);
    free(bias_f32);
    return 0;
}
