// Scaled dot-product attention, one head and one block of queries at a time:
//   S = scale * Q_block . K^T      (sgemm, [block, kv_tokens])
//   S += bias; causal mask; row softmax
//   O_block = S . V               (sgemm, written in place into the token-major output)
// Scratch is block * kv_tokens floats (4.7 MB at 4,608 tokens), whatever the head count.
#include <cblas.h>
#include <stdlib.h>

#include "dispatch.h"

enum { ATTENTION_BLOCK = 256 };

typedef struct {
    float *x;
    size_t dim;
} softmax_job;

SCHNELL_INLINE void softmax_row(float *x, size_t dim) {
    float maximum = -INFINITY;
    for (size_t i = 0; i < dim; i++) maximum = fmaxf(maximum, x[i]);
    if (maximum == -INFINITY) {  // a fully masked row attends to nothing
        for (size_t i = 0; i < dim; i++) x[i] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (size_t i = 0; i < dim; i++) {
        float e = schnell_expf(x[i] - maximum);
        x[i] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < dim; i++) x[i] *= inv;
}

SCHNELL_INLINE void softmax_body(void *context, size_t begin, size_t end) {
    const softmax_job *job = context;
    for (size_t r = begin; r < end; r++) softmax_row(job->x + r * job->dim, job->dim);
}
SCHNELL_VARIANTS(softmax)

void schnell_softmax(float *x, size_t rows, size_t dim) {
    softmax_job job = {x, dim};
    schnell_parallel_for(rows, 1 + 8192 / (dim + 1), softmax_select(), &job);
}

void schnell_softmax_reference(float *x, size_t rows, size_t dim) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * dim;
        float maximum = -INFINITY;
        for (size_t i = 0; i < dim; i++) maximum = fmaxf(maximum, row[i]);
        if (maximum == -INFINITY) {
            for (size_t i = 0; i < dim; i++) row[i] = 0.0f;
            continue;
        }
        double sum = 0.0;
        for (size_t i = 0; i < dim; i++) sum += exp((double)row[i] - maximum);
        for (size_t i = 0; i < dim; i++) row[i] = (float)(exp((double)row[i] - maximum) / sum);
    }
}

typedef struct {
    float *scores;
    size_t kv_tokens, first_query;
    const float *bias;  // [block rows, kv_tokens] for this head and block, or NULL
    int causal;
} mask_job;

SCHNELL_INLINE void mask_softmax_body(void *context, size_t begin, size_t end) {
    const mask_job *job = context;
    size_t n = job->kv_tokens;
    for (size_t r = begin; r < end; r++) {
        float *row = job->scores + r * n;
        if (job->bias) {
            const float *b = job->bias + r * n;
            for (size_t j = 0; j < n; j++) row[j] += b[j];
        }
        if (job->causal) {
            for (size_t j = job->first_query + r + 1; j < n; j++) row[j] = -INFINITY;
        }
        softmax_row(row, n);
    }
}
SCHNELL_VARIANTS(mask_softmax)

void schnell_attention(const float *q, size_t q_stride,
                       const float *k, size_t k_stride,
                       const float *v, size_t v_stride,
                       float *out, size_t out_stride,
                       size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                       float scale, const float *bias, int causal) {
    if (q_tokens == 0 || heads == 0) return;
    size_t block = q_tokens < ATTENTION_BLOCK ? q_tokens : ATTENTION_BLOCK;
    float *scores = malloc(block * (kv_tokens ? kv_tokens : 1) * sizeof(float));
    if (!scores) {
        schnell_attention_reference(q, q_stride, k, k_stride, v, v_stride, out, out_stride,
                                    q_tokens, kv_tokens, heads, head_dim, scale, bias, causal);
        return;
    }
    schnell_range_fn softmax_rows = mask_softmax_select();
    for (size_t h = 0; h < heads; h++) {
        for (size_t first = 0; first < q_tokens; first += block) {
            size_t rows = q_tokens - first < block ? q_tokens - first : block;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows,
                        (blasint)kv_tokens, (blasint)head_dim, scale,
                        q + first * q_stride + h * head_dim, (blasint)q_stride,
                        k + h * head_dim, (blasint)k_stride, 0.0f, scores, (blasint)kv_tokens);
            mask_job job = {scores, kv_tokens, first,
                            bias ? bias + (h * q_tokens + first) * kv_tokens : NULL, causal};
            schnell_parallel_for(rows, 1 + 8192 / (kv_tokens + 1), softmax_rows, &job);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows,
                        (blasint)head_dim, (blasint)kv_tokens, 1.0f, scores, (blasint)kv_tokens,
                        v + h * head_dim, (blasint)v_stride, 0.0f,
                        out + first * out_stride + h * head_dim, (blasint)out_stride);
        }
    }
    free(scores);
}

void schnell_attention_reference(const float *q, size_t q_stride,
                                 const float *k, size_t k_stride,
                                 const float *v, size_t v_stride,
                                 float *out, size_t out_stride,
                                 size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                                 float scale, const float *bias, int causal) {
    float *row = malloc((kv_tokens ? kv_tokens : 1) * sizeof(float));
    if (!row) return;
    for (size_t h = 0; h < heads; h++) {
        for (size_t i = 0; i < q_tokens; i++) {
            const float *qi = q + i * q_stride + h * head_dim;
            for (size_t j = 0; j < kv_tokens; j++) {
                const float *kj = k + j * k_stride + h * head_dim;
                double dot = 0.0;
                for (size_t d = 0; d < head_dim; d++) dot += (double)qi[d] * kj[d];
                row[j] = (float)(dot * scale);
                if (bias) row[j] += bias[(h * q_tokens + i) * kv_tokens + j];
                if (causal && j > i) row[j] = -INFINITY;
            }
            schnell_softmax_reference(row, 1, kv_tokens);
            float *o = out + i * out_stride + h * head_dim;
            for (size_t d = 0; d < head_dim; d++) {
                double sum = 0.0;
                for (size_t j = 0; j < kv_tokens; j++) sum += (double)row[j] * v[j * v_stride + h * head_dim + d];
                o[d] = (float)sum;
            }
        }
    }
    free(row);
}
