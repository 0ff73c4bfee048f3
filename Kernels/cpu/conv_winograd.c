// 3x3 convolutions (stride 1, padding 1) as Winograd F(2x2, 3x3): each 2x2 block of outputs
// ("tile") costs 16 multiply-adds per input channel instead of 36.
//
//   U = G g G^T       per filter, 4x4, in float32 (bf16 path: from the bf16 taps, rounded to bf16)
//   V = B^T d B       per tile and input channel, d the 4x4 input patch at (2ti - 1, 2tj - 1)
//   M[xi] = U[xi] . V[xi]   for each of the 16 positions xi: [Cout, Cin] . [Cin, tiles], on the
//                           float32 micro-kernel of the convolutions or (bf16 path, V rounded to
//                           bf16) the AVX512-BF16 micro-kernel of the linear layers
//   y = A^T M A + bias      per tile, 2x2 outputs
//
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
//
// Work items are 64 consecutive tiles (one micro-kernel panel); transforms run on 16 tiles of one
// tile row at a time, so the output width must be a multiple of 32. Input channels are taken 256
// at a time: V for them (16 x 256 x 64 x 4 B = 1 MB in float32, half that in bf16) stays in L2
// while the 16 products accumulate into M (16 x Cout x 64 floats). That is the AVX-512 tier; the
// filter transform and the entry below serve the AVX2 tier too, whose items
// (conv_winograd_avx2.c) transform 8 tiles at a time (a width multiple of 16).
//
// In float32 the result differs from the direct sum by rounding only (the tests bound it as
// tightly as the direct convolution). Rounding V and U to bf16 loses a little more than the
// direct bf16 convolution, which rounds the input and the taps themselves: the tests bound the
// difference to the bf16 reference.
#include <stdlib.h>

#include "conv_winograd.h"
#include "gemm_bf16.h"

enum { MR = SCHNELL_BF16_MR, NR = SCHNELL_BF16_NR, CHUNK = 256, GROUP = 16 };

int schnell_winograd_applies(const schnell_conv2d_shape *s) {
    int avx512 = schnell_cpu_level() >= SCHNELL_CPU_AVX512;
    size_t width_multiple = avx512 ? 2 * GROUP : 2 * SCHNELL_WINOGRAD_AVX2_GROUP;
    return s->kernel_h == 3 && s->kernel_w == 3 && s->stride == 1 && s->pad_top == 1 && s->pad_bottom == 1 &&
           s->pad_left == 1 && s->pad_right == 1 && s->height % 2 == 0 && s->width % width_multiple == 0 &&
           s->height > 0 && (avx512 || s->in_channels >= SCHNELL_WINOGRAD_AVX2_MIN_CHANNELS);
}

typedef struct {
    const float *weight;  // [Cout][Cin][3][3]
    int bf16;
    size_t filters, in_channels, chunk;
    void *u;              // bf16 on the bf16 path, else float32: see transform_filters
} filter_job;

// U = (G g G^T)[xi] for every filter g (rounded to bf16 on the bf16 path). With job->chunk 0,
// U[xi][co][ci]; else U[xi] is cut into chunks of `chunk` input channels, each [Cout][kc]
// (kc = chunk, less in the last), so that a micro-kernel's 6 rows of U are one contiguous run.
static void transform_filters(void *context, size_t begin, size_t end) {
    const filter_job *job = context;
    size_t cin = job->in_channels;
    for (size_t f = begin; f < end; f++) {
        size_t at = f;
        if (job->chunk) {
            size_t co = f / cin, ci = f % cin, c0 = ci - ci % job->chunk;
            size_t kc = cin - c0 < job->chunk ? cin - c0 : job->chunk;
            at = c0 * (job->filters / cin) + co * kc + ci - c0;
        }
        const float *g = job->weight + f * 9;
        float gg[4][3], values[16];
        for (int c = 0; c < 3; c++) {
            gg[0][c] = g[c];
            gg[1][c] = 0.5f * (g[c] + g[3 + c] + g[6 + c]);
            gg[2][c] = 0.5f * (g[c] - g[3 + c] + g[6 + c]);
            gg[3][c] = g[6 + c];
        }
        for (int r = 0; r < 4; r++) {
            values[r * 4 + 0] = gg[r][0];
            values[r * 4 + 1] = 0.5f * (gg[r][0] + gg[r][1] + gg[r][2]);
            values[r * 4 + 2] = 0.5f * (gg[r][0] - gg[r][1] + gg[r][2]);
            values[r * 4 + 3] = gg[r][2];
        }
        if (job->bf16) {
            uint16_t rounded[16];
            schnell_f32_to_bf16(values, rounded, 16);
            for (int xi = 0; xi < 16; xi++) ((uint16_t *)job->u)[(size_t)xi * job->filters + at] = rounded[xi];
        } else {
            for (int xi = 0; xi < 16; xi++) ((float *)job->u)[(size_t)xi * job->filters + at] = values[xi];
        }
    }
}

// 16 tiles of one tile row, from tile row ti and tile column tj, and which lanes of the four
// loads of a patch row (columns 2tj - 1 + {0, 16, 2, 18} onwards) lie inside the image.
typedef struct {
    size_t ti, tj;
    __mmask16 masks[4];
} tile_group;

static tile_group group_at(const winograd_job *job, size_t tile) {
    tile_group group = {tile / job->tile_columns, tile % job->tile_columns, {0}};
    ptrdiff_t first = 2 * (ptrdiff_t)group.tj - 1, width = (ptrdiff_t)job->s->width;
    const ptrdiff_t offsets[4] = {0, 16, 2, 18};
    for (int i = 0; i < 4; i++) {
        group.masks[i] = (__mmask16)schnell_lane_bits(-(first + offsets[i]), width - (first + offsets[i]));
    }
    return group;
}

// V for one channel over a group of 16 tiles: v[xi] lane j is tile j's value at position xi.
SCHNELL_TARGET_AVX512 static void input_tiles(const float *plane, size_t height, size_t width,
                                            const tile_group *group, __m512 v[16]) {
    const __mmask16 *masks = group->masks;
    size_t ti = group->ti, tj = group->tj;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    ptrdiff_t base = 2 * (ptrdiff_t)tj - 1;
    __m512 h[4][4];  // h[row][b]: d . B along the columns, row r of the patch
    for (int r = 0; r < 4; r++) {
        ptrdiff_t row = 2 * (ptrdiff_t)ti - 1 + r;
        if (row < 0 || row >= (ptrdiff_t)height) {
            for (int b = 0; b < 4; b++) h[r][b] = _mm512_setzero_ps();
            continue;
        }
        const float *line = plane + (size_t)row * width;
        // Element e of the 34 columns from base is line[base + e], read with masks (base may be -1).
        const float *at = (const float *)((uintptr_t)line + (uintptr_t)(base * (ptrdiff_t)sizeof(float)));
        __m512 a = _mm512_maskz_loadu_ps(masks[0], at), b = _mm512_maskz_loadu_ps(masks[1], at + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(masks[2], at + 2), b2 = _mm512_maskz_loadu_ps(masks[3], at + 18);
        __m512 c0 = _mm512_permutex2var_ps(a, even, b), c1 = _mm512_permutex2var_ps(a, odd, b);
        __m512 c2 = _mm512_permutex2var_ps(a2, even, b2), c3 = _mm512_permutex2var_ps(a2, odd, b2);
        h[r][0] = _mm512_sub_ps(c0, c2);
        h[r][1] = _mm512_add_ps(c1, c2);
        h[r][2] = _mm512_sub_ps(c2, c1);
        h[r][3] = _mm512_sub_ps(c1, c3);
    }
    for (int b = 0; b < 4; b++) {
        v[0 * 4 + b] = _mm512_sub_ps(h[0][b], h[2][b]);
        v[1 * 4 + b] = _mm512_add_ps(h[1][b], h[2][b]);
        v[2 * 4 + b] = _mm512_sub_ps(h[2][b], h[1][b]);
        v[3 * 4 + b] = _mm512_sub_ps(h[1][b], h[3][b]);
    }
}

// V of channels [c0, c0 + kc) over the item's tiles [t0, t0 + columns), in the micro-kernel's B
// layout per position xi: bf16 [xi][pair][64] words, float32 [xi][channel][64].
SCHNELL_TARGET_BF16 static void transform_inputs_bf16(const winograd_job *job, size_t t0, size_t columns,
                                                      size_t c0, size_t kc, uint32_t *vp) {
    const schnell_conv2d_shape *s = job->s;
    size_t plane = s->height * s->width, pairs = kc / 2;
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                                 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
                                                 1, 16, 0);
    for (size_t g = 0; g < columns; g += GROUP) {
        tile_group group = group_at(job, t0 + g);
        for (size_t p = 0; p < pairs; p++) {
            __m512 even_v[16], odd_v[16];
            input_tiles(job->x + (c0 + 2 * p) * plane, s->height, s->width, &group, even_v);
            input_tiles(job->x + (c0 + 2 * p + 1) * plane, s->height, s->width, &group, odd_v);
            for (int xi = 0; xi < 16; xi++) {
                __m512i words = (__m512i)_mm512_cvtne2ps_pbh(odd_v[xi], even_v[xi]);
                _mm512_store_si512(vp + ((size_t)xi * pairs + p) * NR + g, _mm512_permutexvar_epi16(interleave, words));
            }
        }
    }
}

SCHNELL_TARGET_AVX512 static void transform_inputs_f32(const winograd_job *job, size_t t0, size_t columns,
                                                       size_t c0, size_t kc, float *vp) {
    const schnell_conv2d_shape *s = job->s;
    size_t plane = s->height * s->width;
    for (size_t g = 0; g < columns; g += GROUP) {
        tile_group group = group_at(job, t0 + g);
        for (size_t c = 0; c < kc; c++) {
            __m512 v[16];
            input_tiles(job->x + (c0 + c) * plane, s->height, s->width, &group, v);
            for (int xi = 0; xi < 16; xi++) _mm512_store_ps(vp + ((size_t)xi * kc + c) * NR + g, v[xi]);
        }
    }
}

SCHNELL_TARGET_AVX512 static void winograd_items(void *context, size_t begin, size_t end) {
    const winograd_job *job = context;
    const schnell_conv2d_shape *s = job->s;
    size_t cin = s->in_channels, cout = s->out_channels, plane = s->height * s->width;
    char *base = job->scratch + (size_t)schnell_worker_index() * job->scratch_bytes;
    void *vp = base;                                               // V of one chunk of channels
    float *m = (float *)(base + (size_t)16 * CHUNK * NR * 4);      // [16][Cout][64]
    for (size_t item = begin; item < end; item++) {
        size_t t0 = item * NR, columns = job->tiles - t0 < NR ? job->tiles - t0 : NR;
        for (size_t c0 = 0; c0 < cin; c0 += CHUNK) {
            size_t kc = cin - c0 < CHUNK ? cin - c0 : CHUNK;
            if (job->bf16) transform_inputs_bf16(job, t0, columns, c0, kc, vp);
            else transform_inputs_f32(job, t0, columns, c0, kc, vp);
            for (int xi = 0; xi < 16; xi++) {
                for (size_t o = 0; o < cout; o += MR) {
                    size_t mr = cout - o < MR ? cout - o : MR;
                    float *out = m + ((size_t)xi * cout + o) * NR;
                    if (job->bf16) {
                        const uint16_t *u = (const uint16_t *)job->u + (size_t)xi * cout * cin;
                        schnell_bf16_micro_kernels[mr](u + o * cin + c0, cin, NULL, (const uint32_t *)vp + (size_t)xi * kc / 2 * NR,
                                                       kc / 2, NULL, c0 == 0, out, NR, columns);
                    } else {
                        const float *u = (const float *)job->u + (size_t)xi * cout * cin;
                        schnell_f32_micro_kernels[mr](u + o * cin + c0, cin, (const float *)vp + (size_t)xi * kc * NR, kc,
                                                      NULL, c0 == 0, out, NR, columns);
                    }
                }
            }
        }
        // y = A^T M A + bias, 16 tiles at a time: rows 2ti and 2ti + 1, columns 2tj ... 2tj + 31.
        const __m512i low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i high = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        for (size_t o = 0; o < cout; o++) {
            __m512 b = _mm512_set1_ps(job->bias ? job->bias[o] : 0.0f);
            for (size_t g = 0; g < columns; g += GROUP) {
                size_t tile = t0 + g, ti = tile / job->tile_columns, tj = tile % job->tile_columns;
                __m512 q[16];
                for (int xi = 0; xi < 16; xi++) q[xi] = _mm512_load_ps(m + ((size_t)xi * cout + o) * NR + g);
                __m512 r0[4], r1[4];
                for (int c = 0; c < 4; c++) {
                    r0[c] = _mm512_add_ps(_mm512_add_ps(q[c], q[4 + c]), q[8 + c]);
                    r1[c] = _mm512_sub_ps(_mm512_sub_ps(q[4 + c], q[8 + c]), q[12 + c]);
                }
                __m512 y00 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r0[0], r0[1]), r0[2]), b);
                __m512 y01 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r0[1], r0[2]), r0[3]), b);
                __m512 y10 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r1[0], r1[1]), r1[2]), b);
                __m512 y11 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r1[1], r1[2]), r1[3]), b);
                float *top = job->y + o * plane + 2 * ti * s->width + 2 * tj;
                _mm512_storeu_ps(top, _mm512_permutex2var_ps(y00, low, y01));
                _mm512_storeu_ps(top + 16, _mm512_permutex2var_ps(y00, high, y01));
                _mm512_storeu_ps(top + s->width, _mm512_permutex2var_ps(y10, low, y11));
                _mm512_storeu_ps(top + s->width + 16, _mm512_permutex2var_ps(y10, high, y11));
            }
        }
    }
}

int schnell_conv2d_winograd(const float *x, const void *weight, int bf16, const float *bias, float *y,
                            const schnell_conv2d_shape *s) {
    size_t cin = s->in_channels, cout = s->out_channels;
    size_t workers = (size_t)schnell_threads();
    int avx512 = schnell_cpu_level() >= SCHNELL_CPU_AVX512;
    // Per worker: V of one chunk of channels, then M [16][Cout][tiles of an item].
    // AVX2: U streams from memory once per item when it outgrows the caches (16 MB at 512
    // channels), so there twice the tiles per item halve that traffic, at twice the size of M.
    size_t u_bytes = (size_t)16 * cout * cin * sizeof(float);
    size_t item = avx512 ? NR : u_bytes > ((size_t)8 << 20) ? SCHNELL_WINOGRAD_AVX2_MAX_ITEM : 64;
    size_t chunk = avx512 ? CHUNK : cin < SCHNELL_WINOGRAD_AVX2_CHUNK ? cin : SCHNELL_WINOGRAD_AVX2_CHUNK;
    size_t scratch_bytes = (size_t)16 * (chunk + cout) * item * sizeof(float);
    float *owned;
    const float *w = schnell_as_f32(weight, bf16 ? SCHNELL_BF16 : SCHNELL_F32, cout * cin * 9, &owned);
    void *u = malloc((size_t)16 * cout * cin * (bf16 ? sizeof(uint16_t) : sizeof(float)));
    char *scratch = aligned_alloc(64, workers * scratch_bytes);
    if (!w || !u || !scratch) {
        free(owned);
        free(u);
        free(scratch);
        return -1;
    }
    filter_job filters = {w, bf16, cout * cin, cin, avx512 ? 0 : SCHNELL_WINOGRAD_AVX2_CHUNK, u};
    schnell_parallel_for(cout * cin, 256, transform_filters, &filters);
    free(owned);
    size_t tile_rows = s->height / 2, tile_columns = s->width / 2;
    winograd_job job = {x, s, u, bf16, bias, y, tile_rows, tile_columns, tile_rows * tile_columns, scratch,
                        scratch_bytes, item};
    schnell_parallel_for((job.tiles + item - 1) / item, 1,
                         avx512 ? winograd_items : schnell_winograd_items_avx2, &job);
    free(u);
    free(scratch);
    return 0;
}
