// Storage dtypes -> float32. Weights stay memory-mapped in their stored dtype; GEMMs convert
// blocks of them through these on the fly.
#include <immintrin.h>
#include <pthread.h>

#include "dispatch.h"
#include "quant.h"

size_t schnell_dtype_size(int dtype) {
    switch (dtype) {
    case SCHNELL_F32: return 4;
    case SCHNELL_F16:
    case SCHNELL_BF16: return 2;
    case SCHNELL_F8_E4M3:
    case SCHNELL_F8_E5M2: return 1;
    default: return 0;
    }
}

size_t schnell_dtype_block_values(int dtype) {
    switch (dtype) {
    case SCHNELL_Q4_0: case SCHNELL_Q4_1: case SCHNELL_Q5_0: case SCHNELL_Q5_1: case SCHNELL_Q8_0:
        return 32;
    case SCHNELL_Q2_K: case SCHNELL_Q3_K: case SCHNELL_Q4_K: case SCHNELL_Q5_K: case SCHNELL_Q6_K:
        return 256;
    default:
        return schnell_dtype_size(dtype) ? 1 : 0;
    }
}

size_t schnell_dtype_block_bytes(int dtype) {
    switch (dtype) {
    case SCHNELL_Q4_0: return 18;
    case SCHNELL_Q4_1: return 20;
    case SCHNELL_Q5_0: return 22;
    case SCHNELL_Q5_1: return 24;
    case SCHNELL_Q8_0: return 34;
    case SCHNELL_Q2_K: return 84;
    case SCHNELL_Q3_K: return 110;
    case SCHNELL_Q4_K: return 144;
    case SCHNELL_Q5_K: return 176;
    case SCHNELL_Q6_K: return 210;
    default: return schnell_dtype_size(dtype);
    }
}

size_t schnell_dtype_row_bytes(int dtype, size_t count) {
    size_t values = schnell_dtype_block_values(dtype);
    return values ? count / values * schnell_dtype_block_bytes(dtype) : 0;
}

// OCP FP8 E4M3 (torch.float8_e4m3fn): bias 7, no infinities, 0x7f/0xff are NaN.
static float e4m3_to_float(uint8_t v) {
    int sign = v >> 7, exponent = (v >> 3) & 0xf, mantissa = v & 7;
    float magnitude;
    if (exponent == 15 && mantissa == 7) magnitude = NAN;
    else if (exponent == 0) magnitude = ldexpf((float)mantissa / 8.0f, -6);
    else magnitude = ldexpf(1.0f + (float)mantissa / 8.0f, exponent - 7);
    return sign ? -magnitude : magnitude;
}

static float bf16_to_float(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float result;
    memcpy(&result, &bits, 4);
    return result;
}

void schnell_convert_to_f32_reference(const void *source, int dtype, float *destination,
                                      size_t count) {
    if (dtype == SCHNELL_F8_E5M2 || schnell_dtype_block_values(dtype) > 1) {
        schnell_dequantize_reference(source, dtype, destination, count);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        switch (dtype) {
        case SCHNELL_F32: destination[i] = ((const float *)source)[i]; break;
        case SCHNELL_F16: destination[i] = schnell_half_to_float(((const uint16_t *)source)[i]); break;
        case SCHNELL_BF16: destination[i] = bf16_to_float(((const uint16_t *)source)[i]); break;
        default: destination[i] = e4m3_to_float(((const uint8_t *)source)[i]); break;
        }
    }
}

static float e4m3_table[256];
static void fill_e4m3_table(void) {
    for (int i = 0; i < 256; i++) e4m3_table[i] = e4m3_to_float((uint8_t)i);
}

typedef struct {
    const void *source;
    int dtype;
    float *destination;
} convert_job;

SCHNELL_INLINE void convert_body(void *context, size_t begin, size_t end) {
    const convert_job *job = context;
    float *out = job->destination;
    if (job->dtype == SCHNELL_BF16) {
        const uint16_t *in = job->source;
        for (size_t i = begin; i < end; i++) {
            uint32_t bits = (uint32_t)in[i] << 16;
            memcpy(&out[i], &bits, 4);
        }
    } else if (job->dtype == SCHNELL_F32) {
        memcpy(out + begin, (const float *)job->source + begin, (end - begin) * 4);
    } else if (job->dtype == SCHNELL_F8_E4M3) {
        const uint8_t *in = job->source;
        for (size_t i = begin; i < end; i++) out[i] = e4m3_table[in[i]];
    } else {
        const uint16_t *in = job->source;
        for (size_t i = begin; i < end; i++) out[i] = schnell_half_to_float(in[i]);
    }
}

SCHNELL_TARGET_AVX512 static void convert_avx512(void *context, size_t begin, size_t end) {
    const convert_job *job = context;
    if (job->dtype != SCHNELL_F16) {
        convert_body(context, begin, end);
        return;
    }
    const uint16_t *in = job->source;
    size_t i = begin;
    for (; i + 16 <= end; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(in + i));
        _mm512_storeu_ps(job->destination + i, _mm512_cvtph_ps(h));
    }
    for (; i < end; i++) job->destination[i] = schnell_half_to_float(in[i]);
}

SCHNELL_TARGET_AVX2 static void convert_avx2(void *context, size_t begin, size_t end) {
    const convert_job *job = context;
    if (job->dtype != SCHNELL_F16) {
        convert_body(context, begin, end);
        return;
    }
    const uint16_t *in = job->source;
    size_t i = begin;
    for (; i + 8 <= end; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(in + i));
        _mm256_storeu_ps(job->destination + i, _mm256_cvtph_ps(h));
    }
    for (; i < end; i++) job->destination[i] = schnell_half_to_float(in[i]);
}

static void convert_generic(void *context, size_t begin, size_t end) {
    convert_body(context, begin, end);
}

void schnell_convert_to_f32(const void *source, int dtype, float *destination, size_t count) {
    if (dtype == SCHNELL_F8_E5M2 || schnell_dtype_block_values(dtype) > 1) {
        schnell_dequantize(source, dtype, destination, count);
        return;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_e4m3_table);
    convert_job job = {source, dtype, destination};
    int level = schnell_cpu_level();
    schnell_range_fn convert = level >= SCHNELL_CPU_AVX512 ? convert_avx512
                               : level >= SCHNELL_CPU_AVX2 ? convert_avx2
                                                           : convert_generic;
    schnell_parallel_for(count, 1 << 16, convert, &job);
}

void schnell_f32_to_bf16(const float *source, uint16_t *destination, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &source[i], 4);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            destination[i] = (uint16_t)((bits >> 16) | 0x40);  // quiet NaN
        } else {
            destination[i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16);
        }
    }
}
