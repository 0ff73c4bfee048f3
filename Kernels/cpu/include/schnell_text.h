// Schnell CPU kernels for the text encoders: T5's bucketed relative position bias.
#ifndef SCHNELL_TEXT_H
#define SCHNELL_TEXT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// T5's bucket for a relative position (key position - query position), as transformers'
// T5Attention._relative_position_bucket computes it, float32 logarithm included: half the
// buckets (per direction when bidirectional) are exact distances, the rest logarithmic up to
// max_distance.
int schnell_relative_position_bucket(long relative_position, int bidirectional, int num_buckets,
                                     int max_distance);

// out[h, i, j] = table[bucket(j - i), h] for h < heads, i < q_tokens, j < kv_tokens: the
// attention bias [heads, q_tokens, kv_tokens] from the bias table [num_buckets, heads] stored
// in `table_dtype` (a schnell_dtype). Heads are split over the thread pool.
void schnell_relative_position_bias(const void *table, int table_dtype, size_t heads,
                                    size_t q_tokens, size_t kv_tokens, int bidirectional,
                                    int num_buckets, int max_distance, float *out);
void schnell_relative_position_bias_reference(const void *table, int table_dtype, size_t heads,
                                              size_t q_tokens, size_t kv_tokens, int bidirectional,
                                              int num_buckets, int max_distance, float *out);

#ifdef __cplusplus
}
#endif

#endif
