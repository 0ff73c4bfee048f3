// Private to the kernel files: the Winograd F(2x2, 3x3) path of conv_winograd.c (AVX-512) and
// conv_winograd_avx2.c (AVX2), which schnell_conv2d takes where it applies.
#ifndef SCHNELL_CONV_WINOGRAD_H
#define SCHNELL_CONV_WINOGRAD_H

#include "gemm_f32.h"
#include "schnell_conv.h"

#include <stddef.h>
#include <stdint.h>

// 3x3, stride 1, padding 1 on every side, even height, and a width that the input transform's
// vectors of tiles cover: a multiple of 32 on AVX-512 (16 tiles of 2 columns), of 16 on AVX2
// (8 tiles). On AVX2 also at least 16 input channels: below that the transforms and the short
// products cost more than they save (3 -> 128 and 8 -> 128 channels run 2x and 1.1x faster as
// implicit GEMMs there; 16 -> 512 runs 1.3x faster as Winograd).
int schnell_winograd_applies(const schnell_conv2d_shape *shape);

// y = conv(x, weight) + bias (bias float32 or NULL), on AVX-512 or AVX2. `bf16`: weight is bf16
// and the products run on AVX512-BF16 with bf16 operands (then Cin must be even; AVX-512 only);
// otherwise weight is float32 and so is all arithmetic. Returns 0, or -1 when scratch memory
// cannot be had.
int schnell_conv2d_winograd(const float *x, const void *weight, int bf16, const float *bias, float *y,
                            const schnell_conv2d_shape *shape);

// The AVX2 tier's work items: 64 or 128 consecutive tiles (winograd_job.item_tiles), transformed
// GROUP at a time, input channels CHUNK at a time.
enum { SCHNELL_WINOGRAD_AVX2_MAX_ITEM = 128, SCHNELL_WINOGRAD_AVX2_GROUP = 8, SCHNELL_WINOGRAD_AVX2_CHUNK = 512 };
enum { SCHNELL_WINOGRAD_AVX2_MIN_CHANNELS = 16 };

typedef struct {
    const float *x;
    const schnell_conv2d_shape *s;
    const void *u;          // [16][Cout][Cin] (AVX2: in chunks of Cin), bf16 or float32
    int bf16;
    const float *bias;      // [Cout] or NULL
    float *y;
    size_t tile_rows, tile_columns, tiles;
    char *scratch;          // per worker: V (one chunk of channels), then M [16][Cout][item_tiles]
    size_t scratch_bytes, item_tiles;
} winograd_job;

// The AVX2 tier's work items (float32): V of SCHNELL_WINOGRAD_AVX2_CHUNK channels, then M.
void schnell_winograd_items_avx2(void *context, size_t begin, size_t end);

#endif
