// The implicit-GEMM convolutions of conv_gemm.c on AVX2+FMA: the same panels and gather plans
// (conv_gemm.h), gathered with 8-lane masked loads and met by the 6 x 16 AVX2 micro-kernel
// (gemm_f32.h). float32 only; f16 and bf16 weights arrive converted.
//
// Layouts
//   B   a block of C for one work item (256 pixels = 16 micro-panels of 16) and KC = 256 values
//       of depth: [micro-panel][k][16] floats, 256 KB, held in L2 (Zen 3 and Alder Lake: 512 KB
//       and 1.25 MB per core). One micro-panel of B (16 KB) and the 6 x KC rows of W it meets
//       (6 KB) fit in a 32 KB L1d together.
//   y   [Cout, P], written in 16-pixel micro-panels with a row stride of P.
//
// Gathering: a row of C over a 64-pixel panel is eight ymm registers (four 16-lane plan groups,
// two vectors each), filled entry by entry from the panel's plan: one masked load per vector
// with lanes to write. Without upsampling the load's mask is the lanes written and the other
// lanes load as zero, so entries merge by OR. Upsampled, both vectors of a group load from the
// half-width row (the upper one 4 source values on) and duplicate lanes with a permute.
#include <immintrin.h>

#include "conv_gemm.h"
#include "gemm_f32.h"

enum { MR = SCHNELL_F32_MR, NR = SCHNELL_AVX2_F32_NR, KC = SCHNELL_CONV_AVX2_KC };
enum { PANEL = SCHNELL_CONV_PANEL, MICRO_PER_PANEL = PANEL / NR };

// The 8 bits of `bits` as a maskload mask (lane l set when bit l is).
SCHNELL_TARGET_AVX2 SCHNELL_INLINE __m256i lane_mask(unsigned bits) {
    const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), lane_bits), lane_bits);
}

// One plan entry into the group's two vectors (lanes 0-7 and 8-15).
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void gather_entry(const float *plane, const plan_entry *entry, int upsampled,
                                                   __m256 *low, __m256 *high) {
    const float *at = offset_floats(plane, entry->offset);
    unsigned low_lanes = entry->lanes & 0xff, high_lanes = entry->lanes >> 8;
    if (!upsampled) {
        if (low_lanes) *low = _mm256_or_ps(*low, _mm256_maskload_ps(at, lane_mask(low_lanes)));
        if (high_lanes) *high = _mm256_or_ps(*high, _mm256_maskload_ps(at + 8, lane_mask(high_lanes)));
        return;
    }
    // Output lane d reads source value (d + odd) / 2 from the load: lanes 0-7 from `at`, lanes
    // 8-15 from at + 4 (source lanes 4-11 of the group's load mask).
    const __m256i duplicate = entry->odd ? _mm256_setr_epi32(0, 1, 1, 2, 2, 3, 3, 4)
                                         : _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    if (low_lanes) {
        __m256 source = _mm256_maskload_ps(at, lane_mask(entry->load & 0xff));
        __m256 value = _mm256_permutevar8x32_ps(source, duplicate);
        *low = _mm256_blendv_ps(*low, value, _mm256_castsi256_ps(lane_mask(low_lanes)));
    }
    if (high_lanes) {
        __m256 source = _mm256_maskload_ps(at + 4, lane_mask((entry->load >> 4) & 0xff));
        __m256 value = _mm256_permutevar8x32_ps(source, duplicate);
        *high = _mm256_blendv_ps(*high, value, _mm256_castsi256_ps(lane_mask(high_lanes)));
    }
}

// Row k of C over panel q by plan (stride 1), zero where padding or past the panel's columns:
// out[2v + h] is lanes 16v + 8h ... + 7.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void gather_planned(const conv_job *job, gather_plan plan, tap t, size_t q,
                                                     __m256 out[8]) {
    const schnell_conv2d_shape *s = job->s;
    size_t half = job->upsampled ? 1 : 0;
    size_t source_plane = (s->height >> half) * (s->width >> half);
    const float *plane = job->x + t.c * source_plane;
    size_t index = q * job->taps + t.i * s->kernel_w + t.j;
    const plan_entry *entry = plan.entries + plan.starts[index], *last = plan.entries + plan.starts[index + 1];
    __m256 v0 = _mm256_setzero_ps(), v1 = v0, v2 = v0, v3 = v0, v4 = v0, v5 = v0, v6 = v0, v7 = v0;
    // As on AVX-512: the short runs of many rows a panel reads are fetched PREFETCH_CHANNELS
    // channels ahead on the first tap of a row.
    const float *ahead = t.j == 0 && t.c + SCHNELL_CONV_PREFETCH_CHANNELS < s->in_channels
                             ? plane + SCHNELL_CONV_PREFETCH_CHANNELS * source_plane
                             : NULL;
    for (; entry < last; entry++) {
        switch (entry->v) {
        case 0: gather_entry(plane, entry, job->upsampled, &v0, &v1); break;
        case 1: gather_entry(plane, entry, job->upsampled, &v2, &v3); break;
        case 2: gather_entry(plane, entry, job->upsampled, &v4, &v5); break;
        default: gather_entry(plane, entry, job->upsampled, &v6, &v7); break;
        }
        if (ahead) {
            _mm_prefetch((const char *)offset_floats(ahead, entry->offset), _MM_HINT_T0);
            _mm_prefetch((const char *)offset_floats(ahead, entry->offset + 15), _MM_HINT_T0);
        }
    }
    out[0] = v0;
    out[1] = v1;
    out[2] = v2;
    out[3] = v3;
    out[4] = v4;
    out[5] = v5;
    out[6] = v6;
    out[7] = v7;
}

// bp[micro-panel][k - k0][16] for k in [k0, k0 + kc): micro-panel 4q + u holds lanes 16u ... 16u + 15
// of panel q.
SCHNELL_TARGET_AVX2 static void pack(const conv_job *job, gather_plan plan, const panel_layout *panels, size_t count,
                                     size_t k0, size_t kc, float *bp) {
    tap t = tap_of(k0, job->s);
    for (size_t k = k0; k < k0 + kc; k++, next_tap(&t, job->s)) {
        for (size_t q = 0; q < count; q++) {
            float *destination = bp + (q * MICRO_PER_PANEL * kc + k - k0) * NR;
            if (job->s->stride == 1) {
                __m256 row[8];
                gather_planned(job, plan, t, q, row);
                for (int u = 0; u < MICRO_PER_PANEL; u++) {
                    _mm256_store_ps(destination + u * kc * NR, row[2 * u]);
                    _mm256_store_ps(destination + u * kc * NR + 8, row[2 * u + 1]);
                }
            } else {
                float lanes[PANEL];
                schnell_conv_gather_strided(job, t, &panels[q], lanes);
                for (int u = 0; u < MICRO_PER_PANEL; u++) {
                    _mm256_store_ps(destination + u * kc * NR, _mm256_loadu_ps(lanes + NR * u));
                    _mm256_store_ps(destination + u * kc * NR + 8, _mm256_loadu_ps(lanes + NR * u + 8));
                }
            }
        }
    }
}

void schnell_conv_f32_items_avx2(void *context, size_t begin, size_t end) {
    const conv_job *job = context;
    const float *w = job->w;
    float *bp = (float *)job->scratch + (size_t)schnell_worker_index() * job->scratch_floats;
    size_t out_channels = job->s->out_channels;
    panel_layout panels[SCHNELL_CONV_PANELS];
    for (size_t item = begin; item < end; item++) {
        size_t count = schnell_conv_item_panels(job, item, panels);
        gather_plan plan = job->s->stride == 1 ? schnell_conv_plan_item(job, panels, count) : (gather_plan){NULL, NULL};
        size_t columns = job->pixels - item * SCHNELL_CONV_ITEM;
        if (columns > SCHNELL_CONV_ITEM) columns = SCHNELL_CONV_ITEM;
        size_t micro_panels = (columns + NR - 1) / NR;
        float *y = job->y + item * SCHNELL_CONV_ITEM;
        for (size_t k0 = 0; k0 < job->depth; k0 += KC) {
            size_t kc = job->depth - k0 < KC ? job->depth - k0 : KC;
            pack(job, plan, panels, count, k0, kc, bp);
            for (size_t m = 0; m < out_channels; m += MR) {
                size_t mr = out_channels - m < MR ? out_channels - m : MR;
                for (size_t u = 0; u < micro_panels; u++) {
                    size_t left = columns - u * NR;
                    schnell_f32_micro_kernels_avx2[mr](w + m * job->w_stride + k0, job->w_stride, bp + u * kc * NR, kc,
                                                       job->bias ? job->bias + m : NULL, k0 == 0,
                                                       y + m * job->pixels + u * NR, job->pixels,
                                                       left < NR ? left : NR);
                }
            }
        }
    }
}
