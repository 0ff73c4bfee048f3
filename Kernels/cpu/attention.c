// Scaled dot-product attention, one head and one block of queries at a time:
//   S = scale * Q_block . K^T      ([block, kv_tokens])
//   S += bias; causal mask; row softmax
//   O_block = S . V               (written in place into the token-major output)
// From the AVX2 tier up the two products run on the float32 micro-kernels of gemm_f32.h with
// K and V packed once per head (packed_items below); the generic tier runs them on sgemm, with
// scratch of block * kv_tokens floats (4.7 MB at 4,608 tokens), whatever the head count.
// With bf16 activations on AVX512-BF16, attention_bf16.c runs it instead.
#include <cblas.h>
#include <stdlib.h>

#include "dispatch.h"
#include "gemm_f32.h"

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

// ---- packed float32 attention (AVX2 and AVX-512 tiers) ----
//
// sgemm re-packs its B operand (all of a head's K, then all of its V: 2.4 MB each at 4,608
// tokens) for every block of queries. Here each worker packs a head's K and V once, in the
// micro-kernel's B layout, and keeps them while its items stay on that head (items are
// head-major, so a worker changes head a few times per call):
//   K panels  [token panel][dimension][NR tokens]     B of S = Q . K^T (NR: 16 AVX2, 64 AVX-512)
//   V panels  [dimension panel][token][NR dimensions] B of O = P . V
// An item is one head and PACKED_BLOCK (96, 16 micro-panels of 6) queries. S runs over K in
// chunks of KV_CHUNK tokens, so a chunk of K's panels (128 KB at d = 128) stays in L2 while
// every 6-query micro-panel of Q meets it; O runs over the tokens in chunks of the same length,
// so a 6-row strip of P (6 KB) stays in L1 while it meets every panel of V's chunk. The scores
// of a block are 96 x 4,608 floats (1.7 MB) at 4,608 tokens.
enum { PACKED_BLOCK = 96, KV_CHUNK = 256 };

typedef struct {
    const float *q, *k, *v;
    size_t q_stride, k_stride, v_stride, out_stride;
    float *out;
    size_t q_tokens, kv_tokens, head_dim;
    float scale;
    const float *bias;
    int causal;
    const schnell_f32_micro_kernel *kernels;
    size_t nr;
    float *scratch;         // per worker: scores, sums, queries, K panels, V panels
    size_t scratch_floats, score_floats, query_stride, k_floats;
    size_t *packed_head;    // per worker: the head its panels hold (SIZE_MAX: none)
} packed_job;

// Head h's K and V into the worker's panels, zero past the tokens and the head dimension.
static void pack_head(const packed_job *job, size_t h, float *kp, float *vp) {
    size_t n = job->kv_tokens, d = job->head_dim, nr = job->nr;
    for (size_t t0 = 0; t0 < n; t0 += nr) {
        float *panel = kp + t0 * d;
        for (size_t c = 0; c < nr; c++) {
            const float *row = t0 + c < n ? job->k + (t0 + c) * job->k_stride + h * d : NULL;
            for (size_t i = 0; i < d; i++) panel[i * nr + c] = row ? row[i] : 0.0f;
        }
    }
    for (size_t c0 = 0; c0 < d; c0 += nr) {
        size_t width = d - c0 < nr ? d - c0 : nr;
        float *panel = vp + c0 * n;
        for (size_t t = 0; t < n; t++) {
            memcpy(panel + t * nr, job->v + t * job->v_stride + h * d + c0, width * sizeof(float));
            for (size_t c = width; c < nr; c++) panel[t * nr + c] = 0.0f;
        }
    }
}

SCHNELL_INLINE void packed_items_body(void *context, size_t begin, size_t end) {
    const packed_job *job = context;
    size_t n = job->kv_tokens, d = job->head_dim, nr = job->nr;
    size_t blocks = (job->q_tokens + PACKED_BLOCK - 1) / PACKED_BLOCK;
    size_t worker = (size_t)schnell_worker_index();
    float *scores = job->scratch + worker * job->scratch_floats;
    float *sums = scores + job->score_floats;
    float *queries = sums + schnell_round_up(PACKED_BLOCK, 16);
    float *kp = queries + PACKED_BLOCK * job->query_stride, *vp = kp + job->k_floats;
    for (size_t item = begin; item < end; item++) {
        size_t h = item / blocks, first = item % blocks * PACKED_BLOCK;
        size_t rows = job->q_tokens - first < PACKED_BLOCK ? job->q_tokens - first : PACKED_BLOCK;
        if (job->packed_head[worker] != h) {
            pack_head(job, h, kp, vp);
            job->packed_head[worker] = h;
        }
        for (size_t r = 0; r < rows; r++) {
            memcpy(queries + r * job->query_stride, job->q + (first + r) * job->q_stride + h * d, d * sizeof(float));
        }
        for (size_t t0 = 0; t0 < n; t0 += KV_CHUNK) {
            size_t chunk_end = n - t0 < KV_CHUNK ? n : t0 + KV_CHUNK;
            for (size_t m = 0; m < rows; m += SCHNELL_F32_MR) {
                size_t mr = rows - m < SCHNELL_F32_MR ? rows - m : SCHNELL_F32_MR;
                const float *a = queries + m * job->query_stride;
                for (size_t t = t0; t < chunk_end; t += nr) {
                    job->kernels[mr](a, job->query_stride, kp + t * d, d, NULL, 1, scores + m * n + t, n,
                                     n - t < nr ? n - t : nr);
                }
            }
        }
        schnell_softmax_weights(scores, rows, n, first, job->bias ? job->bias + (h * job->q_tokens + first) * n : NULL,
                                job->causal, job->scale, sums);
        float *out = job->out + first * job->out_stride + h * d;
        for (size_t t0 = 0; t0 < n; t0 += KV_CHUNK) {
            size_t kc = n - t0 < KV_CHUNK ? n - t0 : KV_CHUNK;
            for (size_t m = 0; m < rows; m += SCHNELL_F32_MR) {
                size_t mr = rows - m < SCHNELL_F32_MR ? rows - m : SCHNELL_F32_MR;
                for (size_t c = 0; c < d; c += nr) {
                    job->kernels[mr](scores + m * n + t0, n, vp + c * n + t0 * nr, kc, NULL, t0 == 0,
                                     out + m * job->out_stride + c, job->out_stride, d - c < nr ? d - c : nr);
                }
            }
        }
        for (size_t r = 0; r < rows; r++) {
            for (size_t c = 0; c < d; c++) out[r * job->out_stride + c] *= sums[r];
        }
    }
}

// The softmax between the products is vectorised per tier.
SCHNELL_VARIANTS(packed_items)

// Returns 0, or -1 when scratch memory cannot be had (nothing written).
static int attention_packed(const float *q, size_t q_stride, const float *k, size_t k_stride, const float *v,
                            size_t v_stride, float *out, size_t out_stride, size_t q_tokens, size_t kv_tokens,
                            size_t heads, size_t head_dim, float scale, const float *bias, int causal) {
    if (kv_tokens == 0 || head_dim == 0) return -1;
    int avx512 = schnell_cpu_level() >= SCHNELL_CPU_AVX512;
    size_t nr = avx512 ? SCHNELL_AVX512_F32_NR : SCHNELL_AVX2_F32_NR;
    size_t score_floats = schnell_round_up(PACKED_BLOCK * kv_tokens, 16);
    size_t k_floats = schnell_round_up(kv_tokens, nr) * head_dim, v_floats = schnell_round_up(head_dim, nr) * kv_tokens;
    // Queries are copied to rows one cache line longer than the head: the rows' stride in the
    // fused qkv buffer is a multiple of 4 KB at FLUX's widths, which puts a micro-panel's six
    // rows in the same L1 set.
    size_t query_stride = schnell_round_up(head_dim, 16) + 16;
    size_t scratch_floats = score_floats + schnell_round_up(PACKED_BLOCK, 16) + PACKED_BLOCK * query_stride + k_floats +
                            schnell_round_up(v_floats, 16);
    size_t workers = (size_t)schnell_threads();
    float *scratch = aligned_alloc(64, workers * scratch_floats * sizeof(float));
    size_t *packed_head = malloc(workers * sizeof(size_t));
    if (!scratch || !packed_head) {
        free(scratch);
        free(packed_head);
        return -1;
    }
    for (size_t w = 0; w < workers; w++) packed_head[w] = SIZE_MAX;
    packed_job job = {q, k, v, q_stride, k_stride, v_stride, out_stride, out, q_tokens, kv_tokens, head_dim, scale,
                      bias, causal, avx512 ? schnell_f32_micro_kernels : schnell_f32_micro_kernels_avx2, nr,
                      scratch, scratch_floats, score_floats, query_stride, k_floats, packed_head};
    size_t blocks = (q_tokens + PACKED_BLOCK - 1) / PACKED_BLOCK;
    schnell_parallel_for(heads * blocks, 1, packed_items_select(), &job);
    free(scratch);
    free(packed_head);
    return 0;
}

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
    if (schnell_cpu_level() >= SCHNELL_CPU_AVX2 &&
        attention_packed(q, q_stride, k, k_stride, v, v_stride, out, out_stride, q_tokens, kv_tokens, heads,
                         head_dim, scale, bias, causal) == 0) {
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
