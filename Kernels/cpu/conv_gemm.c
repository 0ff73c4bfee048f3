// Convolutions as implicit GEMMs on AVX-512 (this file) and AVX2 (conv_gemm_avx2.c, with the
// panels and gather plans of conv_gemm.h): y[Cout, P] = W[Cout, depth] . C[depth, P] (+ bias),
// P = OH x OW output pixels, depth = Cin x kh x kw, C the im2col matrix. C is never built: each
// block of it is gathered from the input image straight into the layout the micro-kernel reads.
// That saves im2col's pass over memory, the page faults of a fresh column buffer per call and
// OpenBLAS's own repacking of the columns, and lets the bf16 path round while it gathers.
//
// Layouts
//   W   the weight as stored, [Cout, depth] row-major: float32 (f16 and bf16 converted once per
//       call), or bf16 read in place as the (k even, k odd) pairs the bf16 micro-kernel wants.
//   B   a block of C for NC (256) pixels and KC values of depth, packed per work item: float32
//       [panel of 64 pixels][k][64]; bf16 [panel][pair][64] words (C[2p] | C[2p + 1] << 16).
//   y   [Cout, P], written in 64-pixel panels with a row stride of P.
//
// Gathering: a panel's 64 pixels fall into runs along output rows ("segments"; one run when the
// output width is a multiple of 64). For stride 1 a segment's inputs for one k are a contiguous
// run of one input row, read with a masked load that leaves the zero padding as zeros; where
// those loads fall is planned once per work item, panel and tap (the same for every channel).
// Larger strides (the encoder's three downsamplings) gather lane by lane. The decoder's upsampling
// convolutions read their input at half size and duplicate lanes in registers, so the x2
// upsampled activation (256 MB at 512x512) is never built.
//
// Work items are NC-pixel column blocks spread over the pool; within one, each KC block of depth
// is packed (512 KB, held in L2) and then met by every 6-row micro-panel of W in turn.
#include <stdint.h>
#include <stdlib.h>

#include "conv_gemm.h"
#include "conv_winograd.h"
#include "gemm_bf16.h"

enum { MR = 6, NR = SCHNELL_CONV_PANEL, PANELS = SCHNELL_CONV_PANELS, NC = SCHNELL_CONV_ITEM, KC_F32 = 512, KC_BF16 = 1024 };
enum { PREFETCH_CHANNELS = SCHNELL_CONV_PREFETCH_CHANNELS };

// ---- tier-independent: panels and gather plans (conv_gemm.h) ----

static void layout_panel(size_t first_pixel, size_t columns, size_t ow, panel_layout *panel) {
    panel->count = 0;
    panel->columns = columns;
    for (size_t lane = 0; lane < columns;) {
        size_t pixel = first_pixel + lane, oy = pixel / ow, ox = pixel % ow;
        size_t count = ow - ox < columns - lane ? ow - ox : columns - lane;
        panel->runs[panel->count++] = (segment){lane, count, oy, ox};
        lane += count;
    }
}

// Floor of value / 2 for negative values too.
SCHNELL_INLINE ptrdiff_t floor_half(ptrdiff_t value) { return value >= 0 ? value / 2 : -((1 - value) / 2); }

// Appends the entries of tap (i, j) over one panel; returns how many.
static size_t plan_tap(const conv_job *job, const panel_layout *panel, size_t i, size_t j, plan_entry *entry) {
    const schnell_conv2d_shape *s = job->s;
    size_t half = job->upsampled ? 1 : 0;
    ptrdiff_t source_width = (ptrdiff_t)(s->width >> half);
    size_t written = 0;
    for (size_t g = 0; g < panel->count; g++) {
        const segment *run = &panel->runs[g];
        size_t padded_row = run->oy + i;
        if (padded_row < s->pad_top || padded_row >= s->pad_top + s->height) continue;
        ptrdiff_t row = (ptrdiff_t)((padded_row - s->pad_top) >> half) * source_width;
        // Lane d reads input column d + shift, inside the row for d in [-shift, width - shift).
        ptrdiff_t shift = (ptrdiff_t)(run->ox + j) - (ptrdiff_t)s->pad_left - (ptrdiff_t)run->lane;
        ptrdiff_t lo = (ptrdiff_t)run->lane > -shift ? (ptrdiff_t)run->lane : -shift;
        ptrdiff_t end = (ptrdiff_t)(run->lane + run->count);
        uint64_t valid = schnell_lane_bits(lo, end < (ptrdiff_t)s->width - shift ? end : (ptrdiff_t)s->width - shift);
        for (int v = 0; v < 4; v++) {
            uint16_t lanes = (uint16_t)(valid >> (16 * v));
            if (!lanes) continue;
            ptrdiff_t first = shift + 16 * v;
            if (!job->upsampled) {
                entry[written++] = (plan_entry){row + first, lanes, lanes, (uint8_t)v, 0};
                continue;
            }
            // Source value (e + odd) / 2 of a vector loaded at the lane's floor(column / 2).
            ptrdiff_t base = floor_half(first);
            entry[written++] = (plan_entry){row + base, (uint16_t)schnell_lane_bits(-base, source_width - base), lanes,
                                            (uint8_t)v, (uint8_t)(first - 2 * base)};
        }
    }
    return written;
}

// The plans of an item's panels into the worker's arrays (job->taps taps each).
gather_plan schnell_conv_plan_item(const conv_job *job, const panel_layout *panels, size_t count) {
    size_t worker = (size_t)schnell_worker_index();
    plan_entry *entries = job->plans + worker * job->plan_capacity;
    size_t *starts = job->plan_starts + worker * (PANELS * job->taps + 1);
    size_t written = 0;
    for (size_t q = 0; q < count; q++) {
        for (size_t tap_index = 0; tap_index < job->taps; tap_index++) {
            starts[q * job->taps + tap_index] = written;
            written += plan_tap(job, &panels[q], tap_index / job->s->kernel_w, tap_index % job->s->kernel_w,
                                entries + written);
        }
    }
    starts[count * job->taps] = written;
    return (gather_plan){entries, starts};
}

size_t schnell_conv_item_panels(const conv_job *job, size_t item, panel_layout *panels) {
    size_t p0 = item * NC, columns = job->pixels - p0 < NC ? job->pixels - p0 : NC;
    size_t count = (columns + NR - 1) / NR;
    for (size_t q = 0; q < count; q++) {
        size_t left = columns - q * NR;
        layout_panel(p0 + q * NR, left < NR ? left : NR, job->ow, &panels[q]);
    }
    return count;
}

void schnell_conv_gather_strided(const conv_job *job, tap t, const panel_layout *panel, float lanes[NR]) {
    const schnell_conv2d_shape *s = job->s;
    const float *plane = job->x + t.c * s->height * s->width;
    memset(lanes, 0, NR * sizeof(float));
    for (size_t g = 0; g < panel->count; g++) {
        const segment *run = &panel->runs[g];
        size_t padded_row = run->oy * s->stride + t.i;
        if (padded_row < s->pad_top || padded_row >= s->pad_top + s->height) continue;
        const float *row = plane + (padded_row - s->pad_top) * s->width;
        for (size_t d = 0; d < run->count; d++) {
            size_t padded_column = (run->ox + d) * s->stride + t.j;
            if (padded_column >= s->pad_left && padded_column < s->pad_left + s->width) {
                lanes[run->lane + d] = row[padded_column - s->pad_left];
            }
        }
    }
}

// ---- AVX-512 gathers ----

// Row k of C over panel q by plan (stride 1), zero where padding or past the panel's columns.
SCHNELL_TARGET_AVX512 SCHNELL_INLINE void gather_planned(const conv_job *job, gather_plan plan, tap t, size_t q,
                                                       __m512 out[4]) {
    const schnell_conv2d_shape *s = job->s;
    size_t half = job->upsampled ? 1 : 0;
    size_t source_plane = (s->height >> half) * (s->width >> half);
    const float *plane = job->x + t.c * source_plane;
    size_t index = q * job->taps + t.i * s->kernel_w + t.j;
    const plan_entry *entry = plan.entries + plan.starts[index], *last = plan.entries + plan.starts[index + 1];
    __m512 v0 = _mm512_setzero_ps(), v1 = v0, v2 = v0, v3 = v0;
    const __m512i duplicate_even = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i duplicate_odd = _mm512_set_epi32(8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0);
    // A panel reads short runs of many rows (3 per channel), too short for the hardware
    // prefetcher: on the first tap of a row, fetch the same run PREFETCH_CHANNELS channels ahead.
    const float *ahead = t.j == 0 && t.c + PREFETCH_CHANNELS < s->in_channels ? plane + PREFETCH_CHANNELS * source_plane
                                                                               : NULL;
    for (; entry < last; entry++) {
        const float *at = offset_floats(plane, entry->offset);
        __m512 value = job->upsampled
                           ? _mm512_permutexvar_ps(entry->odd ? duplicate_odd : duplicate_even,
                                                   _mm512_maskz_loadu_ps(entry->load, at))
                           : _mm512_maskz_loadu_ps(entry->load, at);
        switch (entry->v) {
        case 0: v0 = _mm512_mask_mov_ps(v0, entry->lanes, value); break;
        case 1: v1 = _mm512_mask_mov_ps(v1, entry->lanes, value); break;
        case 2: v2 = _mm512_mask_mov_ps(v2, entry->lanes, value); break;
        default: v3 = _mm512_mask_mov_ps(v3, entry->lanes, value); break;
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
}

// Row k of C over a panel for strides above 1 (the encoder's downsamplings), lane by lane.
SCHNELL_TARGET_AVX512 SCHNELL_INLINE void gather_strided(const conv_job *job, tap t,
                                                       const panel_layout *panel, __m512 out[4]) {
    float lanes[NR];
    schnell_conv_gather_strided(job, t, panel, lanes);
    for (int v = 0; v < 4; v++) out[v] = _mm512_loadu_ps(lanes + 16 * v);
}

// Row k = tap t of C over panel q: the convolution's input is x itself, or x upsampled x2
// (nearest) when job->upsampled: input pixel (r, col) is then x's pixel (r / 2, col / 2), read
// in place.
SCHNELL_TARGET_AVX512 SCHNELL_INLINE void gather_row(const conv_job *job, gather_plan plan, tap t,
                                                   const panel_layout *panels, size_t q, __m512 out[4]) {
    if (job->s->stride == 1) gather_planned(job, plan, t, q, out);
    else gather_strided(job, t, &panels[q], out);
}

// ---- float32 ----

// bp[panel][k - k0][64] for k in [k0, k0 + kc).
SCHNELL_TARGET_AVX512 static void pack_f32(const conv_job *job, gather_plan plan, const panel_layout *panels,
                                         size_t count, size_t k0, size_t kc, float *bp) {
    tap t = tap_of(k0, job->s);
    for (size_t k = k0; k < k0 + kc; k++, next_tap(&t, job->s)) {
        for (size_t q = 0; q < count; q++) {
            __m512 row[4];
            gather_row(job, plan, t, panels, q, row);
            float *destination = bp + (q * kc + k - k0) * NR;
            for (int v = 0; v < 4; v++) _mm512_store_ps(destination + 16 * v, row[v]);
        }
    }
}

// y[0:mr, 0:columns] (+)= a[0:mr, 0:kc] . bp[0:kc, 0:64]; `first` starts from the row bias.
SCHNELL_TARGET_AVX512 SCHNELL_INLINE void f32_micro_kernel(int mr, const float *a, size_t lda,
                                                         const float *bp, size_t kc,
                                                         const float *bias, int first, float *y,
                                                         size_t y_stride, size_t columns) {
    __m512 acc[MR][4];
    __mmask16 mask[4];
    for (int v = 0; v < 4; v++) mask[v] = (__mmask16)(schnell_lane_bits(0, (ptrdiff_t)columns) >> (16 * v));
    for (int r = 0; r < mr; r++) {
        __m512 start = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        for (int v = 0; v < 4; v++) {
            acc[r][v] = first ? start : _mm512_maskz_loadu_ps(mask[v], y + r * y_stride + 16 * v);
        }
    }
    for (size_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
        __m512 b2 = _mm512_load_ps(bp + k * NR + 32), b3 = _mm512_load_ps(bp + k * NR + 48);
        for (int r = 0; r < mr; r++) {
            __m512 broadcast = _mm512_set1_ps(a[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(broadcast, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(broadcast, b1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(broadcast, b2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(broadcast, b3, acc[r][3]);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(y + r * y_stride + 16 * v, mask[v], acc[r][v]);
    }
}

#define F32_KERNEL_WITH_ROWS(rows)                                                               \
    SCHNELL_TARGET_AVX512 static void f32_micro_kernel_##rows(                                   \
        const float *a, size_t lda, const float *bp, size_t kc, const float *bias, int first,    \
        float *y, size_t y_stride, size_t columns) {                                             \
        f32_micro_kernel(rows, a, lda, bp, kc, bias, first, y, y_stride, columns);               \
    }
F32_KERNEL_WITH_ROWS(1)
F32_KERNEL_WITH_ROWS(2)
F32_KERNEL_WITH_ROWS(3)
F32_KERNEL_WITH_ROWS(4)
F32_KERNEL_WITH_ROWS(5)
F32_KERNEL_WITH_ROWS(6)
const schnell_f32_micro_kernel schnell_f32_micro_kernels[MR + 1] = {
    NULL, f32_micro_kernel_1, f32_micro_kernel_2, f32_micro_kernel_3, f32_micro_kernel_4,
    f32_micro_kernel_5, f32_micro_kernel_6,
};

static void conv_f32_items(void *context, size_t begin, size_t end) {
    const conv_job *job = context;
    const float *w = job->w;
    float *bp = (float *)job->scratch + (size_t)schnell_worker_index() * job->scratch_floats;
    size_t out_channels = job->s->out_channels;
    panel_layout panels[PANELS];
    for (size_t item = begin; item < end; item++) {
        size_t count = schnell_conv_item_panels(job, item, panels);
        gather_plan plan = job->s->stride == 1 ? schnell_conv_plan_item(job, panels, count) : (gather_plan){NULL, NULL};
        float *y = job->y + item * NC;
        for (size_t k0 = 0; k0 < job->depth; k0 += KC_F32) {
            size_t kc = job->depth - k0 < KC_F32 ? job->depth - k0 : KC_F32;
            pack_f32(job, plan, panels, count, k0, kc, bp);
            for (size_t m = 0; m < out_channels; m += MR) {
                size_t mr = out_channels - m < MR ? out_channels - m : MR;
                for (size_t q = 0; q < count; q++) {
                    schnell_f32_micro_kernels[mr](w + m * job->w_stride + k0, job->w_stride, bp + q * kc * NR, kc,
                                    job->bias ? job->bias + m : NULL, k0 == 0,
                                    y + m * job->pixels + q * NR, job->pixels, panels[q].columns);
                }
            }
        }
    }
}

// ---- bf16 ----

// bp[panel][p][64] words (C[k0 + 2p] | C[k0 + 2p + 1] << 16) for p in [0, pairs); depth is
// even. vcvtne2ps2bf16 rounds to nearest even as schnell_f32_to_bf16 does, but flushes
// denormal inputs (below 1.2e-38) to zero.
SCHNELL_TARGET_BF16 static void pack_bf16(const conv_job *job, gather_plan plan, const panel_layout *panels,
                                          size_t count, size_t k0, size_t pairs, uint32_t *bp) {
    // The convert puts the even row's 16 bf16 values below the odd row's; word d of the
    // panel's vector is (even d, odd d), i.e. bf16 values d and 16 + d.
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                                 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
                                                 1, 16, 0);
    tap t = tap_of(k0, job->s);
    for (size_t p = 0; p < pairs; p++) {
        tap odd_tap = t;
        next_tap(&odd_tap, job->s);
        for (size_t q = 0; q < count; q++) {
            __m512 even[4], odd[4];
            gather_row(job, plan, t, panels, q, even);
            gather_row(job, plan, odd_tap, panels, q, odd);
            uint32_t *destination = bp + (q * pairs + p) * NR;
            for (int v = 0; v < 4; v++) {
                __m512i pairs_of_v = (__m512i)_mm512_cvtne2ps_pbh(odd[v], even[v]);
                _mm512_store_si512(destination + 16 * v, _mm512_permutexvar_epi16(interleave, pairs_of_v));
            }
        }
        t = odd_tap;
        next_tap(&t, job->s);
    }
}

static void conv_bf16_items(void *context, size_t begin, size_t end) {
    const conv_job *job = context;
    const uint16_t *w = job->w;
    uint32_t *bp = (uint32_t *)job->scratch + (size_t)schnell_worker_index() * job->scratch_floats;
    size_t out_channels = job->s->out_channels;
    panel_layout panels[PANELS];
    for (size_t item = begin; item < end; item++) {
        size_t count = schnell_conv_item_panels(job, item, panels);
        gather_plan plan = job->s->stride == 1 ? schnell_conv_plan_item(job, panels, count) : (gather_plan){NULL, NULL};
        float *y = job->y + item * NC;
        // The bf16 micro-kernel's bias runs along columns; a convolution's runs along rows, so
        // the block starts as the bias and every k block adds to it.
        if (job->bias) {
            size_t columns = job->pixels - item * NC < NC ? job->pixels - item * NC : NC;
            for (size_t m = 0; m < out_channels; m++) {
                for (size_t p = 0; p < columns; p++) y[m * job->pixels + p] = job->bias[m];
            }
        }
        for (size_t k0 = 0; k0 < job->depth; k0 += KC_BF16) {
            size_t pairs = (job->depth - k0 < KC_BF16 ? job->depth - k0 : KC_BF16) / 2;
            pack_bf16(job, plan, panels, count, k0, pairs, bp);
            for (size_t m = 0; m < out_channels; m += MR) {
                size_t mr = out_channels - m < MR ? out_channels - m : MR;
                const uint16_t *a = w + m * job->depth + k0;
                const uint16_t *next_a = m + 2 * MR <= out_channels ? a + MR * job->depth : NULL;
                for (size_t q = 0; q < count; q++) {
                    schnell_bf16_micro_kernels[mr](a, job->depth, q == 0 ? next_a : NULL,
                                                   bp + q * pairs * NR, pairs, NULL,
                                                   k0 == 0 && !job->bias,
                                                   y + m * job->pixels + q * NR, job->pixels,
                                                   panels[q].columns);
                }
            }
        }
    }
}

// ---- entry ----

// Runs job's work items on `items_fn` with a packed block of block_floats 4-byte elements per
// worker, and (stride 1) room for each worker's gather plans.
static int run_conv(conv_job *job, schnell_range_fn items_fn, size_t block_floats) {
    size_t workers = (size_t)schnell_threads();
    // At most one entry per (run, vector) of a panel and tap: 4 per run, at most 64 runs.
    job->taps = job->s->kernel_h * job->s->kernel_w;
    job->plan_capacity = job->s->stride == 1 ? PANELS * job->taps * NR * 4 : 0;
    job->scratch = aligned_alloc(64, workers * block_floats * sizeof(float));
    job->plans = malloc((workers * job->plan_capacity + 1) * sizeof(plan_entry));
    job->plan_starts = malloc(workers * (PANELS * job->taps + 1) * sizeof(size_t));
    int status = -1;
    if (job->scratch && job->plans && job->plan_starts) {
        job->scratch_floats = block_floats;
        size_t items = (job->pixels + NC - 1) / NC;
        schnell_parallel_for(items, 1, items_fn, job);
        status = 0;
    }
    free(job->scratch);
    free(job->plans);
    free(job->plan_starts);
    return status;
}

// Whether a convolution runs with bf16 operands: the bf16 precision, a bf16 weight, an even depth
// (Cin x kh x kw, for the micro-kernel's pairs) and AVX512-BF16.
static int bf16_path(int precision, int weight_dtype, size_t depth) {
    return schnell_cpu_level() >= SCHNELL_CPU_AVX512_BF16 && precision == SCHNELL_PRECISION_BF16 && weight_dtype == SCHNELL_BF16 &&
           depth % 2 == 0;
}

static int conv2d(const float *x, int upsampled, const void *weight, int weight_dtype, const void *bias,
                  int bias_dtype, float *y, const schnell_conv2d_shape *s, int precision) {
    size_t oh = schnell_conv2d_out_height(s), ow = schnell_conv2d_out_width(s);
    size_t depth = s->in_channels * s->kernel_h * s->kernel_w;
    if (oh == 0 || ow == 0 || s->out_channels == 0) return 0;
    int bf16 = bf16_path(precision, weight_dtype, depth);
    float *owned_weight = NULL, *owned_bias;
    const void *w = bf16 ? weight : schnell_as_f32(weight, weight_dtype, s->out_channels * depth, &owned_weight);
    const float *b = schnell_as_f32(bias, bias_dtype, s->out_channels, &owned_bias);
    if (!w || (bias && !b)) {
        free(owned_weight);
        free(owned_bias);
        return -1;
    }
    // 3x3 with padding 1 on a width that is a multiple of 32 (AVX2: 16): Winograd (conv_winograd.c).
    if (!upsampled && schnell_winograd_applies(s)) {
        int status = schnell_conv2d_winograd(x, w, bf16, b, y, s);
        free(owned_weight);
        free(owned_bias);
        return status;
    }
    // A micro-kernel broadcasts from six weight rows at once; rows a multiple of 4 KB apart (the
    // phase convolutions' 2,048 and 1,024 floats) share their L1 sets and evict one another, so
    // those weights are copied to rows one cache line longer.
    size_t w_stride = depth;
    float *padded = NULL;
    if (!bf16 && depth % 1024 == 0) {
        w_stride = depth + 16;
        padded = malloc(s->out_channels * w_stride * sizeof(float));
        if (!padded) {
            free(owned_weight);
            free(owned_bias);
            return -1;
        }
        for (size_t m = 0; m < s->out_channels; m++) {
            memcpy(padded + m * w_stride, (const float *)w + m * depth, depth * sizeof(float));
        }
    }
    conv_job job = {x, s, upsampled, ow, oh * ow, depth, padded ? padded : w, w_stride, b, y, NULL, 0, NULL, NULL, 0, 0};
    int status = schnell_cpu_level() < SCHNELL_CPU_AVX512
                     ? run_conv(&job, schnell_conv_f32_items_avx2, SCHNELL_CONV_AVX2_BLOCK_FLOATS)
                 : bf16 ? run_conv(&job, conv_bf16_items, (size_t)KC_BF16 / 2 * NC)
                        : run_conv(&job, conv_f32_items, (size_t)KC_F32 * NC);
    free(padded);
    free(owned_weight);
    free(owned_bias);
    return status;
}

int schnell_conv2d(const float *x, const void *weight, int weight_dtype,
                   const void *bias, int bias_dtype, float *y, const schnell_conv2d_shape *s, int precision) {
    if (schnell_cpu_level() < SCHNELL_CPU_AVX2) return schnell_conv2d_sgemm(x, weight, weight_dtype, bias, bias_dtype, y, s);
    return conv2d(x, 0, weight, weight_dtype, bias, bias_dtype, y, s, precision);
}

// ---- 3x3 convolution of a nearest x2 upsampling, by output phase ----
//
// Over the upsampled image U (U[r][c] = x[r / 2][c / 2]) a 3x3 window around an output pixel of
// row parity py covers only two source rows: for py = 0, kernel row 0 reads source row i - 1 and
// rows 1 and 2 both read row i; for py = 1, rows 0 and 1 read row i and row 2 reads row i + 1
// (the same along columns, and U's zero padding is x's). So each of the four phases (py, px) is
// a 2x2 convolution of x itself with taps summed, 4 multiply-adds per output instead of 9:
// y[co][2i + py][2j + px] = phase(py, px)[co][i][j] + bias[co]. In float32 this is the same sum
// in another order; on the bf16 path the summed taps are rounded to bf16 again.

// Kernel rows (columns) of phase p that land on its source offset a: {first, last}.
static const int phase_taps[2][2][2] = {{{0, 0}, {1, 2}}, {{0, 1}, {2, 2}}};

typedef struct {
    const float *phase[2];  // px = 0, 1: [Cout, H/2, W/2]
    const float *bias;
    float *y;
    size_t half_height, half_width, py;
} interleave_job;

static void interleave_rows(void *context, size_t begin, size_t end) {
    const interleave_job *job = context;
    size_t hw = job->half_height * job->half_width, width = 2 * job->half_width;
    for (size_t row = begin; row < end; row++) {  // row = channel * half_height + i
        size_t c = row / job->half_height, i = row % job->half_height;
        float b = job->bias ? job->bias[c] : 0.0f;
        const float *even = job->phase[0] + c * hw + i * job->half_width;
        const float *odd = job->phase[1] + c * hw + i * job->half_width;
        float *out = job->y + c * 4 * hw + (2 * i + job->py) * width;
        for (size_t j = 0; j < job->half_width; j++) {
            out[2 * j] = even[j] + b;
            out[2 * j + 1] = odd[j] + b;
        }
    }
}

static int upsampled_by_phases(const float *x, const void *weight, int weight_dtype, const void *bias,
                               int bias_dtype, float *y, const schnell_conv2d_shape *s, int precision) {
    size_t cin = s->in_channels, cout = s->out_channels, hh = s->height / 2, hw = s->width / 2;
    int bf16 = bf16_path(precision, weight_dtype, cin * 4);  // the phases' 2x2 convolutions
    float *owned_weight, *owned_bias;
    const float *w = schnell_as_f32(weight, weight_dtype, cout * cin * 9, &owned_weight);
    const float *b = schnell_as_f32(bias, bias_dtype, cout, &owned_bias);
    size_t filters = cout * cin, plane = cout * hh * hw;
    float *merged = malloc(filters * 4 * sizeof(float));
    uint16_t *rounded = bf16 ? malloc(filters * 4 * sizeof(uint16_t)) : NULL;
    float *phases = schnell_buffer_allocate(2 * plane * sizeof(float));
    int status = -1;
    if (!w || (bias && !b) || !merged || (bf16 && !rounded) || !phases) goto done;
    for (size_t py = 0; py < 2; py++) {
        for (size_t px = 0; px < 2; px++) {
            for (size_t f = 0; f < filters; f++) {
                const float *taps = w + f * 9;
                for (int a = 0; a < 2; a++) {
                    for (int c = 0; c < 2; c++) {
                        float sum = 0.0f;
                        for (int ki = phase_taps[py][a][0]; ki <= phase_taps[py][a][1]; ki++) {
                            for (int kj = phase_taps[px][c][0]; kj <= phase_taps[px][c][1]; kj++) sum += taps[ki * 3 + kj];
                        }
                        merged[f * 4 + a * 2 + c] = sum;
                    }
                }
            }
            if (bf16) schnell_f32_to_bf16(merged, rounded, filters * 4);
            schnell_conv2d_shape phase = {cin, hh, hw, cout, 2, 2, 1, py == 0, py == 1, px == 0, px == 1};
            status = conv2d(x, 0, bf16 ? (const void *)rounded : merged, bf16 ? SCHNELL_BF16 : SCHNELL_F32, NULL,
                            SCHNELL_F32, phases + px * plane, &phase, precision);
            if (status != 0) goto done;
        }
        interleave_job job = {{phases, phases + plane}, b, y, hh, hw, py};
        schnell_parallel_for(cout * hh, 16, interleave_rows, &job);
    }
done:
    free(owned_weight);
    free(owned_bias);
    free(merged);
    free(rounded);
    schnell_buffer_free(phases);
    return status;
}

int schnell_conv2d_upsampled(const float *x, const void *weight, int weight_dtype,
                             const void *bias, int bias_dtype, float *y, const schnell_conv2d_shape *s,
                             int precision) {
    if (s->height % 2 || s->width % 2) return -2;
    int three_by_three = s->kernel_h == 3 && s->kernel_w == 3 && s->stride == 1 && s->pad_top == 1 &&
                         s->pad_bottom == 1 && s->pad_left == 1 && s->pad_right == 1;
    if (schnell_cpu_level() >= SCHNELL_CPU_AVX2 && three_by_three) {
        return upsampled_by_phases(x, weight, weight_dtype, bias, bias_dtype, y, s, precision);
    }
    if (schnell_cpu_level() >= SCHNELL_CPU_AVX2) return conv2d(x, 1, weight, weight_dtype, bias, bias_dtype, y, s, precision);
    float *upsampled = schnell_buffer_allocate(s->in_channels * s->height * s->width * sizeof(float));
    if (!upsampled) return -1;
    schnell_upsample_nearest2x(x, upsampled, s->in_channels, s->height / 2, s->width / 2);
    int status = schnell_conv2d_sgemm(upsampled, weight, weight_dtype, bias, bias_dtype, y, s);
    schnell_buffer_free(upsampled);
    return status;
}

int schnell_conv2d_bf16_reference(const float *x, const uint16_t *weight, const void *bias,
                                  int bias_dtype, float *y, const schnell_conv2d_shape *s) {
    size_t count = s->in_channels * s->height * s->width;
    float *rounded = malloc((count ? count : 1) * sizeof(float));
    if (!rounded) return -1;
    for (size_t i = 0; i < count; i++) {
        uint16_t half;
        schnell_f32_to_bf16(&x[i], &half, 1);
        schnell_convert_to_f32_reference(&half, SCHNELL_BF16, &rounded[i], 1);
    }
    int status = schnell_conv2d_reference(rounded, weight, SCHNELL_BF16, bias, bias_dtype, y, s);
    free(rounded);
    return status;
}
