// ggml's (GGUF's) block types and the fp8 types: dequantization to float32 and the reference
// quantizers.
//
// Block layouts (byte offsets inside one block; f16 fields little-endian; ggml's block_* structs):
//   Q4_0  [0] f16 d  [2] qs[16]                       32 values: qs[j] low nibble -> value j,
//                                                     high nibble -> value j + 16; v = d (q - 8)
//   Q4_1  [0] d [2] m [4] qs[16]                      v = d q + m
//   Q5_0  [0] d [2] qh u32 [6] qs[16]                 bit i of qh is value i's fifth bit;
//                                                     v = d (q - 16)
//   Q5_1  [0] d [2] m [4] qh [8] qs[16]               v = d q + m
//   Q8_0  [0] d [2] int8 qs[32]                       v = d q
//   Q2_K  [0] scales[16] [16] qs[64] [80] d [82] dmin 256 values in 16 groups of 16; scale byte g
//         is (min << 4 | scale) of group g; value i = 128 h + 32 j + l is (qs[32 h + l] >> 2 j) & 3;
//         v = (d scale) q - (dmin min)
//   Q3_K  [0] hmask[32] [32] qs[64] [96] scales[12] [108] d
//         low 2 bits as Q2_K; bit i/32 of hmask[i % 32] set means no -4; 16 signed 6-bit scales
//         (low nibbles in bytes 0-7, group g < 8 low nibble, else high nibble of byte g - 8; high
//         2 bits at byte 8 + g % 4, shift 2 (g / 4)), stored + 32; v = (d scale) q
//   Q4_K  [0] d [2] dmin [4] scales[12] [16] qs[128]  8 groups of 32 with 6-bit scale and min
//         (groups 0-3: low 6 bits of bytes g and g + 4; groups 4-7: nibbles of byte g + 4 and the
//         top 2 bits of bytes g - 4 and g); value i = 64 c + 32 s + l is qs[32 c + l] nibble s;
//         v = (d scale) q - (dmin min)
//   Q5_K  [0] d [2] dmin [4] scales[12] [16] qh[32] [48] qs[128]
//         as Q4_K plus bit i/32 of qh[i % 32] as the fifth bit
//   Q6_K  [0] ql[128] [128] qh[64] [192] int8 scales[16] [208] d
//         value i = 128 h + r: low 4 bits ql[64 h + r % 64] nibble r / 64, high 2 bits
//         (qh[32 h + r % 32] >> 2 (r / 32)) & 3; v = (d scale) (q - 32), 16 groups of 16
// fp8: e5m2 is the top byte of an f16; e4m3fn (bias 7, 0x7f/0xff NaN, no infinities) in convert.c.
//
// Dequantization follows ggml's dequantize_row_* (the gguf Python package's dequantize) operation
// for operation in float32, so results are equal bit for bit. Each product there is exact (an f16
// scale times a scale of at most 8 bits times a level of at most 6 fits float32's 24 bits), so a
// fused multiply-add would give the same floats too. The reference decodes value by value from
// the layout above; the fast path decodes a block's levels to bytes, then scales whole groups, in
// loops the compiler vectorises (generic and AVX2 builds), in parallel over blocks.
//
// The quantizers follow ggml's quantize_row_*_ref (no importance matrix) operation for operation,
// including its round-to-nearest trick (nearest_int) and the search for the best scale and min.
// Their sums depend on each product being rounded, so the pragma below keeps products unfused
// whatever the target (the package builds the kernels with -ffp-contract=fast-honor-pragmas).
#include <float.h>
#include <pthread.h>

#include "dispatch.h"
#include "quant.h"

#pragma clang fp contract(off)

// ---- f16 and fp8 ----

// float32 -> f16, round to nearest even; overflow to infinity, NaN stays (quiet) NaN.
static uint16_t float_to_half(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    bits &= 0x7fffffffu;
    if (bits > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((bits >> 13) & 0x3ff);
    if (bits >= 0x477ff000u) return sign | 0x7c00;  // 65520 and above round to infinity
    if (bits < 0x38800000u) {
        // Below 2^-14: f16 subnormals, units of 2^-24 = the ulp of 0.5f, so the FPU rounds.
        float magnitude;
        memcpy(&magnitude, &bits, 4);
        float shifted = magnitude + 0.5f;
        uint32_t shifted_bits;
        memcpy(&shifted_bits, &shifted, 4);
        return sign | (uint16_t)(shifted_bits - 0x3f000000u);
    }
    uint32_t odd = (bits >> 13) & 1;
    bits += ((uint32_t)(15 - 127) << 23) + 0xfff + odd;
    return sign | (uint16_t)(bits >> 13);
}

// float32 -> an fp8 type with `mantissa_bits` (3 or 2) and `bias` (7 or 15), round to nearest
// even, as torch's .to(float8_*) (checked on torch 2.15): NaN -> 0x7f with the sign. Magnitudes
// from `overflow` (the first value that rounds past the largest finite) become `overflow_code`:
// e4m3fn saturates to 448 (0x7e), infinity included; e5m2 goes to infinity (0x7c).
static uint8_t float_to_fp8(float value, int mantissa_bits, int bias, float overflow,
                            uint8_t overflow_code) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    uint8_t sign = (uint8_t)((bits >> 24) & 0x80);
    bits &= 0x7fffffffu;
    if (bits > 0x7f800000u) return sign | 0x7f;
    float magnitude;
    memcpy(&magnitude, &bits, 4);
    if (magnitude >= overflow) return sign | overflow_code;
    float smallest_normal = ldexpf(1.0f, 1 - bias);
    if (magnitude < smallest_normal) {
        // Subnormals in units of 2^(1 - bias - mantissa_bits): add a power of two whose ulp is
        // that unit and let the FPU round.
        float anchor = ldexpf(1.0f, 1 - bias - mantissa_bits + 23);
        float shifted = magnitude + anchor;
        uint32_t shifted_bits, anchor_bits;
        memcpy(&shifted_bits, &shifted, 4);
        memcpy(&anchor_bits, &anchor, 4);
        return sign | (uint8_t)(shifted_bits - anchor_bits);
    }
    int drop = 23 - mantissa_bits;
    uint32_t odd = (bits >> drop) & 1;
    bits += ((uint32_t)(bias - 127) << 23) + (1u << (drop - 1)) - 1 + odd;
    return sign | (uint8_t)(bits >> drop);
}

SCHNELL_INLINE float e5m2_to_float(uint8_t value) { return schnell_half_to_float((uint16_t)(value << 8)); }

SCHNELL_INLINE float load_half(const uint8_t *bytes) {
    uint16_t h;
    memcpy(&h, bytes, 2);
    return schnell_half_to_float(h);
}

SCHNELL_INLINE void store_half(uint8_t *bytes, float value) {
    uint16_t h = float_to_half(value);
    memcpy(bytes, &h, 2);
}

// The 6-bit scale and min of group j (0-7) of a Q4_K / Q5_K block (ggml's get_scale_min_k4).
SCHNELL_INLINE void k4_scale_min(const uint8_t *scales, int j, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = scales[j] & 63;
        *min = scales[j + 4] & 63;
    } else {
        *scale = (scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4);
        *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

// The signed scale of group g (0-15) of a Q3_K block.
SCHNELL_INLINE int q3k_scale(const uint8_t *scales, int g) {
    int low = g < 8 ? scales[g] & 0xf : scales[g - 8] >> 4;
    int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (low | high << 4) - 32;
}

// ---- dequantization, value by value (the reference) ----

static float reference_value(const uint8_t *b, int dtype, int i) {
    switch (dtype) {
    case SCHNELL_Q4_0: {
        int q = i < 16 ? b[2 + i] & 0xf : b[2 + i - 16] >> 4;
        return load_half(b) * (float)(q - 8);
    }
    case SCHNELL_Q4_1: {
        int q = i < 16 ? b[4 + i] & 0xf : b[4 + i - 16] >> 4;
        return load_half(b) * (float)q + load_half(b + 2);
    }
    case SCHNELL_Q5_0: {
        uint32_t high;
        memcpy(&high, b + 2, 4);
        int q = (i < 16 ? b[6 + i] & 0xf : b[6 + i - 16] >> 4) | (int)((high >> i) & 1) << 4;
        return load_half(b) * (float)(q - 16);
    }
    case SCHNELL_Q5_1: {
        uint32_t high;
        memcpy(&high, b + 4, 4);
        int q = (i < 16 ? b[8 + i] & 0xf : b[8 + i - 16] >> 4) | (int)((high >> i) & 1) << 4;
        return load_half(b) * (float)q + load_half(b + 2);
    }
    case SCHNELL_Q8_0:
        return load_half(b) * (float)(int8_t)b[2 + i];
    case SCHNELL_Q2_K: {
        int h = i / 128, j = i % 128 / 32, l = i % 32;
        int q = (b[16 + 32 * h + l] >> (2 * j)) & 3;
        uint8_t scale = b[i / 16];
        float dl = load_half(b + 80) * (float)(scale & 0xf);
        float ml = load_half(b + 82) * (float)(scale >> 4);
        return dl * (float)q - ml;
    }
    case SCHNELL_Q3_K: {
        int h = i / 128, j = i % 128 / 32, l = i % 32;
        int q = (b[32 + 32 * h + l] >> (2 * j)) & 3;
        if (!((b[i % 32] >> (i / 32)) & 1)) q -= 4;
        float dl = load_half(b + 108) * (float)q3k_scale(b + 96, i / 16);
        return dl * (float)q;
    }
    case SCHNELL_Q4_K:
    case SCHNELL_Q5_K: {
        int c = i / 64, s = i % 64 / 32, l = i % 32;
        const uint8_t *qs = b + (dtype == SCHNELL_Q4_K ? 16 : 48);
        int q = (qs[32 * c + l] >> (4 * s)) & 0xf;
        if (dtype == SCHNELL_Q5_K) q |= ((b[16 + l] >> (i / 32)) & 1) << 4;
        uint8_t scale, min;
        k4_scale_min(b + 4, i / 32, &scale, &min);
        float dl = load_half(b) * (float)scale;
        float ml = load_half(b + 2) * (float)min;
        return dl * (float)q - ml;
    }
    default: {  // Q6_K
        int h = i / 128, r = i % 128;
        int low = (b[64 * h + r % 64] >> (4 * (r / 64))) & 0xf;
        int high = (b[128 + 32 * h + r % 32] >> (2 * (r / 32))) & 3;
        float dl = load_half(b + 208) * (float)(int8_t)b[192 + i / 16];
        return dl * (float)((low | high << 4) - 32);
    }
    }
}

void schnell_dequantize_reference(const void *source, int dtype, float *destination, size_t count) {
    const uint8_t *bytes = source;
    if (dtype == SCHNELL_F8_E5M2) {
        for (size_t i = 0; i < count; i++) destination[i] = e5m2_to_float(bytes[i]);
        return;
    }
    size_t values = schnell_dtype_block_values(dtype), block_bytes = schnell_dtype_block_bytes(dtype);
    for (size_t block = 0; block < count / values; block++) {
        for (size_t i = 0; i < values; i++) {
            destination[block * values + i] = reference_value(bytes + block * block_bytes, dtype, (int)i);
        }
    }
}

// ---- dequantization, group by group (the fast path) ----

// 32 values from 16 bytes of nibbles (plus fifth bits from `high`, or none), as d q + m
// (offset_q subtracted from q first when m is not used, as Q4_0 / Q5_0 do).
SCHNELL_INLINE void decode_32(const uint8_t *restrict qs, uint32_t high, int high_bits, float d, float m,
                              int with_min, int offset_q, float *restrict y) {
    for (int j = 0; j < 16; j++) {
        int q0 = (qs[j] & 0xf) | (high_bits ? (int)((high >> j) & 1) << 4 : 0);
        int q1 = (qs[j] >> 4) | (high_bits ? (int)((high >> (j + 16)) & 1) << 4 : 0);
        if (with_min) {
            y[j] = d * (float)q0 + m;
            y[j + 16] = d * (float)q1 + m;
        } else {
            y[j] = d * (float)(q0 - offset_q);
            y[j + 16] = d * (float)(q1 - offset_q);
        }
    }
}

SCHNELL_INLINE void dequantize_block(const uint8_t *restrict b, int dtype, float *restrict y) {
    switch (dtype) {
    case SCHNELL_Q4_0:
        decode_32(b + 2, 0, 0, load_half(b), 0.0f, 0, 8, y);
        break;
    case SCHNELL_Q4_1:
        decode_32(b + 4, 0, 0, load_half(b), load_half(b + 2), 1, 0, y);
        break;
    case SCHNELL_Q5_0: {
        uint32_t high;
        memcpy(&high, b + 2, 4);
        decode_32(b + 6, high, 1, load_half(b), 0.0f, 0, 16, y);
        break;
    }
    case SCHNELL_Q5_1: {
        uint32_t high;
        memcpy(&high, b + 4, 4);
        decode_32(b + 8, high, 1, load_half(b), load_half(b + 2), 1, 0, y);
        break;
    }
    case SCHNELL_Q8_0: {
        float d = load_half(b);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
        break;
    }
    case SCHNELL_Q2_K: {
        int8_t q[256];
        for (int h = 0; h < 2; h++) {
            for (int j = 0; j < 4; j++) {
                for (int l = 0; l < 32; l++) q[128 * h + 32 * j + l] = (int8_t)((b[16 + 32 * h + l] >> (2 * j)) & 3);
            }
        }
        float d = load_half(b + 80), dmin = load_half(b + 82);
        for (int g = 0; g < 16; g++) {
            float dl = d * (float)(b[g] & 0xf), ml = dmin * (float)(b[g] >> 4);
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l] - ml;
        }
        break;
    }
    case SCHNELL_Q3_K: {
        int8_t q[256];
        for (int h = 0; h < 2; h++) {
            for (int j = 0; j < 4; j++) {
                int bit = 4 * h + j;
                for (int l = 0; l < 32; l++) {
                    int low = (b[32 + 32 * h + l] >> (2 * j)) & 3;
                    q[128 * h + 32 * j + l] = (int8_t)(low - (((b[l] >> bit) & 1) ? 0 : 4));
                }
            }
        }
        float d = load_half(b + 108);
        for (int g = 0; g < 16; g++) {
            float dl = d * (float)q3k_scale(b + 96, g);
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l];
        }
        break;
    }
    case SCHNELL_Q4_K:
    case SCHNELL_Q5_K: {
        float d = load_half(b), dmin = load_half(b + 2);
        const uint8_t *qs = b + (dtype == SCHNELL_Q4_K ? 16 : 48), *qh = b + 16;
        int fifth = dtype == SCHNELL_Q5_K;
        for (int g = 0; g < 8; g++) {
            uint8_t scale, min;
            k4_scale_min(b + 4, g, &scale, &min);
            float dl = d * (float)scale, ml = dmin * (float)min;
            const uint8_t *q = qs + 32 * (g / 2);
            int shift = 4 * (g % 2);
            for (int l = 0; l < 32; l++) {
                int value = ((q[l] >> shift) & 0xf) | (fifth ? ((qh[l] >> g) & 1) << 4 : 0);
                y[32 * g + l] = dl * (float)value - ml;
            }
        }
        break;
    }
    default: {  // Q6_K
        int8_t q[256];
        for (int h = 0; h < 2; h++) {
            const uint8_t *low = b + 64 * h, *high = b + 128 + 32 * h;
            int8_t *out = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                out[l] = (int8_t)(((low[l] & 0xf) | (high[l] & 3) << 4) - 32);
                out[l + 32] = (int8_t)(((low[l + 32] & 0xf) | ((high[l] >> 2) & 3) << 4) - 32);
                out[l + 64] = (int8_t)(((low[l] >> 4) | ((high[l] >> 4) & 3) << 4) - 32);
                out[l + 96] = (int8_t)(((low[l + 32] >> 4) | ((high[l] >> 6) & 3) << 4) - 32);
            }
        }
        float d = load_half(b + 208);
        for (int g = 0; g < 16; g++) {
            float dl = d * (float)(int8_t)b[192 + g];
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l];
        }
        break;
    }
    }
}

typedef struct {
    const uint8_t *source;
    int dtype;
    float *destination;
} dequantize_job;

static float e5m2_table[256];
static void fill_e5m2_table(void) {
    for (int i = 0; i < 256; i++) e5m2_table[i] = e5m2_to_float((uint8_t)i);
}

// Over blocks [begin, end) (single values for e5m2).
SCHNELL_INLINE void dequantize_body(void *context, size_t begin, size_t end) {
    const dequantize_job *job = context;
    if (job->dtype == SCHNELL_F8_E5M2) {
        for (size_t i = begin; i < end; i++) job->destination[i] = e5m2_table[job->source[i]];
        return;
    }
    size_t values = schnell_dtype_block_values(job->dtype), bytes = schnell_dtype_block_bytes(job->dtype);
    for (size_t block = begin; block < end; block++) {
        dequantize_block(job->source + block * bytes, job->dtype, job->destination + block * values);
    }
}

// Two builds, not SCHNELL_VARIANTS' three: clang's AVX-512 build of these loops vectorised across
// groups with scattered stores and ran 5-10x slower than its AVX2 build on Q2_K and Q6_K (1.6x on
// e5m2's table), so the AVX-512 tiers run the AVX2 one (6-10 values per ns per core).
SCHNELL_TARGET_AVX2 static void dequantize_avx2(void *context, size_t begin, size_t end) {
    dequantize_body(context, begin, end);
}

static void dequantize_generic(void *context, size_t begin, size_t end) {
    dequantize_body(context, begin, end);
}

void schnell_dequantize(const void *source, int dtype, float *destination, size_t count) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_e5m2_table);
    dequantize_job job = {source, dtype, destination};
    size_t values = schnell_dtype_block_values(dtype);
    // About 16K values a task: enough to amortise waking a worker.
    size_t grain = (1 << 14) / values;
    schnell_range_fn dequantize = schnell_cpu_level() >= SCHNELL_CPU_AVX2 ? dequantize_avx2 : dequantize_generic;
    schnell_parallel_for(count / values, grain ? grain : 1, dequantize, &job);
}

// ---- quantization helpers (ggml's make_*_quants, without an importance matrix) ----

// Round to nearest, ties to even, by adding 1.5 * 2^23 and reading the low mantissa bits (ggml's
// nearest_int); valid for |value| < 2^22, beyond which it returns what ggml's does.
static inline int nearest_int(float value) {
    float shifted = value + 12582912.f;
    int bits;
    memcpy(&bits, &shifted, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int clamp_int(int value, int low, int high) {
    return value < low ? low : value > high ? high : value;
}

static inline int at_most(int value, int high) { return value > high ? high : value; }

static const float group_max_eps = 1e-15f;  // groups with max |x| below this quantize to zero

// The value of largest magnitude among x[0:n] (the first of equal magnitudes), sign kept.
static float signed_max(int n, const float *x) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    return max;
}

// Levels l = clamp(round(iscale x), -nmax, nmax - 1) of x[0:n], stored as l + offset in levels
// (unless levels is NULL), and the x^2-weighted sums of x l and l^2 they give (ggml's rmse_type 1).
static void weighted_levels(int n, int nmax, float iscale, const float *x, int8_t *levels, int offset,
                            float *sumlx, float *suml2) {
    float lx = 0, l2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        if (levels) levels[i] = (int8_t)(l + offset);
        float w = x[i] * x[i];
        lx += w * x[i] * l;
        l2 += w * l * l;
    }
    *sumlx = lx;
    *suml2 = l2;
}

// Symmetric quantization of n values to [-nmax, nmax - 1] (stored + nmax in levels), weights
// x^2 (ggml's rmse_type 1), trying 18 scales around nmax / max. Returns the scale.
static float symmetric_levels(int n, int nmax, const float *x, int8_t *levels) {
    float max = signed_max(n, x);
    if (fabsf(max) < group_max_eps) {
        memset(levels, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx, suml2;
    weighted_levels(n, nmax, iscale, x, levels, nmax, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = -(nmax + 0.1f * step) / max;
        weighted_levels(n, nmax, iscale, x, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                levels[i] = (int8_t)(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Q3_K's symmetric quantization (ggml's make_q3_quants with do_rmse): start from nmax / max,
// then up to 5 passes moving single levels while the x^2-weighted fit improves.
static float q3_levels(int n, int nmax, const float *x, int8_t *levels) {
    float max = signed_max(n, x);
    if (fabsf(max) < group_max_eps) {
        memset(levels, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx, suml2;
    weighted_levels(n, nmax, iscale, x, levels, 0, &sumlx, &suml2);
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * levels[i];
            if (slx > 0) {
                float sl2 = suml2 - w * levels[i] * levels[i];
                int l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (l != levels[i]) {
                    slx += w * x[i] * l;
                    sl2 += w * l * l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        levels[i] = (int8_t)l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) levels[i] = (int8_t)(levels[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric quantization of n values to levels 0 ... nmax as scale l - min (ggml's
// make_qkx2_quants): the plain fit, then nstep + 1 trial scales (rmin + rdelta k + nmax) / range
// each refit by weighted least squares, keeping the lowest weighted error (absolute with
// use_mad, else squared). Returns the scale; *negative_min receives min as a positive number.
static float asymmetric_levels(int n, int nmax, const float *x, const float *weights,
                               uint8_t *levels, float *negative_min, float rmin, float rdelta,
                               int nstep, int use_mad) {
    uint8_t trial[32];
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(levels, 0, (size_t)n);
        *negative_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        levels[i] = (uint8_t)clamp_int(l, 0, nmax);
        float diff = scale * levels[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * step + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            trial[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float determinant = sum_w * sum_l2 - sum_l * sum_l;
        if (determinant > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / determinant;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / determinant;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * trial[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                error += weights[i] * diff;
            }
            if (error < best_error) {
                memcpy(levels, trial, (size_t)n);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *negative_min = -min;
    return scale;
}

// ---- the block quantizers: one block of x into b ----

// Levels j and j + 16 of a 32-value block: their low 4 bits as one byte of qs, their fifth bits
// into bits j and j + 16 of *high (which stay zero for 4-bit levels).
static void pack_pair(uint8_t *qs, uint32_t *high, int j, uint8_t q0, uint8_t q1) {
    qs[j] = (uint8_t)((q0 & 0xf) | (q1 & 0xf) << 4);
    *high |= (uint32_t)((q0 & 0x10) >> 4) << j | (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
}

// Q4_0 / Q5_0: d = the value of largest magnitude / -(2^(bits-1)), q = trunc(x / d + offset + 0.5).
static void quantize_symmetric_32(const float *x, uint8_t *b, int five_bits) {
    const float max = signed_max(32, x);
    const float d = max / (five_bits ? -16 : -8);
    const float id = d ? 1.0f / d : 0.0f;
    store_half(b, d);
    uint8_t *qs = b + (five_bits ? 6 : 2);
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        float x0 = x[j] * id, x1 = x[j + 16] * id;
        uint8_t q0, q1;
        if (five_bits) {
            q0 = (uint8_t)at_most((int8_t)(x0 + 16.5f), 31);
            q1 = (uint8_t)at_most((int8_t)(x1 + 16.5f), 31);
        } else {
            q0 = (uint8_t)at_most((int8_t)(x0 + 8.5f), 15);
            q1 = (uint8_t)at_most((int8_t)(x1 + 8.5f), 15);
        }
        pack_pair(qs, &high, j, q0, q1);
    }
    if (five_bits) memcpy(b + 2, &high, 4);
}

// Q4_1 / Q5_1: d = (max - min) / (2^bits - 1), m = min, q = trunc((x - min) / d + 0.5).
static void quantize_affine_32(const float *x, uint8_t *b, int five_bits) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / (five_bits ? 31 : 15);
    const float id = d ? 1.0f / d : 0.0f;
    store_half(b, d);
    store_half(b + 2, min);
    uint8_t *qs = b + (five_bits ? 8 : 4);
    uint32_t high = 0;
    for (int j = 0; j < 16; j++) {
        float x0 = (x[j] - min) * id, x1 = (x[j + 16] - min) * id;
        uint8_t q0, q1;
        if (five_bits) {
            q0 = (uint8_t)(x0 + 0.5f);
            q1 = (uint8_t)(x1 + 0.5f);
        } else {
            q0 = (uint8_t)at_most((int8_t)(x0 + 0.5f), 15);
            q1 = (uint8_t)at_most((int8_t)(x1 + 0.5f), 15);
        }
        pack_pair(qs, &high, j, q0, q1);
    }
    if (five_bits) memcpy(b + 4, &high, 4);
}

// Q8_0: d = max |x| / 127, q = round(x / d) half away from zero.
static void quantize_q8_0(const float *x, uint8_t *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    store_half(b, d);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

// Q2_K: per group of 16 an asymmetric 2-bit fit weighted by |x|; the 16 scales and mins are
// themselves quantized to 4 bits against their maxima, then the levels are recomputed with them.
static void quantize_q2_k(const float *x, uint8_t *b) {
    uint8_t levels[256];
    float weights[16], scales[16], mins[16];
    float max_scale = 0, max_min = 0;
    for (int g = 0; g < 16; g++) {
        for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * g + l]);
        scales[g] = asymmetric_levels(16, 3, x + 16 * g, weights, levels + 16 * g, &mins[g],
                                      -0.5f, 0.1f, 15, 1);
        if (scales[g] > max_scale) max_scale = scales[g];
        if (mins[g] > max_min) max_min = mins[g];
    }
    uint8_t *packed_scales = b, *qs = b + 16;
    if (max_scale > 0) {
        float iscale = 15.f / max_scale;
        for (int g = 0; g < 16; g++) packed_scales[g] = (uint8_t)nearest_int(iscale * scales[g]);
        store_half(b + 80, max_scale / 15.f);
    } else {
        memset(packed_scales, 0, 16);
        store_half(b + 80, 0.0f);
    }
    if (max_min > 0) {
        float iscale = 15.f / max_min;
        for (int g = 0; g < 16; g++) packed_scales[g] |= (uint8_t)(nearest_int(iscale * mins[g]) << 4);
        store_half(b + 82, max_min / 15.f);
    } else {
        store_half(b + 82, 0.0f);
    }
    for (int g = 0; g < 16; g++) {
        const float d = load_half(b + 80) * (packed_scales[g] & 0xf);
        if (!d) continue;
        const float dm = load_half(b + 82) * (packed_scales[g] >> 4);
        for (int l = 0; l < 16; l++) {
            levels[16 * g + l] = (uint8_t)clamp_int(nearest_int((x[16 * g + l] + dm) / d), 0, 3);
        }
    }
    for (int h = 0; h < 2; h++) {
        const uint8_t *L = levels + 128 * h;
        for (int l = 0; l < 32; l++) {
            qs[32 * h + l] = (uint8_t)(L[l] | L[l + 32] << 2 | L[l + 64] << 4 | L[l + 96] << 6);
        }
    }
}

// Q3_K: per group of 16 a symmetric 3-bit fit; the signed scales are quantized to 6 bits against
// the one of largest magnitude, then the levels are recomputed with them.
static void quantize_q3_k(const float *x, uint8_t *b) {
    int8_t levels[256];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int g = 0; g < 16; g++) {
        scales[g] = q3_levels(16, 4, x + 16 * g, levels + 16 * g);
        if (fabsf(scales[g]) > amax) {
            amax = fabsf(scales[g]);
            max_scale = scales[g];
        }
    }
    uint8_t *hmask = b, *qs = b + 32, *packed_scales = b + 96;
    memset(packed_scales, 0, 12);
    if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int g = 0; g < 16; g++) {
            int8_t l = (int8_t)nearest_int(iscale * scales[g]);
            l = (int8_t)(clamp_int(l, -32, 31) + 32);
            if (g < 8) packed_scales[g] = l & 0xf;
            else packed_scales[g - 8] |= (uint8_t)((l & 0xf) << 4);
            l >>= 4;
            packed_scales[g % 4 + 8] |= (uint8_t)(l << (2 * (g / 4)));
        }
        store_half(b + 108, 1 / iscale);
    } else {
        store_half(b + 108, 0.0f);
    }
    for (int g = 0; g < 16; g++) {
        float d = load_half(b + 108) * q3k_scale(packed_scales, g);
        if (!d) continue;
        for (int l = 0; l < 16; l++) {
            levels[16 * g + l] = (int8_t)(clamp_int(nearest_int(x[16 * g + l] / d), -4, 3) + 4);
        }
    }
    memset(hmask, 0, 32);
    for (int i = 0; i < 256; i++) {
        if (levels[i] > 3) {
            hmask[i % 32] |= (uint8_t)(1 << (i / 32));
            levels[i] -= 4;
        }
    }
    for (int h = 0; h < 2; h++) {
        const int8_t *L = levels + 128 * h;
        for (int l = 0; l < 32; l++) {
            qs[32 * h + l] = (uint8_t)(L[l] | L[l + 32] << 2 | L[l + 64] << 4 | L[l + 96] << 6);
        }
    }
}

// Q4_K / Q5_K: per group of 32 an asymmetric fit weighted by rms(group) + |x|; scales and mins
// quantized to 6 bits against their maxima, then the levels recomputed with them.
static void quantize_q45_k(const float *x, uint8_t *b, int five_bits) {
    const int nmax = five_bits ? 31 : 15;
    uint8_t levels[256];
    float weights[32], scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int g = 0; g < 8; g++) {
        const float *group = x + 32 * g;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += group[l] * group[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(group[l]);
        scales[g] = asymmetric_levels(32, nmax, group, weights, levels + 32 * g, &mins[g],
                                      five_bits ? -0.5f : -1.f, 0.1f, five_bits ? 15 : 20, 0);
        if (scales[g] > max_scale) max_scale = scales[g];
        if (mins[g] > max_min) max_min = mins[g];
    }
    uint8_t *packed = b + 4;
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int g = 0; g < 8; g++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[g]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[g]);
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (g < 4) {
            packed[g] = ls;
            packed[g + 4] = lm;
        } else {
            packed[g + 4] = (uint8_t)((ls & 0xf) | (lm & 0xf) << 4);
            packed[g - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[g] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    store_half(b, max_scale / 63.f);
    store_half(b + 2, max_min / 63.f);
    for (int g = 0; g < 8; g++) {
        uint8_t scale, min;
        k4_scale_min(packed, g, &scale, &min);
        const float d = load_half(b) * scale;
        if (!d) continue;
        const float dm = load_half(b + 2) * min;
        for (int l = 0; l < 32; l++) {
            levels[32 * g + l] = (uint8_t)clamp_int(nearest_int((x[32 * g + l] + dm) / d), 0, nmax);
        }
    }
    uint8_t *qs = b + (five_bits ? 48 : 16), *qh = b + 16;
    if (five_bits) memset(qh, 0, 32);
    for (int c = 0; c < 4; c++) {
        const uint8_t *L = levels + 64 * c;
        for (int l = 0; l < 32; l++) {
            int low = L[l], high = L[l + 32];
            if (five_bits) {
                if (low > 15) { low -= 16; qh[l] |= (uint8_t)(1 << (2 * c)); }
                if (high > 15) { high -= 16; qh[l] |= (uint8_t)(2 << (2 * c)); }
            }
            qs[32 * c + l] = (uint8_t)(low | high << 4);
        }
    }
}

// Q6_K: per group of 16 a symmetric 6-bit fit; int8 scales against the largest magnitude.
static void quantize_q6_k(const float *x, uint8_t *b) {
    int8_t levels[256];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int g = 0; g < 16; g++) {
        scales[g] = symmetric_levels(16, 32, x + 16 * g, levels + 16 * g);
        if (fabsf(scales[g]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[g]);
            max_scale = scales[g];
        }
    }
    if (max_abs_scale < group_max_eps) {
        memset(b, 0, 210);
        return;
    }
    float iscale = -128.f / max_scale;
    store_half(b + 208, 1 / iscale);
    int8_t *packed_scales = (int8_t *)(b + 192);
    for (int g = 0; g < 16; g++) {
        int l = nearest_int(iscale * scales[g]);
        packed_scales[g] = (int8_t)(l < 127 ? l : 127);
    }
    for (int g = 0; g < 16; g++) {
        float d = load_half(b + 208) * packed_scales[g];
        if (!d) continue;
        for (int l = 0; l < 16; l++) {
            levels[16 * g + l] = (int8_t)(clamp_int(nearest_int(x[16 * g + l] / d), -32, 31) + 32);
        }
    }
    for (int h = 0; h < 2; h++) {
        const int8_t *L = levels + 128 * h;
        uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((L[l] & 0xf) | (L[l + 64] & 0xf) << 4);
            ql[l + 32] = (uint8_t)((L[l + 32] & 0xf) | (L[l + 96] & 0xf) << 4);
            qh[l] = (uint8_t)((L[l] >> 4) | (L[l + 32] >> 4) << 2 | (L[l + 64] >> 4) << 4 | (L[l + 96] >> 4) << 6);
        }
    }
}

void schnell_quantize_reference(const float *source, int dtype, void *destination, size_t count) {
    uint8_t *out = destination;
    switch (dtype) {
    case SCHNELL_F32:
        memcpy(destination, source, count * sizeof(float));
        return;
    case SCHNELL_F16:
        for (size_t i = 0; i < count; i++) store_half(out + 2 * i, source[i]);
        return;
    case SCHNELL_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t half;
            schnell_f32_to_bf16(&source[i], &half, 1);
            memcpy(out + 2 * i, &half, 2);
        }
        return;
    case SCHNELL_F8_E4M3:
        for (size_t i = 0; i < count; i++) out[i] = float_to_fp8(source[i], 3, 7, 464.0f, 0x7e);
        return;
    case SCHNELL_F8_E5M2:
        for (size_t i = 0; i < count; i++) out[i] = float_to_fp8(source[i], 2, 15, 61440.0f, 0x7c);
        return;
    default:
        break;
    }
    size_t values = schnell_dtype_block_values(dtype), bytes = schnell_dtype_block_bytes(dtype);
    for (size_t block = 0; block < count / values; block++) {
        const float *x = source + block * values;
        uint8_t *b = out + block * bytes;
        switch (dtype) {
        case SCHNELL_Q4_0: quantize_symmetric_32(x, b, 0); break;
        case SCHNELL_Q5_0: quantize_symmetric_32(x, b, 1); break;
        case SCHNELL_Q4_1: quantize_affine_32(x, b, 0); break;
        case SCHNELL_Q5_1: quantize_affine_32(x, b, 1); break;
        case SCHNELL_Q8_0: quantize_q8_0(x, b); break;
        case SCHNELL_Q2_K: quantize_q2_k(x, b); break;
        case SCHNELL_Q3_K: quantize_q3_k(x, b); break;
        case SCHNELL_Q4_K: quantize_q45_k(x, b, 0); break;
        case SCHNELL_Q5_K: quantize_q45_k(x, b, 1); break;
        case SCHNELL_Q6_K: quantize_q6_k(x, b); break;
        default: break;
        }
    }
}
