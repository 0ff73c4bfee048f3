// q/k RMS norm fused with FLUX's rotary position embedding, in place on a token-major
// [tokens, heads, head_dim] view (token stride lets it run inside a fused q|k|v buffer).
#include "dispatch.h"

typedef struct {
    float *x;
    size_t heads, head_dim, token_stride;
    const float *weight;
    float eps;
    const float *cos_table, *sin_table;
} rope_job;

SCHNELL_INLINE void rotate_head(float *h, size_t d, const float *weight, float eps,
                                const float *c, const float *s) {
    float inv = 1.0f / sqrtf(schnell_sum_squares(h, d, 0.0f) / (float)d + eps);
    for (size_t i = 0; i < d; i++) h[i] = h[i] * inv * (weight ? weight[i] : 1.0f);
    if (!c) return;
    for (size_t i = 0; i + 1 < d; i += 2) {
        float a = h[i], b = h[i + 1];
        h[i] = a * c[i] - b * s[i];
        h[i + 1] = b * c[i + 1] + a * s[i + 1];
    }
}

SCHNELL_INLINE void qk_norm_rope_body(void *context, size_t begin, size_t end) {
    const rope_job *job = context;
    size_t d = job->head_dim;
    for (size_t t = begin; t < end; t++) {
        const float *c = job->cos_table ? job->cos_table + t * d : NULL;
        const float *s = job->sin_table ? job->sin_table + t * d : NULL;
        for (size_t h = 0; h < job->heads; h++) {
            rotate_head(job->x + t * job->token_stride + h * d, d, job->weight, job->eps, c, s);
        }
    }
}
SCHNELL_VARIANTS(qk_norm_rope)

void schnell_qk_norm_rope(float *x, size_t tokens, size_t heads, size_t head_dim,
                          size_t token_stride, const float *norm_weight, float eps,
                          const float *cos_table, const float *sin_table) {
    rope_job job = {x, heads, head_dim, token_stride, norm_weight, eps, cos_table, sin_table};
    size_t grain = 4096 / (heads * head_dim + 1) + 1;
    schnell_parallel_for(tokens, grain, qk_norm_rope_select(), &job);
}

void schnell_qk_norm_rope_reference(float *x, size_t tokens, size_t heads, size_t head_dim,
                                    size_t token_stride, const float *norm_weight, float eps,
                                    const float *cos_table, const float *sin_table) {
    for (size_t t = 0; t < tokens; t++) {
        for (size_t h = 0; h < heads; h++) {
            float *v = x + t * token_stride + h * head_dim;
            schnell_rms_norm_reference(v, v, 1, head_dim, eps, norm_weight);
            if (!cos_table) continue;
            const float *c = cos_table + t * head_dim, *s = sin_table + t * head_dim;
            for (size_t i = 0; i + 1 < head_dim; i += 2) {
                float a = v[i], b = v[i + 1];
                v[i] = a * c[i] - b * s[i];
                v[i + 1] = b * c[i + 1] + a * s[i + 1];
            }
        }
    }
}
