// Latent and pixel ops of the pipeline: the Euler step, noise mixing, inpainting blends, the VAE's
// latent sample and affine, 2x2 latent packing, and the 8-bit pixel edges.
//
// The values are few (a 1024x1024 image has 262,144 latent values), so these are plain
// single-threaded loops. This file is built for baseline x86-64 only: with no FMA instruction
// available, -ffp-contract=fast cannot fuse, and every product is rounded before it is added, as
// PyTorch's float32 elementwise ops do. The results are diffusers' bit for bit.
#include <math.h>

#include "schnell_kernels.h"

void schnell_affine(const float *x, float *y, size_t count, float scale, float shift) {
    for (size_t i = 0; i < count; i++) y[i] = x[i] * scale + shift;
}

void schnell_clamp(float *x, size_t count, float low, float high) {
    for (size_t i = 0; i < count; i++) x[i] = fminf(fmaxf(x[i], low), high);
}

void schnell_euler_step(float *sample, const float *velocity, size_t count, float delta) {
    for (size_t i = 0; i < count; i++) {
        float change = delta * velocity[i];
        sample[i] += change;
    }
}

void schnell_noise_mix(const float *x, const float *noise, float *y, size_t count, float sigma) {
    float keep = 1.0f - sigma;
    for (size_t i = 0; i < count; i++) {
        float noise_part = sigma * noise[i];
        float latent_part = keep * x[i];
        y[i] = noise_part + latent_part;
    }
}

void schnell_mask_blend(float *x, const float *kept, const float *mask, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float keep = (1.0f - mask[i]) * kept[i];
        float regenerate = mask[i] * x[i];
        x[i] = keep + regenerate;
    }
}

void schnell_gaussian_sample(const float *mean, const float *log_variance, const float *noise,
                             float *y, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float spread = expf(0.5f * log_variance[i]) * noise[i];
        y[i] = mean[i] + spread;
    }
}

// Token (y / 2, x / 2) of the packed grid holds, at column c * 4 + (y % 2) * 2 + x % 2, the value
// of channel c at (y, x).
static size_t packed_index(size_t c, size_t y, size_t x, size_t channels, size_t width) {
    size_t token = (y / 2) * (width / 2) + x / 2;
    return token * 4 * channels + c * 4 + (y % 2) * 2 + x % 2;
}

void schnell_pack_latents(const float *x, float *y, size_t channels, size_t height, size_t width) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t r = 0; r < height; r++) {
            for (size_t col = 0; col < width; col++) {
                y[packed_index(c, r, col, channels, width)] = x[(c * height + r) * width + col];
            }
        }
    }
}

void schnell_unpack_latents(const float *x, float *y, size_t channels, size_t height, size_t width) {
    for (size_t c = 0; c < channels; c++) {
        for (size_t r = 0; r < height; r++) {
            for (size_t col = 0; col < width; col++) {
                y[(c * height + r) * width + col] = x[packed_index(c, r, col, channels, width)];
            }
        }
    }
}

void schnell_rgb8_from_planes(const float *x, uint8_t *rgb, size_t pixels) {
    for (size_t c = 0; c < 3; c++) {
        for (size_t p = 0; p < pixels; p++) {
            float unit = fminf(fmaxf(x[c * pixels + p] * 0.5f + 0.5f, 0.0f), 1.0f);
            rgb[p * 3 + c] = (uint8_t)nearbyintf(unit * 255.0f);
        }
    }
}

void schnell_planes_from_rgb8(const uint8_t *rgb, float *x, size_t pixels) {
    for (size_t c = 0; c < 3; c++) {
        for (size_t p = 0; p < pixels; p++) x[c * pixels + p] = 2.0f * ((float)rgb[p * 3 + c] / 255.0f) - 1.0f;
    }
}
