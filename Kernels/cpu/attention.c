// Scaled dot-product attention, one head and one block of queries at a time:
//   S = scale * Q_block . K^T      (sgemm, [block, kv_tokens])
//   S += bias; causal mask; row softmax
//   O_block = S . V               (sgemm, written in place into the token-major output)
// Scratch is block * kv_tokens floats (4.7 MB at 4,608 tokens), whatever the head count.
// With bf16 activations on, attention_bf16.c runs it instead.
#include <cblas.h>
#include <stdlib.h>

#include "dispatch.h"

enum { ATTENTION_BLOCK = 256 };

typedef struct {
    float *x;
    size_t dim;
} softmax_job;

SCHNELL_INLINE void softmax_row(float *x, size_t dim) {
    float maximum = schnell_max(x, dim);
    if (maximum == -INFINITY) {  // a fully masked row attends to nothing
        for (size_t i = 0; i < dim; i++) x[i] = 0.0f;
        return;
    }
    float inv = 1.0f / schnell_exp_shifted_sum(x, dim, maximum);
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

// One head's work for one worker: for each block of queries,
//   S = scale * Q_block . K^T (+ bias, causal mask)     [block, kv_tokens], in L2-sized scratch
//   P = exp(S - rowmax), rowsum                          in place
//   O_block = (P . V) / rowsum                           normalising the small output, not P
typedef struct {
    const float *q, *k, *v;
    size_t q_stride, k_stride, v_stride, out_stride;
    float *out;
    size_t q_tokens, kv_tokens, head_dim, block;
    float scale;
    const float *bias;
    int causal;
    float *scratch;  // per worker: block * kv_tokens scores + block sums
} attention_job;

// Work items are (head, query block) pairs, head-major, so a worker's consecutive items
// reuse the same K and V.
SCHNELL_INLINE void attention_items_body(void *context, size_t begin, size_t end) {
    const attention_job *job = context;
    size_t n = job->kv_tokens, d = job->head_dim;
    size_t blocks = (job->q_tokens + job->block - 1) / job->block;
    float *scores = job->scratch + (size_t)schnell_worker_index() * (job->block * (n + 1));
    float *sums = scores + job->block * n;
    for (size_t item = begin; item < end; item++) {
        size_t h = item / blocks, first = (item % blocks) * job->block;
        {
            size_t rows = job->q_tokens - first < job->block ? job->q_tokens - first : job->block;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)n, (blasint)d,
                        job->scale, job->q + first * job->q_stride + h * d, (blasint)job->q_stride,
                        job->k + h * d, (blasint)job->k_stride, 0.0f, scores, (blasint)n);
            schnell_softmax_weights(scores, rows, n, first,
                                    job->bias ? job->bias + (h * job->q_tokens + first) * n : NULL, job->causal,
                                    1.0f, sums);  // sgemm applied the scale
            float *out = job->out + first * job->out_stride + h * d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)d, (blasint)n,
                        1.0f, scores, (blasint)n, job->v + h * d, (blasint)job->v_stride, 0.0f, out,
                        (blasint)job->out_stride);
            for (size_t r = 0; r < rows; r++) {
                for (size_t c = 0; c < d; c++) out[r * job->out_stride + c] *= sums[r];
            }
        }
    }
}
SCHNELL_VARIANTS(attention_items)

void schnell_attention(const float *q, size_t q_stride,
                       const float *k, size_t k_stride,
                       const float *v, size_t v_stride,
                       float *out, size_t out_stride,
                       size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                       float scale, const float *bias, int causal, int precision) {
    if (q_tokens == 0 || heads == 0) return;
    if (precision == SCHNELL_PRECISION_BF16 &&
        schnell_attention_bf16(q, q_stride, k, k_stride, v, v_stride, out, out_stride, q_tokens, kv_tokens,
                               heads, head_dim, scale, bias, causal) == 0) {
        return;
    }
    // Query blocks of about 1M scores (4 MB): sgemm runs near its full rate from ~200 rows on,
    // while the scores of one block stay within reach of the L2/L3 caches.
    size_t block = ((size_t)1 << 20) / (kv_tokens ? kv_tokens : 1);
    if (block < 16) block = 16;
    if (block > ATTENTION_BLOCK) block = ATTENTION_BLOCK;
    if (block > q_tokens) block = q_tokens;
    int workers = schnell_threads();
    float *scratch = malloc((size_t)workers * block * (kv_tokens + 1) * sizeof(float));
    if (!scratch) {
        schnell_attention_reference(q, q_stride, k, k_stride, v, v_stride, out, out_stride,
                                    q_tokens, kv_tokens, heads, head_dim, scale, bias, causal);
        return;
    }
    attention_job job = {q, k, v, q_stride, k_stride, v_stride, out_stride, out, q_tokens, kv_tokens,
                         head_dim, block, scale, bias, causal, scratch};
    // (head, block) items run side by side, one per worker, each with single-threaded sgemm:
    // no thread hand-off per small GEMM, and each worker's scores stay in its own L2.
    size_t blocks = (q_tokens + block - 1) / block;
    schnell_blas_single_threaded(1);
    schnell_parallel_for(heads * blocks, 1, attention_items_select(), &job);
    schnell_blas_single_threaded(0);
    free(scratch);
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
