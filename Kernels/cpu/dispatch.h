// Private helpers shared by the kernel files: run-time CPU dispatch and vector-friendly math.
//
// A fast kernel writes its inner loop once as an always-inline body, then instantiates it
// per tier with SCHNELL_VARIANTS: AVX-512, AVX2+FMA and generic builds (target attributes).
// The compiler vectorises each body for its target; schnell_cpu_level() picks one at run time.
// Kernels with hand-written intrinsics (the GEMM micro-kernels, the convolutions' gathers and
// transforms) have a version per tier of their own.
#ifndef SCHNELL_DISPATCH_H
#define SCHNELL_DISPATCH_H

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schnell_kernels.h"

#define SCHNELL_INLINE static inline __attribute__((always_inline))
#define SCHNELL_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define SCHNELL_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

// IEEE f16 -> float32, exactly (subnormals, infinities and NaNs included).
SCHNELL_INLINE float schnell_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            exponent = 113;
            while ((mantissa & 0x400) == 0) { mantissa <<= 1; exponent--; }
            bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
        }
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float result;
    memcpy(&result, &bits, 4);
    return result;
}

// A weight (or bias) as float32: the stored pointer when it already is, else a converted copy
// that *owned receives (freed by the caller).
SCHNELL_INLINE const float *schnell_as_f32(const void *data, int dtype, size_t count, float **owned) {
    *owned = NULL;
    if (!data || dtype == SCHNELL_F32) return data;
    *owned = malloc((count ? count : 1) * sizeof(float));
    if (*owned) schnell_convert_to_f32(data, dtype, *owned, count);
    return *owned;
}

// Defines name##_select(), returning the range function built for the tier in use from
// `static void name##_body(void *context, size_t begin, size_t end)` (always inline).
#define SCHNELL_VARIANTS(name)                                                              \
    SCHNELL_TARGET_AVX512 static void name##_avx512(void *c, size_t b, size_t e) {          \
        name##_body(c, b, e);                                                               \
    }                                                                                       \
    SCHNELL_TARGET_AVX2 static void name##_avx2(void *c, size_t b, size_t e) {              \
        name##_body(c, b, e);                                                               \
    }                                                                                       \
    static void name##_generic(void *c, size_t b, size_t e) { name##_body(c, b, e); }       \
    static schnell_range_fn name##_select(void) {                                           \
        int level = schnell_cpu_level();                                                    \
        return level >= SCHNELL_CPU_AVX512 ? name##_avx512                                  \
               : level >= SCHNELL_CPU_AVX2 ? name##_avx2                                    \
                                           : name##_generic;                                \
    }

// A buffer kept between calls for a kernel's per-call copy of its activations (faulting in fresh
// pages every call costs more than filling them): the caller that finds it free gets it (*shared
// set, its lock held until release); one that finds it in use by another thread gets a private
// buffer. NULL when memory is short.
typedef struct {
    pthread_mutex_t lock;
    void *buffer;
    size_t capacity;
} schnell_scratch;
#define SCHNELL_SCRATCH_INIT {PTHREAD_MUTEX_INITIALIZER, NULL, 0}
void *schnell_scratch_take(schnell_scratch *scratch, size_t bytes, int *shared);
void schnell_scratch_release(schnell_scratch *scratch, void *buffer, int shared);

// value rounded up to a multiple of step.
SCHNELL_INLINE size_t schnell_round_up(size_t value, size_t step) { return (value + step - 1) / step * step; }

// How a packed GEMM of `rows` rows and `column_blocks` column blocks splits into work items: the
// column blocks, and when they are too few for the pool (4 items a worker), row chunks too, never
// below 96 rows so re-packing a weight block per item stays a small cost. Returns the rows per
// chunk (a multiple of mr); *chunks receives the chunk count.
SCHNELL_INLINE size_t schnell_gemm_row_chunks(size_t rows, size_t column_blocks, size_t mr, size_t *chunks) {
    size_t wanted = (size_t)schnell_threads() * 4;
    size_t row_chunks = 1;
    if (column_blocks < wanted) {
        row_chunks = (wanted + column_blocks - 1) / column_blocks;
        size_t most = (rows + 95) / 96;
        if (row_chunks > most) row_chunks = most;
    }
    size_t rows_per_chunk = (rows + row_chunks - 1) / row_chunks;
    rows_per_chunk = (rows_per_chunk + mr - 1) / mr * mr;
    *chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    return rows_per_chunk;
}

// exp(x) for float32 without a libm call, so loops vectorise. Cody-Waite range reduction
// (x = n ln2 + r) and a degree-6 polynomial: relative error below 2e-7 over the float range.
SCHNELL_INLINE float schnell_expf(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.0f);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// tanh(x) = 1 - 2 / (exp(2x) + 1); saturates cleanly because schnell_expf clamps.
SCHNELL_INLINE float schnell_tanhf(float x) {
    return 1.0f - 2.0f / (schnell_expf(2.0f * x) + 1.0f);
}

SCHNELL_INLINE float schnell_sigmoidf(float x) {
    return 1.0f / (1.0f + schnell_expf(-x));
}

// erf via Abramowitz-Stegun 7.1.26 is too coarse for parity; this is the float32 rational
// approximation used by Eigen/XLA (max abs error ~1e-7 on [-4, 4], clamped beyond).
SCHNELL_INLINE float schnell_erff(float x) {
    x = fminf(fmaxf(x, -4.0f), 4.0f);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

SCHNELL_INLINE float schnell_activate(float x, int kind) {
    switch (kind) {
    case SCHNELL_GELU_TANH:
        return 0.5f * x * (1.0f + schnell_tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case SCHNELL_GELU_ERF:
        return 0.5f * x * (1.0f + schnell_erff(x * 0.7071067811865476f));
    case SCHNELL_QUICK_GELU:
        return x * schnell_sigmoidf(1.702f * x);
    case SCHNELL_SILU:
        return x * schnell_sigmoidf(x);
    default:
        return x > 0.0f ? x : 0.0f;
    }
}

// Reductions in 16 independent lanes (one zmm or two ymm registers), combined at the end: a plain
// `sum += x[i]` loop is strictly ordered and stays scalar without -ffast-math.
enum { SCHNELL_LANES = 16 };

SCHNELL_INLINE float schnell_sum(const float *x, size_t n) {
    float lanes[SCHNELL_LANES] = {0};
    size_t i = 0;
    for (; i + SCHNELL_LANES <= n; i += SCHNELL_LANES) {
        for (int l = 0; l < SCHNELL_LANES; l++) lanes[l] += x[i + l];
    }
    float total = 0.0f;
    for (; i < n; i++) total += x[i];
    for (int l = 0; l < SCHNELL_LANES; l++) total += lanes[l];
    return total;
}

// sum((x - center)^2)
SCHNELL_INLINE float schnell_sum_squares(const float *x, size_t n, float center) {
    float lanes[SCHNELL_LANES] = {0};
    size_t i = 0;
    for (; i + SCHNELL_LANES <= n; i += SCHNELL_LANES) {
        for (int l = 0; l < SCHNELL_LANES; l++) {
            float d = x[i + l] - center;
            lanes[l] += d * d;
        }
    }
    float total = 0.0f;
    for (; i < n; i++) total += (x[i] - center) * (x[i] - center);
    for (int l = 0; l < SCHNELL_LANES; l++) total += lanes[l];
    return total;
}

SCHNELL_INLINE float schnell_max(const float *x, size_t n) {
    float lanes[SCHNELL_LANES];
    for (int l = 0; l < SCHNELL_LANES; l++) lanes[l] = -INFINITY;
    size_t i = 0;
    for (; i + SCHNELL_LANES <= n; i += SCHNELL_LANES) {
        for (int l = 0; l < SCHNELL_LANES; l++) lanes[l] = lanes[l] > x[i + l] ? lanes[l] : x[i + l];
    }
    float result = -INFINITY;
    for (; i < n; i++) result = result > x[i] ? result : x[i];
    for (int l = 0; l < SCHNELL_LANES; l++) result = result > lanes[l] ? result : lanes[l];
    return result;
}

// x[i] = exp(x[i] - shift) in place; returns the sum of the results.
SCHNELL_INLINE float schnell_exp_shifted_sum(float *x, size_t n, float shift) {
    for (size_t i = 0; i < n; i++) x[i] = schnell_expf(x[i] - shift);
    return schnell_sum(x, n);
}

// Attention scores of `rows` queries over n keys, in place: times scale (skipped at 1), + bias
// rows (or NULL), causal mask (query first_query + r sees keys 0 ... first_query + r), then
// exp(s - row max). sums[r] receives 1 / row sum, 0 for a fully masked row (all weights zero).
SCHNELL_INLINE void schnell_softmax_weights(float *scores, size_t rows, size_t n, size_t first_query,
                                            const float *bias, int causal, float scale, float *sums) {
    for (size_t r = 0; r < rows; r++) {
        float *row = scores + r * n;
        if (scale != 1.0f) {
            for (size_t j = 0; j < n; j++) row[j] *= scale;
        }
        if (bias) {
            const float *b = bias + r * n;
            for (size_t j = 0; j < n; j++) row[j] += b[j];
        }
        if (causal) {
            for (size_t j = first_query + r + 1; j < n; j++) row[j] = -INFINITY;
        }
        float maximum = schnell_max(row, n);
        float sum = 0.0f;
        if (maximum == -INFINITY) {
            for (size_t j = 0; j < n; j++) row[j] = 0.0f;
        } else {
            sum = schnell_exp_shifted_sum(row, n, maximum);
        }
        sums[r] = sum > 0.0f ? 1.0f / sum : 0.0f;
    }
}

// Lanes [lo, hi) of a 64-lane vector group as bits (clamped to 0 ... 64).
SCHNELL_INLINE uint64_t schnell_lane_bits(ptrdiff_t lo, ptrdiff_t hi) {
    if (lo < 0) lo = 0;
    if (hi > 64) hi = 64;
    if (hi <= lo) return 0;
    uint64_t below_hi = hi == 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;
    return below_hi & ~(((uint64_t)1 << lo) - 1);
}

// The same activations through libm, for the reference loops.
static inline float schnell_activate_reference(float x, int kind) {
    switch (kind) {
    case SCHNELL_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case SCHNELL_GELU_ERF:
        return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case SCHNELL_QUICK_GELU:
        return x / (1.0f + expf(-1.702f * x));
    case SCHNELL_SILU:
        return x / (1.0f + expf(-x));
    default:
        return x > 0.0f ? x : 0.0f;
    }
}

#endif
