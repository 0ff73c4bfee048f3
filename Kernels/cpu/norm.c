// Row norms: LayerNorm (optionally affine), FLUX's LayerNorm + (1 + scale, shift) modulation,
// and RMSNorm. One row per token; rows are split over the thread pool.
#include "dispatch.h"

typedef struct {
    const float *x;
    float *y;
    size_t dim;
    float eps;
    const float *weight;  // or scale for modulation
    const float *bias;    // or shift for modulation
    int modulate;
} norm_job;

SCHNELL_INLINE void layer_norm_body(void *context, size_t begin, size_t end) {
    const norm_job *job = context;
    size_t dim = job->dim;
    for (size_t r = begin; r < end; r++) {
        const float *x = job->x + r * dim;
        float *y = job->y + r * dim;
        float mean = schnell_sum(x, dim) / (float)dim;
        float squares = schnell_sum_squares(x, dim, mean);
        float inv = 1.0f / sqrtf(squares / (float)dim + job->eps);
        if (job->modulate) {
            for (size_t i = 0; i < dim; i++) {
                float scale = job->weight ? job->weight[i] : 0.0f;
                float shift = job->bias ? job->bias[i] : 0.0f;
                y[i] = (x[i] - mean) * inv * (1.0f + scale) + shift;
            }
        } else {
            for (size_t i = 0; i < dim; i++) {
                float w = job->weight ? job->weight[i] : 1.0f;
                float b = job->bias ? job->bias[i] : 0.0f;
                y[i] = (x[i] - mean) * inv * w + b;
            }
        }
    }
}
SCHNELL_VARIANTS(layer_norm)

SCHNELL_INLINE void rms_norm_body(void *context, size_t begin, size_t end) {
    const norm_job *job = context;
    size_t dim = job->dim;
    for (size_t r = begin; r < end; r++) {
        const float *x = job->x + r * dim;
        float *y = job->y + r * dim;
        float inv = 1.0f / sqrtf(schnell_sum_squares(x, dim, 0.0f) / (float)dim + job->eps);
        for (size_t i = 0; i < dim; i++) y[i] = x[i] * inv * (job->weight ? job->weight[i] : 1.0f);
    }
}
SCHNELL_VARIANTS(rms_norm)

static size_t row_grain(size_t dim) {
    size_t grain = 16384 / (dim ? dim : 1);
    return grain ? grain : 1;
}

void schnell_layer_norm(const float *x, float *y, size_t rows, size_t dim, float eps,
                        const float *weight, const float *bias) {
    norm_job job = {x, y, dim, eps, weight, bias, 0};
    schnell_parallel_for(rows, row_grain(dim), layer_norm_select(), &job);
}

void schnell_layer_norm_modulate(const float *x, float *y, size_t rows, size_t dim, float eps,
                                 const float *scale, const float *shift) {
    norm_job job = {x, y, dim, eps, scale, shift, 1};
    schnell_parallel_for(rows, row_grain(dim), layer_norm_select(), &job);
}

void schnell_rms_norm(const float *x, float *y, size_t rows, size_t dim, float eps,
                      const float *weight) {
    norm_job job = {x, y, dim, eps, weight, NULL, 0};
    schnell_parallel_for(rows, row_grain(dim), rms_norm_select(), &job);
}

void schnell_layer_norm_reference(const float *x, float *y, size_t rows, size_t dim, float eps,
                                  const float *weight, const float *bias) {
    for (size_t r = 0; r < rows; r++) {
        double mean = 0.0, var = 0.0;
        for (size_t i = 0; i < dim; i++) mean += x[r * dim + i];
        mean /= (double)dim;
        for (size_t i = 0; i < dim; i++) var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
        double inv = 1.0 / sqrt(var / (double)dim + eps);
        for (size_t i = 0; i < dim; i++) {
            double v = (x[r * dim + i] - mean) * inv;
            y[r * dim + i] = (float)(v * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f));
        }
    }
}

void schnell_layer_norm_modulate_reference(const float *x, float *y, size_t rows, size_t dim,
                                           float eps, const float *scale, const float *shift) {
    schnell_layer_norm_reference(x, y, rows, dim, eps, NULL, NULL);
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < dim; i++) {
            y[r * dim + i] = y[r * dim + i] * (1.0f + (scale ? scale[i] : 0.0f)) +
                             (shift ? shift[i] : 0.0f);
        }
    }
}

void schnell_rms_norm_reference(const float *x, float *y, size_t rows, size_t dim, float eps,
                                const float *weight) {
    for (size_t r = 0; r < rows; r++) {
        double squares = 0.0;
        for (size_t i = 0; i < dim; i++) squares += (double)x[r * dim + i] * x[r * dim + i];
        double inv = 1.0 / sqrt(squares / (double)dim + eps);
        for (size_t i = 0; i < dim; i++) {
            y[r * dim + i] = (float)(x[r * dim + i] * inv) * (weight ? weight[i] : 1.0f);
        }
    }
}
