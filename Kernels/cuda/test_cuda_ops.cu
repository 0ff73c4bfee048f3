// Op test harness for libschnell_cuda.so: every op against a plain float32 CPU reference on
// random inputs, through the exported function table only (the shipped kernels, nothing copied).
//
//   test_cuda_ops          run the checks; exit 1 if any fails, 0 with "SKIP: ..." if no GPU
//   test_cuda_ops --bench  also time bf16 GEMM (M=4096, K=3072, N=3072 / 12288) and attention
//                          (4608 tokens, 24 heads x 128)
//
// Inputs are rounded to bf16 before the reference sees them, so the error measured is the
// kernels' own (bf16 outputs, fp32 accumulation). Tolerance: relative L2 error < 1e-2 for every
// op with bf16 output; exact for the bf16 round trip.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <vector>

#include "schnell_cuda.h"

typedef std::vector<float> Floats;

static const schnell_cuda_api *api;
static int failures = 0;

// ---- bf16 on the host (round to nearest even, as the kernels) ----
static uint16_t to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static float from_bf16(uint16_t half) {
    uint32_t bits = (uint32_t)half << 16;
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

// Uniform in [-range, range), already representable in bf16.
static Floats random_values(size_t count, float range) {
    Floats values(count);
    for (size_t i = 0; i < count; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        float unit = (float)(rng_state >> 40) / (float)(1ull << 24);
        values[i] = from_bf16(to_bf16((2.0f * unit - 1.0f) * range));
    }
    return values;
}

// ---- device buffers from the arena ----
static void die(const char *what) {
    printf("FAIL: %s: %s\n", what, api->last_error());
    exit(1);
}

static schnell_bf16 *upload_bf16(const Floats &values) {
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); i++) bits[i] = to_bf16(values[i]);
    schnell_bf16 *device = (schnell_bf16 *)api->arena_alloc(bits.size() * 2);
    if (device == NULL || api->copy_to_device(device, bits.data(), bits.size() * 2)) die("upload");
    return device;
}

static float *upload_f32(const Floats &values) {
    float *device = (float *)api->arena_alloc(values.size() * 4);
    if (device == NULL || api->copy_to_device(device, values.data(), values.size() * 4))
        die("upload");
    return device;
}

static Floats download_bf16(const schnell_bf16 *device, size_t count) {
    std::vector<uint16_t> bits(count);
    if (api->copy_to_host(bits.data(), device, count * 2)) die("download");
    Floats values(count);
    for (size_t i = 0; i < count; i++) values[i] = from_bf16(bits[i]);
    return values;
}

static void check_status(int status, const char *op) {
    if (status != 0) die(op);
}

// Prints max abs and relative L2 error against the reference; PASS when rel L2 <= tolerance.
static void report(const char *name, const Floats &got, const Floats &expected,
                   double tolerance) {
    double max_abs = 0, error = 0, norm = 0;
    bool finite = got.size() == expected.size();
    for (size_t i = 0; finite && i < got.size(); i++) {
        if (!isfinite(got[i])) finite = false;
        double difference = (double)got[i] - expected[i];
        max_abs = fmax(max_abs, fabs(difference));
        error += difference * difference;
        norm += (double)expected[i] * expected[i];
    }
    double relative = norm > 0 ? sqrt(error / norm) : sqrt(error);
    bool pass = finite && relative <= tolerance;
    printf("%s  %-40s max abs %.3e  rel L2 %.3e  (tolerance %.0e)\n", pass ? "PASS" : "FAIL",
           name, max_abs, relative, tolerance);
    if (!pass) failures++;
}

static const double kBf16Tolerance = 1e-2;

// ---- references (float32, plain loops) ----
static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

static void test_conversion() {
    Floats source = random_values(1000, 50.0f);
    for (size_t i = 0; i < source.size(); i++) source[i] *= 1.0f + 1e-3f * (float)(i % 7);
    float *device_f32 = upload_f32(source);
    schnell_bf16 *device_bf16 = (schnell_bf16 *)api->arena_alloc(source.size() * 2);
    float *round_trip = (float *)api->arena_alloc(source.size() * 4);
    check_status(api->f32_to_bf16(device_f32, device_bf16, source.size()), "f32_to_bf16");
    check_status(api->bf16_to_f32(device_bf16, round_trip, source.size()), "bf16_to_f32");
    Floats got(source.size()), expected(source.size());
    if (api->copy_to_host(got.data(), round_trip, got.size() * 4)) die("download");
    for (size_t i = 0; i < source.size(); i++) expected[i] = from_bf16(to_bf16(source[i]));
    report("f32 -> bf16 -> f32 (round to nearest even)", got, expected, 0.0);
}

static void test_linear(size_t rows, size_t k, size_t n, bool with_bias, bool gelu) {
    size_t x_stride = k + 8, y_stride = n + 16;  // strided rows, as column blocks of wider tensors
    Floats x = random_values(rows * x_stride, 1.0f), weight = random_values(n * k, 0.1f);
    Floats bias = random_values(n, 0.5f);
    Floats y_expected(rows * n), y_got(rows * n);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < n; j++) {
            double sum = with_bias ? bias[j] : 0.0;
            for (size_t i = 0; i < k; i++) sum += (double)x[r * x_stride + i] * weight[j * k + i];
            y_expected[r * n + j] = gelu ? gelu_tanh((float)sum) : (float)sum;
        }
    schnell_bf16 *y = (schnell_bf16 *)api->arena_alloc(rows * y_stride * 2);
    check_status(api->linear(upload_bf16(x), x_stride, rows, k, upload_bf16(weight),
                             with_bias ? upload_bf16(bias) : NULL, n, y, y_stride, gelu),
                 "linear");
    Floats all = download_bf16(y, rows * y_stride);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < n; j++) y_got[r * n + j] = all[r * y_stride + j];
    char name[96];
    snprintf(name, sizeof name, "linear %zux%zux%zu%s%s", rows, k, n, with_bias ? " +bias" : "",
             gelu ? " +gelu" : "");
    report(name, y_got, y_expected, kBf16Tolerance);
}

// q, k, v interleaved in one [tokens, 3 * heads * d] buffer (a fused qkv projection), plus
// `extra` columns of padding so strides can be made unaligned.
static void test_attention(size_t q_tokens, size_t kv_tokens, size_t heads, size_t d,
                           size_t extra) {
    size_t width = heads * d, stride = 3 * width + extra;
    size_t tokens = q_tokens > kv_tokens ? q_tokens : kv_tokens;
    Floats qkv = random_values(tokens * stride, 1.0f);
    float scale = 1.0f / sqrtf((float)d);
    Floats expected(q_tokens * width), scores(kv_tokens);
    for (size_t h = 0; h < heads; h++)
        for (size_t i = 0; i < q_tokens; i++) {
            const float *q = &qkv[i * stride + h * d];
            float max_score = -INFINITY;
            for (size_t j = 0; j < kv_tokens; j++) {
                const float *key = &qkv[j * stride + width + h * d];
                double dot = 0;
                for (size_t c = 0; c < d; c++) dot += (double)q[c] * key[c];
                scores[j] = (float)dot * scale;
                max_score = fmaxf(max_score, scores[j]);
            }
            double sum = 0;
            for (size_t j = 0; j < kv_tokens; j++) sum += scores[j] = expf(scores[j] - max_score);
            for (size_t c = 0; c < d; c++) {
                double value = 0;
                for (size_t j = 0; j < kv_tokens; j++)
                    value += scores[j] * qkv[j * stride + 2 * width + h * d + c];
                expected[i * width + h * d + c] = (float)(value / sum);
            }
        }
    schnell_bf16 *device = upload_bf16(qkv);
    schnell_bf16 *out = (schnell_bf16 *)api->arena_alloc(q_tokens * width * 2);
    check_status(api->attention(device, stride, device + width, stride, device + 2 * width,
                                stride, out, width, q_tokens, kv_tokens, heads, d, scale),
                 "attention");
    char name[96];
    snprintf(name, sizeof name, "attention q%zu kv%zu h%zu d%zu%s", q_tokens, kv_tokens, heads, d,
             extra % 8 ? " (unaligned)" : "");
    report(name, download_bf16(out, q_tokens * width), expected, kBf16Tolerance);
}

static void test_layer_norm_modulate(size_t rows, size_t dim) {
    Floats x = random_values(rows * dim, 3.0f), scale = random_values(dim, 0.5f);
    Floats shift = random_values(dim, 0.5f), expected(rows * dim);
    const float eps = 1e-6f;
    for (size_t r = 0; r < rows; r++) {
        double mean = 0, variance = 0;
        for (size_t c = 0; c < dim; c++) mean += x[r * dim + c];
        mean /= dim;
        for (size_t c = 0; c < dim; c++) variance += (x[r * dim + c] - mean) * (x[r * dim + c] - mean);
        double inverse_std = 1.0 / sqrt(variance / dim + eps);
        for (size_t c = 0; c < dim; c++)
            expected[r * dim + c] =
                (float)((x[r * dim + c] - mean) * inverse_std * (1.0 + scale[c]) + shift[c]);
    }
    schnell_bf16 *y = (schnell_bf16 *)api->arena_alloc(rows * dim * 2);
    check_status(api->layer_norm_modulate(upload_bf16(x), y, rows, dim, eps, upload_bf16(scale),
                                          upload_bf16(shift)), "layer_norm_modulate");
    char name[96];
    snprintf(name, sizeof name, "layer_norm_modulate %zux%zu", rows, dim);
    report(name, download_bf16(y, rows * dim), expected, kBf16Tolerance);
}

static void test_group_norm(size_t batch, size_t channels, size_t pixels, size_t groups,
                            bool with_silu) {
    size_t count = batch * channels * pixels, span = channels / groups * pixels;
    Floats x = random_values(count, 2.0f), weight = random_values(channels, 1.0f);
    Floats bias = random_values(channels, 0.5f), expected(count);
    const float eps = 1e-6f;
    for (size_t g = 0; g < batch * groups; g++) {
        const float *source = &x[g * span];
        double mean = 0, variance = 0;
        for (size_t i = 0; i < span; i++) mean += source[i];
        mean /= span;
        for (size_t i = 0; i < span; i++) variance += (source[i] - mean) * (source[i] - mean);
        double inverse_std = 1.0 / sqrt(variance / span + eps);
        for (size_t i = 0; i < span; i++) {
            size_t channel = (g * span + i) / pixels % channels;
            float value = (float)((source[i] - mean) * inverse_std) * weight[channel] + bias[channel];
            expected[g * span + i] = with_silu ? silu(value) : value;
        }
    }
    schnell_bf16 *y = (schnell_bf16 *)api->arena_alloc(count * 2);
    check_status(api->group_norm(upload_bf16(x), y, batch, channels, pixels, groups, eps,
                                 upload_bf16(weight), upload_bf16(bias), with_silu),
                 "group_norm");
    char name[96];
    snprintf(name, sizeof name, "group_norm %zux%zux%zu g%zu%s", batch, channels, pixels, groups,
             with_silu ? " +silu" : "");
    report(name, download_bf16(y, count), expected, kBf16Tolerance);
}

static void test_qk_norm_rope(size_t tokens, size_t heads, size_t d) {
    size_t stride = 3 * heads * d;
    Floats x = random_values(tokens * stride, 2.0f), weight = random_values(d, 1.0f);
    Floats cos_table(tokens * d), sin_table(tokens * d);
    for (size_t t = 0; t < tokens; t++)
        for (size_t p = 0; p < d / 2; p++) {
            double angle = (double)t * pow(10000.0, -2.0 * p / d);
            cos_table[t * d + 2 * p] = cos_table[t * d + 2 * p + 1] = (float)cos(angle);
            sin_table[t * d + 2 * p] = sin_table[t * d + 2 * p + 1] = (float)sin(angle);
        }
    const float eps = 1e-6f;
    Floats expected(tokens * heads * d), got(tokens * heads * d);
    for (size_t t = 0; t < tokens; t++)
        for (size_t h = 0; h < heads; h++) {
            const float *v = &x[t * stride + h * d];
            double squares = 0;
            for (size_t c = 0; c < d; c++) squares += (double)v[c] * v[c];
            float inverse_rms = (float)(1.0 / sqrt(squares / d + eps));
            float *out = &expected[(t * heads + h) * d];
            for (size_t c = 0; c < d; c += 2) {
                float a = v[c] * inverse_rms * weight[c], b = v[c + 1] * inverse_rms * weight[c + 1];
                out[c] = a * cos_table[t * d + c] - b * sin_table[t * d + c];
                out[c + 1] = b * cos_table[t * d + c + 1] + a * sin_table[t * d + c + 1];
            }
        }
    schnell_bf16 *device = upload_bf16(x);
    check_status(api->qk_norm_rope(device, tokens, heads, d, stride, upload_bf16(weight), eps,
                                   upload_f32(cos_table), upload_f32(sin_table)), "qk_norm_rope");
    Floats all = download_bf16(device, tokens * stride);
    for (size_t t = 0; t < tokens; t++)
        for (size_t i = 0; i < heads * d; i++) got[t * heads * d + i] = all[t * stride + i];
    char name[96];
    snprintf(name, sizeof name, "qk_norm_rope t%zu h%zu d%zu", tokens, heads, d);
    report(name, got, expected, kBf16Tolerance);
}

static void test_gated_add(size_t rows, size_t width, bool with_gate) {
    size_t x_stride = width + 3, y_stride = 2 * width;
    Floats x = random_values(rows * x_stride, 1.0f), y = random_values(rows * y_stride, 1.0f);
    Floats gate = random_values(width, 1.0f), expected(rows * width), got(rows * width);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < width; c++)
            expected[r * width + c] =
                x[r * x_stride + c] + (with_gate ? gate[c] : 1.0f) * y[r * y_stride + c];
    schnell_bf16 *device_x = upload_bf16(x);
    check_status(api->gated_add(device_x, x_stride, upload_bf16(y), y_stride,
                                with_gate ? upload_bf16(gate) : NULL, rows, width), "gated_add");
    Floats all = download_bf16(device_x, rows * x_stride);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < width; c++) got[r * width + c] = all[r * x_stride + c];
    report(with_gate ? "gated_add (gate)" : "gated_add (no gate)", got, expected, kBf16Tolerance);
}

static void test_activation(int kind) {
    size_t rows = 37, width = 300, stride = 320;
    Floats x = random_values(rows * stride, 4.0f), expected(rows * width), got(rows * width);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < width; c++) {
            float value = x[r * stride + c];
            expected[r * width + c] = kind == SCHNELL_CUDA_GELU_TANH ? gelu_tanh(value) : silu(value);
        }
    schnell_bf16 *device = upload_bf16(x);
    check_status(api->activation(device, rows, width, stride, kind), "activation");
    Floats all = download_bf16(device, rows * stride);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < width; c++) got[r * width + c] = all[r * stride + c];
    report(kind == SCHNELL_CUDA_GELU_TANH ? "activation gelu_tanh" : "activation silu", got,
           expected, kBf16Tolerance);
}

static void test_conv3x3(size_t batch, size_t c_in, size_t c_out, size_t height, size_t width) {
    size_t pixels = height * width;
    Floats x = random_values(batch * c_in * pixels, 1.0f);
    Floats weight = random_values(c_out * c_in * 9, 0.2f), bias = random_values(c_out, 0.5f);
    Floats expected(batch * c_out * pixels);
    for (size_t b = 0; b < batch; b++)
        for (size_t o = 0; o < c_out; o++)
            for (size_t py = 0; py < height; py++)
                for (size_t px = 0; px < width; px++) {
                    double sum = bias[o];
                    for (size_t i = 0; i < c_in; i++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                long sy = (long)py + ky - 1, sx = (long)px + kx - 1;
                                if (sy < 0 || sx < 0 || sy >= (long)height || sx >= (long)width)
                                    continue;
                                sum += (double)weight[((o * c_in + i) * 3 + ky) * 3 + kx] *
                                       x[((b * c_in + i) * height + sy) * width + sx];
                            }
                    expected[((b * c_out + o) * height + py) * width + px] = (float)sum;
                }
    schnell_bf16 *y = (schnell_bf16 *)api->arena_alloc(expected.size() * 2);
    check_status(api->conv3x3(upload_bf16(x), batch, c_in, height, width, upload_bf16(weight),
                              upload_bf16(bias), c_out, y), "conv3x3");
    char name[96];
    snprintf(name, sizeof name, "conv3x3 %zux%zux%zux%zu -> %zu", batch, c_in, height, width, c_out);
    report(name, download_bf16(y, expected.size()), expected, kBf16Tolerance);
}

static void test_upsample(size_t batch, size_t channels, size_t height, size_t width) {
    Floats x = random_values(batch * channels * height * width, 1.0f);
    Floats expected(x.size() * 4);
    for (size_t plane = 0; plane < batch * channels; plane++)
        for (size_t oy = 0; oy < 2 * height; oy++)
            for (size_t ox = 0; ox < 2 * width; ox++)
                expected[(plane * 2 * height + oy) * 2 * width + ox] =
                    x[(plane * height + oy / 2) * width + ox / 2];
    schnell_bf16 *y = (schnell_bf16 *)api->arena_alloc(expected.size() * 2);
    check_status(api->upsample_nearest2x(upload_bf16(x), y, batch, channels, height, width),
                 "upsample_nearest2x");
    report("upsample_nearest2x", download_bf16(y, expected.size()), expected, 0.0);
}

// Captures x += y; silu(x) once and replays it twice: the graph must repeat the ops exactly.
static void test_graph() {
    size_t rows = 16, width = 256;
    Floats x = random_values(rows * width, 1.0f), y = random_values(rows * width, 1.0f);
    Floats expected = x;
    for (int replay = 0; replay < 2; replay++)
        for (size_t i = 0; i < expected.size(); i++)
            expected[i] = silu(from_bf16(to_bf16(expected[i] + y[i])));
    schnell_bf16 *device_x = upload_bf16(x), *device_y = upload_bf16(y);
    check_status(api->synchronize(), "synchronize");
    schnell_cuda_graph *graph = NULL;
    check_status(api->graph_begin_capture(), "graph_begin_capture");
    check_status(api->gated_add(device_x, width, device_y, width, NULL, rows, width), "gated_add");
    check_status(api->activation(device_x, rows, width, width, SCHNELL_CUDA_SILU), "activation");
    check_status(api->graph_end_capture(&graph), "graph_end_capture");
    check_status(api->graph_launch(graph), "graph_launch");
    check_status(api->graph_launch(graph), "graph_launch");
    report("graph capture + 2 replays", download_bf16(device_x, rows * width), expected,
           kBf16Tolerance);
    api->graph_destroy(graph);
}

// ---- micro-benchmarks ----
static double seconds_for(int iterations, void (*body)(void *), void *context) {
    body(context);  // warm-up (cuBLASLt heuristics, first launch)
    check_status(api->synchronize(), "synchronize");
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; i++) body(context);
    check_status(api->synchronize(), "synchronize");
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count() / iterations;
}

struct GemmCase {
    size_t m, k, n;
    schnell_bf16 *x, *weight, *bias, *y;
};

static void run_gemm(void *context) {
    GemmCase *c = (GemmCase *)context;
    check_status(api->linear(c->x, c->k, c->m, c->k, c->weight, c->bias, c->n, c->y, c->n, 0),
                 "linear");
}

struct AttentionCase {
    size_t tokens, heads, d;
    schnell_bf16 *qkv, *out;
};

static void run_attention(void *context) {
    AttentionCase *c = (AttentionCase *)context;
    size_t width = c->heads * c->d;
    check_status(api->attention(c->qkv, 3 * width, c->qkv + width, 3 * width, c->qkv + 2 * width,
                                3 * width, c->out, width, c->tokens, c->tokens, c->heads, c->d,
                                1.0f / sqrtf((float)c->d)), "attention");
}

static void benchmark() {
    const size_t gemm_n[] = {3072, 12288};
    for (size_t n : gemm_n) {
        api->arena_reset();
        GemmCase c = {4096, 3072, n, NULL, NULL, NULL, NULL};
        c.x = upload_bf16(random_values(c.m * c.k, 1.0f));
        c.weight = upload_bf16(random_values(c.n * c.k, 0.05f));
        c.bias = upload_bf16(random_values(c.n, 0.1f));
        c.y = (schnell_bf16 *)api->arena_alloc(c.m * c.n * 2);
        if (c.y == NULL) die("arena");
        double seconds = seconds_for(50, run_gemm, &c);
        printf("BENCH linear bf16 M=%zu K=%zu N=%zu (+bias): %.3f ms, %.1f TFLOP/s\n", c.m, c.k,
               c.n, seconds * 1e3, 2.0 * c.m * c.k * c.n / seconds / 1e12);
    }
    api->arena_reset();
    AttentionCase c = {4608, 24, 128, NULL, NULL};
    c.qkv = upload_bf16(random_values(c.tokens * 3 * c.heads * c.d, 1.0f));
    c.out = (schnell_bf16 *)api->arena_alloc(c.tokens * c.heads * c.d * 2);
    if (c.out == NULL) die("arena");
    double seconds = seconds_for(20, run_attention, &c);
    double flops = 4.0 * c.tokens * c.tokens * c.d * c.heads;  // QK^T and PV
    printf("BENCH attention bf16 L=%zu heads=%zu d=%zu: %.3f ms, %.1f TFLOP/s\n", c.tokens,
           c.heads, c.d, seconds * 1e3, flops / seconds / 1e12);
}

int main(int argc, char **argv) {
    bool bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
    api = schnell_cuda_get_api();
    if (api->api_version != SCHNELL_CUDA_API_VERSION) {
        printf("FAIL: library api_version %u, harness expects %u\n", api->api_version,
               SCHNELL_CUDA_API_VERSION);
        return 1;
    }
    schnell_cuda_device_info info;
    if (api->query_device(0, &info) != 0) {
        printf("SKIP: no CUDA device (%s)\n", info.error);
        return 0;
    }
    printf("device 0: %s, compute capability %d.%d, %d SMs, %.1f of %.1f GiB free\n", info.name,
           info.compute_major, info.compute_minor, info.multiprocessor_count,
           info.free_bytes / 1073741824.0, info.total_bytes / 1073741824.0);
    if (api->init(0, (size_t)2 << 30) != 0) die("init");

    test_conversion();
    test_linear(77, 96, 136, true, false);
    test_linear(77, 96, 136, true, true);
    test_linear(64, 256, 512, false, false);
    test_attention(100, 130, 3, 64, 0);
    test_attention(130, 100, 2, 128, 0);
    test_attention(65, 33, 2, 128, 5);
    test_attention(256, 512, 4, 128, 0);
    test_layer_norm_modulate(33, 3072);
    test_layer_norm_modulate(5, 200);
    test_group_norm(2, 64, 17 * 13, 32, false);
    test_group_norm(1, 128, 32 * 32, 32, true);
    test_qk_norm_rope(50, 4, 128);
    test_qk_norm_rope(9, 2, 64);
    test_gated_add(20, 300, true);
    test_gated_add(20, 300, false);
    test_activation(SCHNELL_CUDA_GELU_TANH);
    test_activation(SCHNELL_CUDA_SILU);
    test_conv3x3(2, 8, 12, 9, 11);
    test_conv3x3(1, 64, 32, 16, 16);
    test_conv3x3(1, 512, 8, 96, 96);  // 9216 pixels: more than one im2col chunk (7280)
    test_upsample(2, 3, 5, 7);
    api->arena_reset();
    test_graph();

    if (bench && failures == 0) benchmark();
    api->shutdown();
    printf("%s: %d failure(s)\n", failures == 0 ? "PASS" : "FAIL", failures);
    return failures == 0 ? 0 : 1;
}
