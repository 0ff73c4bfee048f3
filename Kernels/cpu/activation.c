// Activations (in place), gated residual adds and gated activations. Strided rows let these
// run on column slices of a wider buffer (the MLP half of a single block's fused projection).
#include "dispatch.h"

typedef struct {
    float *x;
    size_t width, stride;
    int kind;
} activation_job;

SCHNELL_INLINE void activation_body(void *context, size_t begin, size_t end) {
    const activation_job *job = context;
    for (size_t r = begin; r < end; r++) {
        float *x = job->x + r * job->stride;
        switch (job->kind) {  // hoisted so each loop vectorises on its own
        case SCHNELL_GELU_TANH:
            for (size_t i = 0; i < job->width; i++) x[i] = schnell_activate(x[i], SCHNELL_GELU_TANH);
            break;
        case SCHNELL_GELU_ERF:
            for (size_t i = 0; i < job->width; i++) x[i] = schnell_activate(x[i], SCHNELL_GELU_ERF);
            break;
        case SCHNELL_QUICK_GELU:
            for (size_t i = 0; i < job->width; i++) x[i] = schnell_activate(x[i], SCHNELL_QUICK_GELU);
            break;
        case SCHNELL_SILU:
            for (size_t i = 0; i < job->width; i++) x[i] = schnell_activate(x[i], SCHNELL_SILU);
            break;
        default:
            for (size_t i = 0; i < job->width; i++) x[i] = schnell_activate(x[i], SCHNELL_RELU);
            break;
        }
    }
}
SCHNELL_VARIANTS(activation)

static size_t grain_for(size_t width) { return 1 + 16384 / (width + 1); }

void schnell_activation(float *x, size_t rows, size_t width, size_t stride, int kind) {
    activation_job job = {x, width, stride, kind};
    schnell_parallel_for(rows, grain_for(width), activation_select(), &job);
}

void schnell_activation_reference(float *x, size_t rows, size_t width, size_t stride, int kind) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < width; i++) {
            x[r * stride + i] = schnell_activate_reference(x[r * stride + i], kind);
        }
    }
}

typedef struct {
    float *x;
    size_t x_stride;
    const float *y;
    size_t y_stride;
    const float *gate;
    size_t width;
} gated_add_job;

SCHNELL_INLINE void gated_add_body(void *context, size_t begin, size_t end) {
    const gated_add_job *job = context;
    for (size_t r = begin; r < end; r++) {
        float *x = job->x + r * job->x_stride;
        const float *y = job->y + r * job->y_stride;
        if (job->gate) {
            for (size_t i = 0; i < job->width; i++) x[i] += job->gate[i] * y[i];
        } else {
            for (size_t i = 0; i < job->width; i++) x[i] += y[i];
        }
    }
}
SCHNELL_VARIANTS(gated_add)

void schnell_gated_add(float *x, size_t x_stride, const float *y, size_t y_stride,
                       const float *gate, size_t rows, size_t width) {
    gated_add_job job = {x, x_stride, y, y_stride, gate, width};
    schnell_parallel_for(rows, grain_for(width), gated_add_select(), &job);
}

void schnell_gated_add_reference(float *x, size_t x_stride, const float *y, size_t y_stride,
                                 const float *gate, size_t rows, size_t width) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < width; i++) {
            x[r * x_stride + i] += (gate ? gate[i] : 1.0f) * y[r * y_stride + i];
        }
    }
}

typedef struct {
    const float *a;
    size_t a_stride;
    const float *b;
    size_t b_stride;
    float *out;
    size_t width;
    int kind;
} gated_activation_job;

SCHNELL_INLINE void gated_activation_body(void *context, size_t begin, size_t end) {
    const gated_activation_job *job = context;
    for (size_t r = begin; r < end; r++) {
        const float *a = job->a + r * job->a_stride;
        const float *b = job->b + r * job->b_stride;
        float *out = job->out + r * job->width;
        if (job->kind == SCHNELL_GELU_TANH) {
            for (size_t i = 0; i < job->width; i++) out[i] = schnell_activate(a[i], SCHNELL_GELU_TANH) * b[i];
        } else if (job->kind == SCHNELL_RELU) {
            for (size_t i = 0; i < job->width; i++) out[i] = schnell_activate(a[i], SCHNELL_RELU) * b[i];
        } else {
            for (size_t i = 0; i < job->width; i++) out[i] = schnell_activate(a[i], job->kind) * b[i];
        }
    }
}
SCHNELL_VARIANTS(gated_activation)

void schnell_gated_activation(const float *a, size_t a_stride, const float *b, size_t b_stride,
                              float *out, size_t rows, size_t width, int kind) {
    gated_activation_job job = {a, a_stride, b, b_stride, out, width, kind};
    schnell_parallel_for(rows, grain_for(width), gated_activation_select(), &job);
}

void schnell_gated_activation_reference(const float *a, size_t a_stride, const float *b,
                                        size_t b_stride, float *out, size_t rows, size_t width,
                                        int kind) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < width; i++) {
            out[r * width + i] = schnell_activate_reference(a[r * a_stride + i], kind) * b[r * b_stride + i];
        }
    }
}
