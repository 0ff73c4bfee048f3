// Attention with bf16 operands on AVX512-BF16, for the bf16 precision (SCHNELL_PRECISION_BF16):
// Q, K, V and the softmax weights are rounded to bf16; scores, softmax and outputs stay float32.
// It runs on the micro-kernel of the bf16 linear layers (gemm_bf16.h).
//
//   before the items   each head's K packed as the B operand of S = Q . K^T (pairs along the
//                      head dimension, 64 tokens a panel) and its V as the B operand of
//                      O = P . V (pairs along the tokens, 64 head columns a panel)
//   item               one head and BLOCK queries:
//                        S = scale * bf16(Q_block) . K^T (+ bias, causal mask)  [rows, kv]
//                        P = exp(S - rowmax), its row sums in float32
//                        O = bf16(P) . V / rowsum, over the tokens in chunks of CHUNK pairs
//                        so a chunk of V's panels stays in L2 while every row meets it
#include <stdlib.h>

#include "gemm_bf16.h"

enum { MR = SCHNELL_BF16_MR, NR = SCHNELL_BF16_NR, BLOCK = 96, PACK_COLUMNS = 256, CHUNK = 512 };

typedef struct {
    const float *k, *v;
    size_t k_stride, v_stride, kv_tokens, head_dim;
    size_t dp, tp;          // pairs along the head dimension and along the tokens
    uint32_t *kp, *vp;      // per head: K panels, then V panels
    size_t k_words, v_words;
    uint16_t *rows;         // per worker: one head's K rounded to bf16 row by row
} pack_job;

SCHNELL_TARGET_BF16 static void pack_heads(void *context, size_t begin, size_t end) {
    const pack_job *job = context;
    size_t n = job->kv_tokens, d = job->head_dim, kp = 2 * job->dp;
    uint16_t *rows = job->rows + (size_t)schnell_worker_index() * n * kp;
    for (size_t h = begin; h < end; h++) {
        for (size_t t = 0; t < n; t++) schnell_bf16_round_row(job->k + t * job->k_stride + h * d, d, rows + t * kp, kp);
        uint32_t *kp_head = job->kp + h * job->k_words;
        for (size_t t = 0; t < n; t += PACK_COLUMNS) {
            schnell_bf16_pack_block(rows, kp, n, t, 0, job->dp, kp_head + t / NR * job->dp * NR);
        }
        // V: word (v[2p][c], v[2p + 1][c]) at [panel c / 64][p][c % 64]; zero past the tokens and d.
        uint32_t *vp_head = job->vp + h * job->v_words;
        memset(vp_head, 0, job->v_words * sizeof(uint32_t));
        uint16_t even[NR], odd[NR];
        for (size_t p = 0; p < job->tp; p++) {
            for (size_t c = 0; c < d; c += NR) {
                size_t width = d - c < NR ? d - c : NR;
                schnell_bf16_round_row(job->v + 2 * p * job->v_stride + h * d + c, width, even, width);
                if (2 * p + 1 < n) schnell_bf16_round_row(job->v + (2 * p + 1) * job->v_stride + h * d + c, width, odd, width);
                else memset(odd, 0, sizeof odd);
                uint32_t *destination = vp_head + (c / NR * job->tp + p) * NR;
                for (size_t i = 0; i < width; i++) destination[i] = (uint32_t)even[i] | (uint32_t)odd[i] << 16;
            }
        }
    }
}

typedef struct {
    const float *q;
    size_t q_stride, out_stride, q_tokens, kv_tokens, head_dim, dp, tp;
    float *out;
    float scale;
    const float *bias;
    int causal;
    const uint32_t *kp, *vp;
    size_t k_words, v_words;
    char *scratch;  // per worker: scores, sums, bf16 queries, bf16 weights
    size_t scratch_bytes;
} attention_job;

SCHNELL_TARGET_BF16 static void attention_items(void *context, size_t begin, size_t end) {
    const attention_job *job = context;
    size_t n = job->kv_tokens, d = job->head_dim, dk = 2 * job->dp, tk = 2 * job->tp;
    size_t blocks = (job->q_tokens + BLOCK - 1) / BLOCK;
    char *base = job->scratch + (size_t)schnell_worker_index() * job->scratch_bytes;
    float *scores = (float *)base;
    float *sums = scores + BLOCK * n;
    uint16_t *queries = (uint16_t *)(sums + BLOCK);
    uint16_t *weights = queries + BLOCK * dk;
    for (size_t item = begin; item < end; item++) {
        size_t h = item / blocks, first = item % blocks * BLOCK;
        size_t rows = job->q_tokens - first < BLOCK ? job->q_tokens - first : BLOCK;
        for (size_t r = 0; r < rows; r++) {
            schnell_bf16_round_row(job->q + (first + r) * job->q_stride + h * d, d, queries + r * dk, dk);
        }
        const uint32_t *kp = job->kp + h * job->k_words;
        for (size_t t = 0; t < n; t += NR) {
            const uint32_t *panel = kp + t / NR * job->dp * NR;
            for (size_t m = 0; m < rows; m += MR) {
                size_t mr = rows - m < MR ? rows - m : MR;
                schnell_bf16_micro_kernels[mr](queries + m * dk, dk, NULL, panel, job->dp, NULL, 1,
                                               scores + m * n + t, n, n - t < NR ? n - t : NR);
            }
        }
        schnell_softmax_weights(scores, rows, n, first, job->bias ? job->bias + (h * job->q_tokens + first) * n : NULL,
                                job->causal, job->scale, sums);
        for (size_t r = 0; r < rows; r++) schnell_bf16_round_row(scores + r * n, n, weights + r * tk, tk);
        float *out = job->out + first * job->out_stride + h * d;
        const uint32_t *vp = job->vp + h * job->v_words;
        for (size_t p0 = 0; p0 < job->tp; p0 += CHUNK) {
            size_t pairs = job->tp - p0 < CHUNK ? job->tp - p0 : CHUNK;
            for (size_t m = 0; m < rows; m += MR) {
                size_t mr = rows - m < MR ? rows - m : MR;
                const uint16_t *a = weights + m * tk + 2 * p0;
                for (size_t c = 0; c < d; c += NR) {
                    schnell_bf16_micro_kernels[mr](a, tk, c == 0 && m + MR < rows ? a + MR * tk : NULL,
                                                   vp + (c / NR * job->tp + p0) * NR, pairs, NULL, p0 == 0,
                                                   out + m * job->out_stride + c, job->out_stride,
                                                   d - c < NR ? d - c : NR);
                }
            }
        }
        for (size_t r = 0; r < rows; r++) {
            for (size_t c = 0; c < d; c++) out[r * job->out_stride + c] *= sums[r];
        }
    }
}

int schnell_attention_bf16(const float *q, size_t q_stride,
                           const float *k, size_t k_stride,
                           const float *v, size_t v_stride,
                           float *out, size_t out_stride,
                           size_t q_tokens, size_t kv_tokens, size_t heads, size_t head_dim,
                           float scale, const float *bias, int causal) {
    if (schnell_cpu_level() < SCHNELL_CPU_AVX512_BF16 || kv_tokens == 0 || head_dim == 0) return -1;
    if (q_tokens == 0 || heads == 0) return 0;
    size_t dp = (head_dim + 1) / 2, tp = (kv_tokens + 1) / 2;
    size_t k_words = schnell_round_up(kv_tokens, NR) * dp, v_words = schnell_round_up(head_dim, NR) * tp;
    size_t workers = (size_t)schnell_threads();
    size_t scratch_bytes = schnell_round_up(BLOCK * (kv_tokens + 1) * sizeof(float) + BLOCK * (2 * dp + 2 * tp) * 2, 64);
    uint32_t *packed = aligned_alloc(64, heads * (k_words + v_words) * sizeof(uint32_t));
    uint16_t *rows = malloc(workers * kv_tokens * 2 * dp * sizeof(uint16_t));
    char *scratch = aligned_alloc(64, workers * scratch_bytes);
    if (!packed || !rows || !scratch) {
        free(packed);
        free(rows);
        free(scratch);
        return -1;
    }
    pack_job packing = {k, v, k_stride, v_stride, kv_tokens, head_dim, dp, tp, packed, packed + heads * k_words,
                        k_words, v_words, rows};
    schnell_parallel_for(heads, 1, pack_heads, &packing);
    free(rows);
    attention_job job = {q, q_stride, out_stride, q_tokens, kv_tokens, head_dim, dp, tp, out, scale, bias, causal,
                         packed, packed + heads * k_words, k_words, v_words, scratch, scratch_bytes};
    size_t blocks = (q_tokens + BLOCK - 1) / BLOCK;
    schnell_parallel_for(heads * blocks, 1, attention_items, &job);
    free(packed);
    free(scratch);
    return 0;
}

static float bf16_round(float x) {
    uint16_t bits;
    schnell_f32_to_bf16(&x, &bits, 1);
    uint32_t wide = (uint32_t)bits << 16;
    float result;
    memcpy(&result, &wide, sizeof result);
    return result;
}

void schnell_attention_bf16_reference(const float *q, size_t q_stride,
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
            float maximum = -INFINITY;
            for (size_t j = 0; j < kv_tokens; j++) {
                const float *kj = k + j * k_stride + h * head_dim;
                double dot = 0.0;
                for (size_t c = 0; c < head_dim; c++) dot += (double)bf16_round(qi[c]) * bf16_round(kj[c]);
                row[j] = (float)dot * scale;
                if (bias) row[j] += bias[(h * q_tokens + i) * kv_tokens + j];
                if (causal && j > i) row[j] = -INFINITY;
                maximum = fmaxf(maximum, row[j]);
            }
            double sum = 0.0;
            for (size_t j = 0; j < kv_tokens; j++) {
                float weight = maximum == -INFINITY ? 0.0f : expf(row[j] - maximum);
                sum += weight;
                row[j] = bf16_round(weight);
            }
            float *o = out + i * out_stride + h * head_dim;
            for (size_t c = 0; c < head_dim; c++) {
                double total = 0.0;
                for (size_t j = 0; j < kv_tokens; j++) total += (double)row[j] * bf16_round(v[j * v_stride + h * head_dim + c]);
                o[c] = sum > 0.0 ? (float)(total / sum) : 0.0f;
            }
        }
    }
    free(row);
}
