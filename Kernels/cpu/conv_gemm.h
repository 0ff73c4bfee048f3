// Private to the implicit-GEMM convolutions: the tier-independent part, shared by the AVX-512
// kernels (conv_gemm.c) and the AVX2 ones (conv_gemm_avx2.c). See conv_gemm.c for the method.
//
// Pixels are laid out in panels of 64 for every tier (an AVX-512 micro-kernel panel, four AVX2
// ones), and the gather plans speak in 16-lane groups of a panel (a zmm, or two ymm); work items
// are up to four panels. What differs per tier is how a row of the column matrix is loaded and
// packed, and the micro-kernel that meets it.
#ifndef SCHNELL_CONV_GEMM_H
#define SCHNELL_CONV_GEMM_H

#include <stdint.h>

#include "dispatch.h"
#include "schnell_conv.h"

enum { SCHNELL_CONV_PANEL = 64, SCHNELL_CONV_PANELS = 4, SCHNELL_CONV_ITEM = 256, SCHNELL_CONV_PREFETCH_CHANNELS = 2 };

// Lanes [lane, lane + count) of a panel are output row oy, columns ox ... ox + count - 1.
typedef struct {
    size_t lane, count, oy, ox;
} segment;

typedef struct {
    segment runs[SCHNELL_CONV_PANEL];
    size_t count, columns;  // runs used; pixels in the panel (1...64)
} panel_layout;

// Stride 1 gathers by plan. Which lanes of a panel a tap (i, j) reads, and from where within a
// channel's plane, is the same for every input channel, so each work item works it out once per
// panel and tap: one entry per (run of the panel, 16-lane group) that reads anything. Gathering
// a row of C is then a masked load (a permute too when upsampled) per entry and vector.
typedef struct {
    ptrdiff_t offset;  // floats from the channel plane's start to the group's load
    uint16_t load;     // lanes loaded (upsampled: from the half-width source row)
    uint16_t lanes;    // lanes of the panel's group written
    uint8_t v;         // which of the panel's four groups
    uint8_t odd;       // upsampled: the first lane is an odd column of the upsampled row
} plan_entry;

typedef struct {
    const plan_entry *entries;  // this worker's, for the current item
    const size_t *starts;                    // [panel * taps + tap ... + 1]
} gather_plan;

typedef struct {
    const float *x;
    const schnell_conv2d_shape *s;
    int upsampled;       // x is the input at half the height and width (nearest x2)
    size_t ow, pixels, depth;
    const void *w;       // float32 [Cout, w_stride] or bf16 [Cout, depth]
    size_t w_stride;     // float32: depth, or depth + 16 where depth floats are a multiple of 4 KB
    const float *bias;   // float32 [Cout] or NULL
    float *y;
    void *scratch;       // one packed block per worker
    size_t scratch_floats;
    plan_entry *plans;  // stride 1: per worker, the gather plan of the current item
    size_t *plan_starts;
    size_t plan_capacity, taps;
} conv_job;

// Row k of C is input channel c under kernel tap (i, j); k + 1 is the next tap.
typedef struct {
    size_t c, i, j;
} tap;

SCHNELL_INLINE tap tap_of(size_t k, const schnell_conv2d_shape *s) {
    size_t taps = s->kernel_h * s->kernel_w;
    return (tap){k / taps, k % taps / s->kernel_w, k % s->kernel_w};
}

SCHNELL_INLINE void next_tap(tap *t, const schnell_conv2d_shape *s) {
    if (++t->j < s->kernel_w) return;
    t->j = 0;
    if (++t->i < s->kernel_h) return;
    t->i = 0;
    t->c++;
}

// row + offset floats, formed as an address: the masked loads never touch the lanes that would
// fall outside the row, but the base of a vector may.
SCHNELL_INLINE const float *offset_floats(const float *row, ptrdiff_t offset) {
    return (const float *)((uintptr_t)row + (uintptr_t)(offset * (ptrdiff_t)sizeof(float)));
}

// The panels of work item `item` (SCHNELL_CONV_ITEM pixels); returns how many (1...4).
size_t schnell_conv_item_panels(const conv_job *job, size_t item, panel_layout *panels);

// The gather plans of an item's panels (stride 1), in the calling worker's part of job->plans.
gather_plan schnell_conv_plan_item(const conv_job *job, const panel_layout *panels, size_t count);

// Row k = tap t of C over a panel for strides above 1 (the encoder's downsamplings), lane by lane
// into lanes[0:64], zero in the padding and past the panel's columns.
void schnell_conv_gather_strided(const conv_job *job, tap t, const panel_layout *panel,
                                 float lanes[SCHNELL_CONV_PANEL]);

// The AVX2 tier's float32 work items (conv_gemm_avx2.c): packed blocks of
// SCHNELL_CONV_AVX2_BLOCK_FLOATS per worker.
enum { SCHNELL_CONV_AVX2_KC = 256, SCHNELL_CONV_AVX2_BLOCK_FLOATS = SCHNELL_CONV_AVX2_KC * SCHNELL_CONV_ITEM };
void schnell_conv_f32_items_avx2(void *context, size_t begin, size_t end);

#endif
