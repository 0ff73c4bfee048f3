// Preview pictures: packed latent tokens [(h / 2) (w / 2), 4C] -> 8-bit RGB at any output size.
//
// Each latent pixel goes through a linear map to RGB (weight [3, C], bias [3], in the decoder's
// [-1, 1] image units), is turned into [0, 255] and clamped; the picture is then scaled to the
// output size bilinearly with half-pixel centres (PyTorch's interpolate, align_corners=False,
// no antialiasing) and rounded to the nearest level. The fast version projects each latent pixel
// once into a small float picture, then splits the output rows over the thread pool, each row
// blending two picture rows vertically before the per-column horizontal blend. Both versions do the
// same float32 operations in the same order, and this file is built for baseline x86-64 (no FMA
// to contract into), so they agree byte for byte. The work is small (3 bytes an output pixel from
// 4 table lookups), so there are no per-tier builds.
#include "dispatch.h"

// Column c * 4 + (y % 2) * 2 + x % 2 of token (y / 2, x / 2) holds channel c at (y, x).
static float packed_value(const float *packed, size_t channels, size_t latent_width, size_t c, size_t y,
                          size_t x) {
    size_t token = (y / 2) * (latent_width / 2) + x / 2;
    return packed[token * 4 * channels + c * 4 + (y % 2) * 2 + x % 2];
}

// One latent pixel's colour k in [0, 255], clamped.
static float projected_level(const float *packed, size_t channels, size_t latent_width, const float *weight,
                             const float *bias, size_t k, size_t y, size_t x) {
    float value = bias[k];
    for (size_t c = 0; c < channels; c++) value += weight[k * channels + c] * packed_value(packed, channels, latent_width, c, y, x);
    float level = (value * 0.5f + 0.5f) * 255.0f;
    return fminf(fmaxf(level, 0.0f), 255.0f);
}

// Source position of output index i when `in` values stretch over `out`: the lower neighbour,
// the upper one (clamped at the edge) and the upper one's weight.
static void bilinear_tap(size_t i, size_t in, size_t out, size_t *low, size_t *high, float *weight) {
    float position = ((float)i + 0.5f) * ((float)in / (float)out) - 0.5f;
    if (position < 0.0f) position = 0.0f;
    size_t lower = (size_t)position;
    if (lower > in - 1) lower = in - 1;
    *low = lower;
    *high = lower + 1 < in ? lower + 1 : lower;
    *weight = position - (float)lower;
}

static uint8_t level_byte(float level) { return (uint8_t)(level + 0.5f); }

void schnell_preview_rgb8_reference(const float *packed, size_t channels, size_t latent_height, size_t latent_width,
                                    const float *weight, const float *bias, uint8_t *rgb, size_t width, size_t height) {
    for (size_t oy = 0; oy < height; oy++) {
        size_t y0, y1;
        float wy;
        bilinear_tap(oy, latent_height, height, &y0, &y1, &wy);
        for (size_t ox = 0; ox < width; ox++) {
            size_t x0, x1;
            float wx;
            bilinear_tap(ox, latent_width, width, &x0, &x1, &wx);
            for (size_t k = 0; k < 3; k++) {
                float top_left = projected_level(packed, channels, latent_width, weight, bias, k, y0, x0);
                float top_right = projected_level(packed, channels, latent_width, weight, bias, k, y0, x1);
                float bottom_left = projected_level(packed, channels, latent_width, weight, bias, k, y1, x0);
                float bottom_right = projected_level(packed, channels, latent_width, weight, bias, k, y1, x1);
                float left = (1.0f - wy) * top_left + wy * bottom_left;
                float right = (1.0f - wy) * top_right + wy * bottom_right;
                rgb[(oy * width + ox) * 3 + k] = level_byte((1.0f - wx) * left + wx * right);
            }
        }
    }
}

typedef struct {
    const float *levels;  // [latent_height, latent_width, 3] in [0, 255]
    size_t latent_height, latent_width, width, height;
    const size_t *x_low, *x_high;  // [width] each
    const float *x_weight;         // [width]
    float *blended;  // [threads, latent_width * 3]: each worker's vertically blended row
    uint8_t *rgb;
} preview_rows;

static void preview_rows_run(void *context, size_t begin, size_t end) {
    const preview_rows *job = context;
    size_t row_values = job->latent_width * 3;
    float *blended = job->blended + (size_t)schnell_worker_index() * row_values;
    for (size_t oy = begin; oy < end; oy++) {
        size_t y0, y1;
        float wy;
        bilinear_tap(oy, job->latent_height, job->height, &y0, &y1, &wy);
        const float *top = job->levels + y0 * row_values, *bottom = job->levels + y1 * row_values;
        for (size_t i = 0; i < row_values; i++) blended[i] = (1.0f - wy) * top[i] + wy * bottom[i];
        uint8_t *out = job->rgb + oy * job->width * 3;
        for (size_t ox = 0; ox < job->width; ox++) {
            const float *left = blended + job->x_low[ox] * 3, *right = blended + job->x_high[ox] * 3;
            float wx = job->x_weight[ox];
            for (size_t k = 0; k < 3; k++) out[ox * 3 + k] = level_byte((1.0f - wx) * left[k] + wx * right[k]);
        }
    }
}

int schnell_preview_rgb8(const float *packed, size_t channels, size_t latent_height, size_t latent_width,
                         const float *weight, const float *bias, uint8_t *rgb, size_t width, size_t height) {
    size_t pixels = latent_height * latent_width;
    float *levels = malloc(pixels * 3 * sizeof(float));
    size_t *x_taps = malloc(width * 2 * sizeof(size_t));
    float *x_weight = malloc(width * sizeof(float));
    float *blended = malloc((size_t)schnell_threads() * latent_width * 3 * sizeof(float));
    if (!levels || !x_taps || !x_weight || !blended) {
        free(levels);
        free(x_taps);
        free(x_weight);
        free(blended);
        return -1;
    }
    for (size_t y = 0; y < latent_height; y++) {
        for (size_t x = 0; x < latent_width; x++) {
            for (size_t k = 0; k < 3; k++) {
                levels[(y * latent_width + x) * 3 + k] = projected_level(packed, channels, latent_width, weight, bias, k, y, x);
            }
        }
    }
    for (size_t ox = 0; ox < width; ox++) bilinear_tap(ox, latent_width, width, &x_taps[ox], &x_taps[width + ox], &x_weight[ox]);
    preview_rows job = {levels, latent_height, latent_width, width, height, x_taps, x_taps + width, x_weight, blended, rgb};
    schnell_parallel_for(height, 16, preview_rows_run, &job);
    free(levels);
    free(x_taps);
    free(x_weight);
    free(blended);
    return 0;
}
