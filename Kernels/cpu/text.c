// Text-encoder kernels: T5's relative position bias [heads, q_tokens, kv_tokens].
//
// A bias row (h, i) depends only on j - i, so the fast kernel converts each head's values for
// the q_tokens + kv_tokens - 1 distinct distances once and copies every row out of that line;
// heads are split over the thread pool. The reference computes every entry on its own.
#include <stdlib.h>

#include "dispatch.h"
#include "schnell_text.h"

int schnell_relative_position_bucket(long relative_position, int bidirectional, int num_buckets,
                                     int max_distance) {
    int bucket = 0;
    long distance;
    if (bidirectional) {
        num_buckets /= 2;
        if (relative_position > 0) bucket += num_buckets;
        distance = labs(relative_position);
    } else {
        distance = relative_position < 0 ? -relative_position : 0;
    }
    int max_exact = num_buckets / 2;
    if (distance < max_exact) return bucket + (int)distance;
    // float32 throughout, as torch: log(d / max_exact) / log(max_distance / max_exact) * span,
    // where the divisor is a Python double rounded to float.
    float divisor = (float)log((double)max_distance / (double)max_exact);
    float scaled = logf((float)distance / (float)max_exact) / divisor * (float)(num_buckets - max_exact);
    long large = max_exact + (long)scaled;
    if (large > num_buckets - 1) large = num_buckets - 1;
    return bucket + (int)large;
}

typedef struct {
    const float *table;  // [num_buckets, heads], float32
    size_t heads, q_tokens, kv_tokens;
    int bidirectional, num_buckets, max_distance;
    float *lines;  // [heads, q_tokens + kv_tokens - 1] scratch
    float *out;
} bias_job;

static void bias_heads(void *context, size_t begin, size_t end) {
    const bias_job *job = context;
    size_t span = job->q_tokens + job->kv_tokens - 1;  // distances -(q_tokens - 1) ... kv_tokens - 1
    for (size_t h = begin; h < end; h++) {
        float *line = job->lines + h * span;
        for (size_t d = 0; d < span; d++) {
            long distance = (long)d - (long)(job->q_tokens - 1);
            int bucket = schnell_relative_position_bucket(distance, job->bidirectional, job->num_buckets,
                                                          job->max_distance);
            line[d] = job->table[(size_t)bucket * job->heads + h];
        }
        for (size_t i = 0; i < job->q_tokens; i++) {
            // Row i starts at distance -i, index q_tokens - 1 - i of the line.
            memcpy(job->out + (h * job->q_tokens + i) * job->kv_tokens, line + (job->q_tokens - 1 - i),
                   job->kv_tokens * sizeof(float));
        }
    }
}

void schnell_relative_position_bias(const void *table, int table_dtype, size_t heads,
                                    size_t q_tokens, size_t kv_tokens, int bidirectional,
                                    int num_buckets, int max_distance, float *out) {
    if (heads == 0 || q_tokens == 0 || kv_tokens == 0) return;
    size_t table_count = (size_t)num_buckets * heads;
    float *scratch = malloc((table_count + heads * (q_tokens + kv_tokens - 1)) * sizeof(float));
    if (!scratch) {
        schnell_relative_position_bias_reference(table, table_dtype, heads, q_tokens, kv_tokens,
                                                 bidirectional, num_buckets, max_distance, out);
        return;
    }
    schnell_convert_to_f32(table, table_dtype, scratch, table_count);
    bias_job job = {scratch, heads, q_tokens, kv_tokens, bidirectional, num_buckets, max_distance,
                    scratch + table_count, out};
    schnell_parallel_for(heads, 1, bias_heads, &job);
    free(scratch);
}

void schnell_relative_position_bias_reference(const void *table, int table_dtype, size_t heads,
                                              size_t q_tokens, size_t kv_tokens, int bidirectional,
                                              int num_buckets, int max_distance, float *out) {
    size_t element = schnell_dtype_size(table_dtype);
    for (size_t h = 0; h < heads; h++) {
        for (size_t i = 0; i < q_tokens; i++) {
            for (size_t j = 0; j < kv_tokens; j++) {
                int bucket = schnell_relative_position_bucket((long)j - (long)i, bidirectional, num_buckets,
                                                              max_distance);
                const char *entry = (const char *)table + ((size_t)bucket * heads + h) * element;
                schnell_convert_to_f32_reference(entry, table_dtype, out + (h * q_tokens + i) * kv_tokens + j, 1);
            }
        }
    }
}
