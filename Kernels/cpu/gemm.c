// Linear layers. float32 weights go straight from the memory map to OpenBLAS sgemm (measured as
// fast as or faster than gemm_f32.c's packed kernel at both the AVX2 and the AVX-512 tier). bf16
// and f16 weights go to that packed kernel, which converts them while it packs them (half the
// weight traffic of float32, no scratch copy); on the generic tier, and for fp8, they are
// converted in blocks of output rows (a few MB of scratch) for sgemm, so a 12B-parameter model
// is never expanded to float32 as a whole. At SCHNELL_PRECISION_BF16, bf16 weights go to the
// native AVX512-BF16 kernel instead (gemm_bf16.c). GGUF block-type weights with a fast path in
// gemm_quant.c are multiplied on their integer blocks (dequantized in blocks of rows for sgemm
// like fp8 only when that kernel declines, e.g. short of memory).
#include <cblas.h>
#include <stdlib.h>

#include "dispatch.h"

// Rows of a non-f32 weight converted at a time: ~8 MB of float32 scratch at k = 3072.
static size_t conversion_block_rows(size_t k) {
    size_t rows = ((size_t)2 << 20) / (k ? k : 1);
    if (rows < 64) rows = 64;
    return (rows + 15) & ~(size_t)15;
}

typedef struct {
    const void *bias;
    int bias_dtype;
    size_t n;
    float *y;
    size_t y_stride;
} bias_job;

static void fill_bias_rows(void *context, size_t begin, size_t end) {
    const bias_job *job = context;
    for (size_t r = begin; r < end; r++) {
        schnell_convert_to_f32(job->bias, job->bias_dtype, job->y + r * job->y_stride, job->n);
    }
}

void schnell_linear(const float *x, size_t rows, size_t k,
                    const void *weight, int weight_dtype,
                    const void *bias, int bias_dtype,
                    size_t n, float *y, size_t y_stride, int precision) {
    if (rows == 0 || n == 0) return;
    if (weight_dtype == SCHNELL_BF16 && precision == SCHNELL_PRECISION_BF16 &&
        schnell_linear_bf16(x, rows, k, weight, bias, bias_dtype, n, y, y_stride) == 0) {
        return;
    }
    if ((weight_dtype == SCHNELL_BF16 || weight_dtype == SCHNELL_F16) &&
        schnell_linear_f32(x, rows, k, weight, weight_dtype, bias, bias_dtype, n, y, y_stride) == 0) {
        return;
    }
    if (schnell_dtype_block_values(weight_dtype) > 1 &&
        schnell_linear_quantized(x, rows, k, weight, weight_dtype, bias, bias_dtype, n, y, y_stride) == 0) {
        return;
    }
    float beta = 0.0f;
    if (bias) {
        bias_job job = {bias, bias_dtype, n, y, y_stride};
        schnell_parallel_for(rows, 16, fill_bias_rows, &job);
        beta = 1.0f;
    }
    if (weight_dtype == SCHNELL_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)n,
                    (blasint)k, 1.0f, x, (blasint)k, weight, (blasint)k, beta, y,
                    (blasint)y_stride);
        return;
    }
    size_t block = conversion_block_rows(k);
    if (block > n) block = n;
    float *scratch = malloc(block * k * sizeof(float));
    if (!scratch) {
        schnell_linear_reference(x, rows, k, weight, weight_dtype, bias, bias_dtype, n, y, y_stride);
        return;
    }
    size_t row_bytes = schnell_dtype_row_bytes(weight_dtype, k);
    for (size_t start = 0; start < n; start += block) {
        size_t count = n - start < block ? n - start : block;
        schnell_convert_to_f32((const char *)weight + start * row_bytes, weight_dtype, scratch,
                               count * k);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)count,
                    (blasint)k, 1.0f, x, (blasint)k, scratch, (blasint)k, beta, y + start,
                    (blasint)y_stride);
    }
    free(scratch);
}

typedef struct {
    float *y;
    size_t y_stride, n;
    const float *scale;
    size_t scale_count;
    const float *bias;
} scale_job;

static void scale_rows(void *context, size_t begin, size_t end) {
    const scale_job *job = context;
    for (size_t r = begin; r < end; r++) {
        float *row = job->y + r * job->y_stride;
        for (size_t j = 0; j < job->n; j++) {
            row[j] = row[j] * job->scale[job->scale_count == 1 ? 0 : j] + (job->bias ? job->bias[j] : 0.0f);
        }
    }
}

void schnell_scale_columns(float *y, size_t rows, size_t n, size_t y_stride, const float *scale,
                           size_t scale_count, const void *bias, int bias_dtype) {
    float *owned;
    const float *bias_f32 = schnell_as_f32(bias, bias_dtype, n, &owned);
    scale_job job = {y, y_stride, n, scale, scale_count, bias_f32};
    if (!bias || bias_f32) schnell_parallel_for(rows, 16, scale_rows, &job);
    free(owned);
}

void schnell_linear_reference(const float *x, size_t rows, size_t k,
                              const void *weight, int weight_dtype,
                              const void *bias, int bias_dtype,
                              size_t n, float *y, size_t y_stride) {
    size_t row_bytes = schnell_dtype_row_bytes(weight_dtype, k);
    size_t bias_element = schnell_dtype_size(bias_dtype);
    float *row = malloc((k ? k : 1) * sizeof(float));
    if (!row) return;
    for (size_t j = 0; j < n; j++) {
        schnell_convert_to_f32_reference((const char *)weight + j * row_bytes, weight_dtype, row, k);
        float b = 0.0f;
        if (bias) schnell_convert_to_f32_reference((const char *)bias + j * bias_element, bias_dtype, &b, 1);
        for (size_t r = 0; r < rows; r++) {
            double sum = 0.0;
            for (size_t i = 0; i < k; i++) sum += (double)x[r * k + i] * row[i];
            y[r * y_stride + j] = (float)sum + b;
        }
    }
    free(row);
}
