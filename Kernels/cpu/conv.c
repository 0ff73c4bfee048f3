// Image kernels for the VAE: 2-D convolution as im2col + sgemm (the generic tier's path;
// conv_gemm.c has the fast ones), group norm (+ SiLU), nearest x2 upsampling and a
// blocked transpose. Activations are channel-first [C, H, W] float32.
//
// Threading: im2col splits the rows of its column matrix, group norm its groups, upsampling
// its input rows, transpose its column tiles; sgemm threads itself (OpenBLAS).
#include <cblas.h>
#include <stdlib.h>

#include "dispatch.h"
#include "schnell_conv.h"

// Column-matrix scratch per band of output rows. At 128 channels x 3x3 x 1024 columns one
// output row needs 4.7 MB, so a band is about 13 rows instead of a 4.7 GB full im2col.
#define CONV_SCRATCH_BYTES ((size_t)64 << 20)

size_t schnell_conv2d_out_height(const schnell_conv2d_shape *s) {
    size_t padded = s->height + s->pad_top + s->pad_bottom;
    if (s->stride == 0 || padded < s->kernel_h) return 0;
    return (padded - s->kernel_h) / s->stride + 1;
}

size_t schnell_conv2d_out_width(const schnell_conv2d_shape *s) {
    size_t padded = s->width + s->pad_left + s->pad_right;
    if (s->stride == 0 || padded < s->kernel_w) return 0;
    return (padded - s->kernel_w) / s->stride + 1;
}

typedef struct {
    const float *x;
    float *columns;  // [Cin * kh * kw, band_rows * OW]
    const schnell_conv2d_shape *shape;
    size_t out_width, first_row, band_rows;
} im2col_job;

SCHNELL_INLINE void im2col_body(void *context, size_t begin, size_t end) {
    const im2col_job *job = context;
    const schnell_conv2d_shape *s = job->shape;
    size_t ow = job->out_width, taps = s->kernel_h * s->kernel_w;
    for (size_t k = begin; k < end; k++) {
        size_t c = k / taps, i = (k % taps) / s->kernel_w, j = k % s->kernel_w;
        const float *plane = job->x + c * s->height * s->width;
        float *out = job->columns + k * job->band_rows * ow;
        // Output columns whose input column ox * stride + j - pad_left lies inside [0, width).
        size_t lo = 0, hi = 0;
        while (lo < ow && lo * s->stride + j < s->pad_left) lo++;
        hi = lo;
        while (hi < ow && hi * s->stride + j < s->pad_left + s->width) hi++;
        for (size_t r = 0; r < job->band_rows; r++, out += ow) {
            size_t padded_row = (job->first_row + r) * s->stride + i;
            if (padded_row < s->pad_top || padded_row >= s->pad_top + s->height) {
                memset(out, 0, ow * sizeof(float));
                continue;
            }
            const float *row = plane + (padded_row - s->pad_top) * s->width;
            for (size_t ox = 0; ox < lo; ox++) out[ox] = 0.0f;
            if (s->stride == 1) {
                const float *source = row + lo + j - s->pad_left;
                for (size_t ox = lo; ox < hi; ox++) out[ox] = source[ox - lo];
            } else {
                for (size_t ox = lo; ox < hi; ox++) out[ox] = row[ox * s->stride + j - s->pad_left];
            }
            for (size_t ox = hi; ox < ow; ox++) out[ox] = 0.0f;
        }
    }
}
SCHNELL_VARIANTS(im2col)

typedef struct {
    const float *bias;
    float *y;
    size_t plane;
} bias_fill_job;

static void fill_bias_planes(void *context, size_t begin, size_t end) {
    const bias_fill_job *job = context;
    for (size_t c = begin; c < end; c++) {
        float *out = job->y + c * job->plane;
        for (size_t p = 0; p < job->plane; p++) out[p] = job->bias[c];
    }
}

int schnell_conv2d_sgemm(const float *x, const void *weight, int weight_dtype,
                         const void *bias, int bias_dtype, float *y, const schnell_conv2d_shape *s) {
    size_t oh = schnell_conv2d_out_height(s), ow = schnell_conv2d_out_width(s);
    size_t depth = s->in_channels * s->kernel_h * s->kernel_w;
    if (oh == 0 || ow == 0 || s->out_channels == 0) return 0;
    float *owned_weight, *owned_bias;
    const float *w = schnell_as_f32(weight, weight_dtype, s->out_channels * depth, &owned_weight);
    const float *b = schnell_as_f32(bias, bias_dtype, s->out_channels, &owned_bias);
    int status = 0;
    if (!w || (bias && !b)) {
        status = -1;
        goto done;
    }
    float beta = 0.0f;
    if (b) {
        bias_fill_job job = {b, y, oh * ow};
        schnell_parallel_for(s->out_channels, 1, fill_bias_planes, &job);
        beta = 1.0f;
    }
    int pointwise = s->kernel_h == 1 && s->kernel_w == 1 && s->stride == 1 && s->pad_top == 0 &&
                    s->pad_bottom == 0 && s->pad_left == 0 && s->pad_right == 0;
    if (pointwise) {
        // A 1x1 convolution is a plain GEMM: [Cout, Cin] . [Cin, H * W].
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)s->out_channels,
                    (blasint)(oh * ow), (blasint)depth, 1.0f, w, (blasint)depth, x,
                    (blasint)(oh * ow), beta, y, (blasint)(oh * ow));
        goto done;
    }
    size_t band = CONV_SCRATCH_BYTES / sizeof(float) / (depth * ow);
    if (band < 1) band = 1;
    if (band > oh) band = oh;
    float *columns = malloc(depth * band * ow * sizeof(float));
    if (!columns) {
        status = -1;
        goto done;
    }
    schnell_range_fn gather = im2col_select();
    for (size_t first = 0; first < oh; first += band) {
        size_t rows = oh - first < band ? oh - first : band;
        im2col_job job = {x, columns, s, ow, first, rows};
        schnell_parallel_for(depth, 1, gather, &job);
        // y[:, first:first + rows, :] (+)= W [Cout, depth] . columns [depth, rows * OW]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)s->out_channels,
                    (blasint)(rows * ow), (blasint)depth, 1.0f, w, (blasint)depth, columns,
                    (blasint)(rows * ow), beta, y + first * ow, (blasint)(oh * ow));
    }
    free(columns);
done:
    free(owned_weight);
    free(owned_bias);
    return status;
}

int schnell_conv2d_reference(const float *x, const void *weight, int weight_dtype,
                             const void *bias, int bias_dtype, float *y,
                             const schnell_conv2d_shape *s) {
    size_t oh = schnell_conv2d_out_height(s), ow = schnell_conv2d_out_width(s);
    size_t depth = s->in_channels * s->kernel_h * s->kernel_w;
    float *w = malloc((s->out_channels * depth ? s->out_channels * depth : 1) * sizeof(float));
    if (!w) return -1;
    schnell_convert_to_f32_reference(weight, weight_dtype, w, s->out_channels * depth);
    size_t bias_element = schnell_dtype_size(bias_dtype);
    for (size_t o = 0; o < s->out_channels; o++) {
        float b = 0.0f;
        if (bias) schnell_convert_to_f32_reference((const char *)bias + o * bias_element, bias_dtype, &b, 1);
        for (size_t oy = 0; oy < oh; oy++) {
            for (size_t ox = 0; ox < ow; ox++) {
                double sum = 0.0;
                for (size_t c = 0; c < s->in_channels; c++) {
                    for (size_t i = 0; i < s->kernel_h; i++) {
                        long iy = (long)(oy * s->stride + i) - (long)s->pad_top;
                        if (iy < 0 || iy >= (long)s->height) continue;
                        for (size_t j = 0; j < s->kernel_w; j++) {
                            long ix = (long)(ox * s->stride + j) - (long)s->pad_left;
                            if (ix < 0 || ix >= (long)s->width) continue;
                            sum += (double)x[(c * s->height + (size_t)iy) * s->width + (size_t)ix] *
                                   w[((o * s->in_channels + c) * s->kernel_h + i) * s->kernel_w + j];
                        }
                    }
                }
                y[(o * oh + oy) * ow + ox] = (float)sum + b;
            }
        }
    }
    free(w);
    return 0;
}

typedef struct {
    const float *x;
    float *y;
    size_t channels_per_group, spatial;
    float eps;
    const float *weight, *bias;
    int silu;
} group_norm_job;

// Sum and sum of squares of (x - shift) in one pass: sixteen float lanes over runs of 1,024
// values (so the loop vectorises; a plain `total += x[i]` stays scalar without -ffast-math),
// each run added into double, so a 4M-value group at 1024x1024 keeps full float precision.
SCHNELL_INLINE void shifted_moments(const float *x, size_t n, float shift, double *sum, double *squares) {
    *sum = 0.0;
    *squares = 0.0;
    for (size_t start = 0; start < n; start += 1024) {
        size_t end = n - start < 1024 ? n : start + 1024;
        float lanes[SCHNELL_LANES] = {0}, square_lanes[SCHNELL_LANES] = {0};
        size_t i = start;
        for (; i + SCHNELL_LANES <= end; i += SCHNELL_LANES) {
            for (int l = 0; l < SCHNELL_LANES; l++) {
                float d = x[i + l] - shift;
                lanes[l] += d;
                square_lanes[l] += d * d;
            }
        }
        for (; i < end; i++) {
            float d = x[i] - shift;
            lanes[0] += d;
            square_lanes[0] += d * d;
        }
        for (int l = 0; l < SCHNELL_LANES; l++) {
            *sum += lanes[l];
            *squares += square_lanes[l];
        }
    }
}

// y = ((x - shift) - offset) * scale + bias (then SiLU), not x * scale + (bias - mean * scale):
// for a group far from zero with a small spread, the latter loses digits to large products.
SCHNELL_INLINE void normalize_run(const float *x, float *y, size_t n, float shift, float offset,
                                  float scale, float bias, int silu) {
    if (silu) {
        for (size_t p = 0; p < n; p++) {
            float v = ((x[p] - shift) - offset) * scale + bias;
            y[p] = v * schnell_sigmoidf(v);
        }
    } else {
        for (size_t p = 0; p < n; p++) y[p] = ((x[p] - shift) - offset) * scale + bias;
    }
}

SCHNELL_INLINE void group_norm_body(void *context, size_t begin, size_t end) {
    const group_norm_job *job = context;
    size_t n = job->channels_per_group * job->spatial;
    for (size_t g = begin; g < end; g++) {
        const float *x = job->x + g * n;
        float *y = job->y + g * n;
        // Moments about the mean of the first run, close to the group's, so that the variance
        // E[(x - s)^2] - E[x - s]^2 does not cancel away its digits.
        size_t pilot_count = n < 1024 ? n : 1024;
        double pilot, unused;
        shifted_moments(x, pilot_count, 0.0f, &pilot, &unused);
        float shift = (float)(pilot / (double)pilot_count);
        double sum, squares;
        shifted_moments(x, n, shift, &sum, &squares);
        // The mean as shift + offset: x - shift is exact for x near the mean, so a group far
        // from zero keeps the digits a single float mean would round away.
        double mean_offset = sum / (double)n;
        float offset = (float)mean_offset;
        double spread = squares / (double)n - mean_offset * mean_offset;
        float variance = spread > 0.0 ? (float)spread : 0.0f;
        float inv = 1.0f / sqrtf(variance + job->eps);
        for (size_t k = 0; k < job->channels_per_group; k++) {
            size_t c = g * job->channels_per_group + k;
            float scale = inv * (job->weight ? job->weight[c] : 1.0f);
            float bias = job->bias ? job->bias[c] : 0.0f;
            const float *xc = x + k * job->spatial;
            float *yc = y + k * job->spatial;
            // In place, one pointer: with two that may overlap the compiler guards its vector
            // loop with an overlap test and runs the scalar loop when they do (7x slower).
            if (xc == yc) {
                normalize_run(yc, yc, job->spatial, shift, offset, scale, bias, job->silu);
            } else {
                normalize_run(xc, yc, job->spatial, shift, offset, scale, bias, job->silu);
            }
        }
    }
}
SCHNELL_VARIANTS(group_norm)

void schnell_group_norm(const float *x, float *y, size_t channels, size_t spatial, size_t groups,
                        float eps, const float *weight, const float *bias, int silu) {
    if (groups == 0 || channels % groups != 0) return;
    group_norm_job job = {x, y, channels / groups, spatial, eps, weight, bias, silu};
    schnell_parallel_for(groups, 1, group_norm_select(), &job);
}

void schnell_group_norm_reference(const float *x, float *y, size_t channels, size_t spatial,
                                  size_t groups, float eps, const float *weight, const float *bias,
                                  int silu) {
    if (groups == 0 || channels % groups != 0) return;
    size_t per_group = channels / groups, n = per_group * spatial;
    for (size_t g = 0; g < groups; g++) {
        double mean = 0.0, variance = 0.0;
        for (size_t i = 0; i < n; i++) mean += x[g * n + i];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) variance += (x[g * n + i] - mean) * (x[g * n + i] - mean);
        double inv = 1.0 / sqrt(variance / (double)n + eps);
        for (size_t k = 0; k < per_group; k++) {
            size_t c = g * per_group + k;
            for (size_t p = 0; p < spatial; p++) {
                size_t at = c * spatial + p;
                float v = (float)((x[at] - mean) * inv) * (weight ? weight[c] : 1.0f) +
                          (bias ? bias[c] : 0.0f);
                y[at] = silu ? schnell_activate_reference(v, SCHNELL_SILU) : v;
            }
        }
    }
}

typedef struct {
    const float *x;
    float *y;
    size_t width;
} upsample_job;

SCHNELL_INLINE void upsample_body(void *context, size_t begin, size_t end) {
    const upsample_job *job = context;
    size_t w = job->width;
    for (size_t r = begin; r < end; r++) {
        const float *in = job->x + r * w;
        float *out = job->y + r * 4 * w;  // input row r -> output rows 2r and 2r + 1
        for (size_t i = 0; i < w; i++) {
            out[2 * i] = in[i];
            out[2 * i + 1] = in[i];
        }
        memcpy(out + 2 * w, out, 2 * w * sizeof(float));
    }
}
SCHNELL_VARIANTS(upsample)

void schnell_upsample_nearest2x(const float *x, float *y, size_t channels, size_t height,
                                size_t width) {
    upsample_job job = {x, y, width};
    size_t grain = 16384 / (width ? width : 1);
    schnell_parallel_for(channels * height, grain ? grain : 1, upsample_select(), &job);
}

void schnell_upsample_nearest2x_reference(const float *x, float *y, size_t channels,
                                          size_t height, size_t width) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t oy = 0; oy < 2 * height; oy++) {
            for (size_t ox = 0; ox < 2 * width; ox++) {
                y[(c * 2 * height + oy) * 2 * width + ox] = x[(c * height + oy / 2) * width + ox / 2];
            }
        }
    }
}

#define TRANSPOSE_TILE 32

typedef struct {
    const float *x;
    size_t x_stride;
    float *y;
    size_t rows, width;
} transpose_job;

// One range item is a tile of TRANSPOSE_TILE output rows (= input columns).
SCHNELL_INLINE void transpose_body(void *context, size_t begin, size_t end) {
    const transpose_job *job = context;
    for (size_t tile = begin; tile < end; tile++) {
        size_t c0 = tile * TRANSPOSE_TILE;
        size_t c1 = c0 + TRANSPOSE_TILE < job->width ? c0 + TRANSPOSE_TILE : job->width;
        for (size_t r0 = 0; r0 < job->rows; r0 += TRANSPOSE_TILE) {
            size_t r1 = r0 + TRANSPOSE_TILE < job->rows ? r0 + TRANSPOSE_TILE : job->rows;
            for (size_t c = c0; c < c1; c++) {
                for (size_t r = r0; r < r1; r++) job->y[c * job->rows + r] = job->x[r * job->x_stride + c];
            }
        }
    }
}
SCHNELL_VARIANTS(transpose)

void schnell_transpose(const float *x, size_t x_stride, float *y, size_t rows, size_t width) {
    transpose_job job = {x, x_stride, y, rows, width};
    size_t tiles = (width + TRANSPOSE_TILE - 1) / TRANSPOSE_TILE;
    schnell_parallel_for(tiles, 1, transpose_select(), &job);
}

void schnell_transpose_reference(const float *x, size_t x_stride, float *y, size_t rows,
                                 size_t width) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < width; c++) y[c * rows + r] = x[r * x_stride + c];
    }
}
