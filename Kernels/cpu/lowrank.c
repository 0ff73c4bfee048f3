// LoRA's low-rank updates: added to a linear layer's output at run time, or merged into a
// float32 copy of its weight. Both are two small GEMMs through OpenBLAS; the references are
// plain loops with double accumulation.
#include <cblas.h>
#include <stdlib.h>

#include "schnell_kernels.h"

int schnell_lowrank_add(const float *x, size_t rows, size_t in, const float *down, size_t rank, const float *up, size_t n,
                        float scale, float *out, size_t out_stride) {
    if (rows == 0 || n == 0 || rank == 0) return 0;
    float *hidden = malloc(rows * rank * sizeof(float));
    if (!hidden) return -1;
    // hidden = x down^T [rows, rank]; out += scale * hidden up^T [rows, n].
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)rank, (int)in, 1.0f, x, (int)in, down, (int)in,
                0.0f, hidden, (int)rank);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)rank, scale, hidden, (int)rank, up, (int)rank,
                1.0f, out, (int)out_stride);
    free(hidden);
    return 0;
}

void schnell_lowrank_add_reference(const float *x, size_t rows, size_t in, const float *down, size_t rank, const float *up,
                                   size_t n, float scale, float *out, size_t out_stride) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < n; c++) {
            double sum = 0;
            for (size_t k = 0; k < rank; k++) {
                double projected = 0;
                for (size_t i = 0; i < in; i++) projected += (double)x[r * in + i] * down[k * in + i];
                sum += projected * up[c * rank + k];
            }
            out[r * out_stride + c] += (float)(scale * sum);
        }
    }
}

void schnell_lowrank_merge(float *weight, size_t n, size_t in, const float *down, size_t rank, const float *up, float scale) {
    if (n == 0 || rank == 0) return;
    // weight [n, in] += scale * up [n, rank] down [rank, in].
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)rank, scale, up, (int)rank, down, (int)in,
                1.0f, weight, (int)in);
}

void schnell_lowrank_merge_reference(float *weight, size_t n, size_t in, const float *down, size_t rank, const float *up,
                                     float scale) {
    for (size_t c = 0; c < n; c++) {
        for (size_t i = 0; i < in; i++) {
            double sum = 0;
            for (size_t k = 0; k < rank; k++) sum += (double)up[c * rank + k] * down[k * in + i];
            weight[c * in + i] += (float)(scale * sum);
        }
    }
}
