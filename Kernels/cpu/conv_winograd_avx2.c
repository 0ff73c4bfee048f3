// Winograd F(2x2, 3x3) on AVX2+FMA, float32: the work items of conv_winograd.c's path (same
// transforms; see there), with 8-lane transforms and the 6 x 16 AVX2 micro-kernel.
//
// Layouts, per work item of item_tiles (64, or 128 when U outgrows the caches) consecutive tiles,
// that is 4 or 8 micro-panels of 16 columns:
//   U   [16][chunk][Cout][kc] (transform_filters with a chunk): the 6 rows of U one micro-kernel
//       call reads are one contiguous run, fetched ahead while the previous 6 rows run.
//   V   [xi][micro-panel][channel][16] for a chunk of up to 512 input channels (all of them in
//       the VAE, so M is written once and never reloaded from memory: 11% faster at 512 channels
//       than chunks of 128). Each product's B panel (kc x 16 floats) is contiguous; a position's
//       panels (at most 512 x 128 floats, 256 KB) stay in L2 while every 6-row block of U[xi]
//       meets them.
//   M   [xi][Cout][item_tiles].
//
// Transforms run on 8 tiles of one tile row (one ymm lane per tile), so the width must be a
// multiple of 16. A patch row's even and odd columns are split with in-lane shuffles only, which
// leaves the tiles in lane order 0 1 4 5 | 2 3 6 7; the products keep columns apart, and the
// output transform's in-lane unpacks of (y[.][0], y[.][1]) restore the order for free.
#include <immintrin.h>

#include "conv_winograd.h"
#include "dispatch.h"

enum { MR = SCHNELL_F32_MR, NR = SCHNELL_AVX2_F32_NR, MAX_ITEM = SCHNELL_WINOGRAD_AVX2_MAX_ITEM };
enum { GROUP = SCHNELL_WINOGRAD_AVX2_GROUP, CHUNK = SCHNELL_WINOGRAD_AVX2_CHUNK, PREFETCH_CHANNELS = 2 };

// Lanes l of a load at column `first` that lie inside [0, width), as a maskload mask.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE __m256i inside_row(ptrdiff_t first, ptrdiff_t width) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i from = _mm256_set1_epi32((int)(-first - 1)), to = _mm256_set1_epi32((int)(width - first));
    return _mm256_and_si256(_mm256_cmpgt_epi32(lanes, from), _mm256_cmpgt_epi32(to, lanes));
}

// V for one channel over the 8 tiles from (ti, tj), stored at v + xi * xi_stride: 4x4 patches
// from row 2ti - 1 and column base = 2tj - 1. masks: the loads of a patch row at base + 0, 8, 2, 10.
SCHNELL_TARGET_AVX2 SCHNELL_INLINE void input_tiles(const float *plane, size_t height, size_t width, size_t ti,
                                                  size_t tj, const __m256i masks[4], float *v, size_t xi_stride) {
    ptrdiff_t base = 2 * (ptrdiff_t)tj - 1;
    __m256 h[4][4];  // h[row][b]: d . B along the columns, row r of the patch
    for (int r = 0; r < 4; r++) {
        ptrdiff_t row = 2 * (ptrdiff_t)ti - 1 + r;
        if (row < 0 || row >= (ptrdiff_t)height) {
            for (int b = 0; b < 4; b++) h[r][b] = _mm256_setzero_ps();
            continue;
        }
        // Element e of the 18 columns from base is line[base + e], read with masks (base may be -1).
        const float *at = (const float *)((uintptr_t)(plane + (size_t)row * width) +
                                          (uintptr_t)(base * (ptrdiff_t)sizeof(float)));
        __m256 a = _mm256_maskload_ps(at, masks[0]), b = _mm256_maskload_ps(at + 8, masks[1]);
        __m256 a2 = _mm256_maskload_ps(at + 2, masks[2]), b2 = _mm256_maskload_ps(at + 10, masks[3]);
        // Columns base + 2t + {0, 1, 2, 3} of tile t, in the lane order 0 1 4 5 | 2 3 6 7.
        __m256 c0 = _mm256_shuffle_ps(a, b, 0x88), c1 = _mm256_shuffle_ps(a, b, 0xdd);
        __m256 c2 = _mm256_shuffle_ps(a2, b2, 0x88), c3 = _mm256_shuffle_ps(a2, b2, 0xdd);
        h[r][0] = _mm256_sub_ps(c0, c2);
        h[r][1] = _mm256_add_ps(c1, c2);
        h[r][2] = _mm256_sub_ps(c2, c1);
        h[r][3] = _mm256_sub_ps(c1, c3);
    }
    for (int b = 0; b < 4; b++) {
        _mm256_store_ps(v + (0 * 4 + b) * xi_stride, _mm256_sub_ps(h[0][b], h[2][b]));
        _mm256_store_ps(v + (1 * 4 + b) * xi_stride, _mm256_add_ps(h[1][b], h[2][b]));
        _mm256_store_ps(v + (2 * 4 + b) * xi_stride, _mm256_sub_ps(h[2][b], h[1][b]));
        _mm256_store_ps(v + (3 * 4 + b) * xi_stride, _mm256_sub_ps(h[1][b], h[3][b]));
    }
}

// V of channels [c0, c0 + kc) over the item's tiles [t0, t0 + columns) into vp (layout above).
SCHNELL_TARGET_AVX2 static void transform_inputs(const winograd_job *job, size_t t0, size_t columns, size_t c0,
                                                 size_t kc, float *vp) {
    const schnell_conv2d_shape *s = job->s;
    size_t plane = s->height * s->width, groups = columns / GROUP;
    size_t ti[MAX_ITEM / GROUP], tj[MAX_ITEM / GROUP], micro_panels = job->item_tiles / NR;
    __m256i masks[MAX_ITEM / GROUP][4];
    for (size_t g = 0; g < groups; g++) {
        size_t tile = t0 + g * GROUP;
        ti[g] = tile / job->tile_columns;
        tj[g] = tile % job->tile_columns;
        ptrdiff_t first = 2 * (ptrdiff_t)tj[g] - 1;
        const ptrdiff_t offsets[4] = {0, 8, 2, 10};
        for (int i = 0; i < 4; i++) masks[g][i] = inside_row(first + offsets[i], (ptrdiff_t)s->width);
    }
    // Channel by channel, so each reads four runs of its plane's rows in order.
    for (size_t c = 0; c < kc; c++) {
        const float *x = job->x + (c0 + c) * plane;
        for (size_t g = 0; g < groups; g++) {
            // Group g is lanes 8 (g % 2) ... of micro-panel g / 2.
            float *v = vp + ((g / 2) * kc + c) * NR + GROUP * (g % 2);
            input_tiles(x, s->height, s->width, ti[g], tj[g], masks[g], v, micro_panels * kc * NR);
            // Each channel reads four short runs of rows a plane apart, which the hardware
            // prefetchers miss: fetch them PREFETCH_CHANNELS channels ahead (5% at 256x256).
            if (c0 + c + PREFETCH_CHANNELS < s->in_channels) {
                const float *ahead = x + PREFETCH_CHANNELS * plane + 2 * tj[g];
                for (size_t row = ti[g] ? 2 * ti[g] - 1 : 0; row <= 2 * ti[g] + 2 && row < s->height; row++) {
                    _mm_prefetch((const char *)(ahead + row * s->width), _MM_HINT_T0);
                }
            }
        }
    }
}

// y = A^T M A + bias over the item's tiles, 8 at a time: rows 2ti and 2ti + 1, columns 2tj ... 2tj + 15.
SCHNELL_TARGET_AVX2 static void transform_outputs(const winograd_job *job, size_t t0, size_t columns, const float *m) {
    const schnell_conv2d_shape *s = job->s;
    size_t cout = s->out_channels, plane = s->height * s->width, item = job->item_tiles, xi_stride = cout * item;
    for (size_t o = 0; o < cout; o++) {
        __m256 b = _mm256_set1_ps(job->bias ? job->bias[o] : 0.0f);
        for (size_t g = 0; g < columns; g += GROUP) {
            size_t tile = t0 + g, ti = tile / job->tile_columns, tj = tile % job->tile_columns;
            const float *q = m + o * item + g;
            __m256 r0[4], r1[4];
            for (int c = 0; c < 4; c++) {
                __m256 q0 = _mm256_load_ps(q + c * xi_stride), q1 = _mm256_load_ps(q + (4 + c) * xi_stride);
                __m256 q2 = _mm256_load_ps(q + (8 + c) * xi_stride), q3 = _mm256_load_ps(q + (12 + c) * xi_stride);
                r0[c] = _mm256_add_ps(_mm256_add_ps(q0, q1), q2);
                r1[c] = _mm256_sub_ps(_mm256_sub_ps(q1, q2), q3);
            }
            __m256 y00 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r0[0], r0[1]), r0[2]), b);
            __m256 y01 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r0[1], r0[2]), r0[3]), b);
            __m256 y10 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r1[0], r1[1]), r1[2]), b);
            __m256 y11 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r1[1], r1[2]), r1[3]), b);
            float *top = job->y + o * plane + 2 * ti * s->width + 2 * tj;
            _mm256_storeu_ps(top, _mm256_unpacklo_ps(y00, y01));
            _mm256_storeu_ps(top + 8, _mm256_unpackhi_ps(y00, y01));
            _mm256_storeu_ps(top + s->width, _mm256_unpacklo_ps(y10, y11));
            _mm256_storeu_ps(top + s->width + 8, _mm256_unpackhi_ps(y10, y11));
        }
    }
}

void schnell_winograd_items_avx2(void *context, size_t begin, size_t end) {
    const winograd_job *job = context;
    size_t cin = job->s->in_channels, cout = job->s->out_channels;
    char *base = job->scratch + (size_t)schnell_worker_index() * job->scratch_bytes;
    float *vp = (float *)base;                                     // V of one chunk of channels
    size_t item_tiles = job->item_tiles, item_panels = item_tiles / NR;
    float *m = (float *)(base + job->scratch_bytes) - (size_t)16 * cout * item_tiles;  // [16][Cout][item_tiles]
    for (size_t item = begin; item < end; item++) {
        size_t t0 = item * item_tiles, columns = job->tiles - t0 < item_tiles ? job->tiles - t0 : item_tiles;
        size_t micro_panels = (columns + NR - 1) / NR;
        for (size_t c0 = 0; c0 < cin; c0 += CHUNK) {
            size_t kc = cin - c0 < CHUNK ? cin - c0 : CHUNK;
            transform_inputs(job, t0, columns, c0, kc, vp);
            for (int xi = 0; xi < 16; xi++) {
                const float *u = (const float *)job->u + (size_t)xi * cout * cin + c0 * cout;  // [Cout][kc]
                for (size_t o = 0; o < cout; o += MR) {
                    size_t mr = cout - o < MR ? cout - o : MR;
                    // U[xi] outgrows L2 at 512 channels: fetch the next 6 rows while these run, a
                    // share before each call (all at once, the prefetches wait for fill buffers).
                    size_t next_rows = o + MR < cout ? (cout - o - MR < MR ? cout - o - MR : MR) : 0;
                    size_t next_bytes = next_rows * kc * sizeof(float);
                    const char *next = next_rows ? (const char *)(u + (o + MR) * kc) : NULL;
                    size_t share = (next_bytes / 64 + micro_panels - 1) / micro_panels * 64;
                    for (size_t p = 0; p < micro_panels; p++) {
                        for (size_t line = p * share; line < (p + 1) * share && line < next_bytes; line += 64) {
                            _mm_prefetch(next + line, _MM_HINT_T0);
                        }
                        size_t left = columns - p * NR;
                        const float *v = vp + ((size_t)xi * item_panels + p) * kc * NR;
                        float *out = m + ((size_t)xi * cout + o) * item_tiles + p * NR;
                        schnell_f32_micro_kernels_avx2[mr](u + o * kc, kc, v, kc, NULL, c0 == 0, out, item_tiles,
                                                           left < NR ? left : NR);
                    }
                }
            }
        }
        transform_outputs(job, t0, columns, m);
    }
}
