// GEMM through cuBLASLt: bf16 operands, fp32 accumulation, bias and GELU fused in the epilogue.
//
// cuBLASLt is column-major. A row-major matrix [rows, cols] with row stride s is the same
// memory as a column-major [cols, rows] with leading dimension s, so
//   row-major  y[rows, n] = x[rows, k] . W[n, k]^T + b[n]
// is column-major y^T[n, rows] = W^T(as stored: [k, n], transposed) . x^T([k, rows]) + b,
// i.e. D = op_T(A = W) . op_N(B = x), where the epilogue bias runs along D's rows (n).
#include "internal.cuh"

#define LT_CHECK(call, what)                                                  \
    do {                                                                      \
        cublasStatus_t lt_status = (call);                                    \
        if (lt_status != CUBLAS_STATUS_SUCCESS) {                             \
            status = fail("%s: cuBLASLt status %d", what, (int)lt_status);    \
            goto cleanup;                                                     \
        }                                                                     \
    } while (0)

// cuBLASLt assumes 256-byte aligned operands unless told otherwise, and may then pick a kernel
// that misreads a column slice (q out of qkv) or a strided row. Every column starts at
// pointer + j * ld elements, so the usable alignment is that of the pointer and of the pitch.
static uint32_t alignment_bytes(const void *pointer, size_t ld) {
    uintptr_t bits = (uintptr_t)pointer | (uintptr_t)(ld * sizeof(schnell_bf16)) | 256u;
    return (uint32_t)(bits & (~bits + 1));  // lowest set bit, at most 256
}

int gemm_bf16(bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
              const schnell_bf16 *a, size_t lda, const schnell_bf16 *b, size_t ldb,
              schnell_bf16 *d, size_t ldd, const schnell_bf16 *bias, bool gelu_tanh) {
    int status = 0;
    cublasLtMatmulDesc_t operation = NULL;
    cublasLtMatrixLayout_t layout_a = NULL, layout_b = NULL, layout_d = NULL;
    cublasLtMatmulPreference_t preference = NULL;
    cublasLtMatmulHeuristicResult_t heuristic = {};
    int found = 0;
    const float alpha = 1.0f, beta = 0.0f;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = bias != NULL
        ? (gelu_tanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
        : (gelu_tanh ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT);
    size_t workspace_bytes = g_cuda.blas_workspace_bytes;
    uint32_t align_a = alignment_bytes(a, lda), align_b = alignment_bytes(b, ldb);
    uint32_t align_d = alignment_bytes(d, ldd);

    LT_CHECK(cublasLtMatmulDescCreate(&operation, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    LT_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                            sizeof op_a), "transa");
    LT_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                            sizeof op_b), "transb");
    LT_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                            sizeof epilogue), "epilogue");
    if (bias != NULL) {
        LT_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof bias), "bias pointer");
    }
    // Stored shapes: A is [m, k] when not transposed, [k, m] when transposed; likewise B.
    LT_CHECK(cublasLtMatrixLayoutCreate(&layout_a, CUDA_R_16BF, trans_a ? k : m,
                                        trans_a ? m : k, (int64_t)lda), "layout a");
    LT_CHECK(cublasLtMatrixLayoutCreate(&layout_b, CUDA_R_16BF, trans_b ? n : k,
                                        trans_b ? k : n, (int64_t)ldb), "layout b");
    LT_CHECK(cublasLtMatrixLayoutCreate(&layout_d, CUDA_R_16BF, m, n, (int64_t)ldd), "layout d");
    LT_CHECK(cublasLtMatmulPreferenceCreate(&preference), "preference");
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference,
                                                  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &workspace_bytes, sizeof workspace_bytes),
             "workspace preference");
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference,
                                                  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                  &align_a, sizeof align_a), "alignment a");
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference,
                                                  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                  &align_b, sizeof align_b), "alignment b");
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference,
                                                  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                  &align_d, sizeof align_d), "alignment c");
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference,
                                                  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                  &align_d, sizeof align_d), "alignment d");
    LT_CHECK(cublasLtMatmulAlgoGetHeuristic(g_cuda.blas, operation, layout_a, layout_b, layout_d,
                                            layout_d, preference, 1, &heuristic, &found),
             "algorithm heuristic");
    if (found == 0) {
        status = fail("gemm: cuBLASLt has no algorithm for m=%zu n=%zu k=%zu", m, n, k);
        goto cleanup;
    }
    LT_CHECK(cublasLtMatmul(g_cuda.blas, operation, &alpha, a, layout_a, b, layout_b, &beta, d,
                            layout_d, d, layout_d, &heuristic.algo, g_cuda.blas_workspace,
                            workspace_bytes, g_cuda.stream), "matmul");
cleanup:
    if (preference) cublasLtMatmulPreferenceDestroy(preference);
    if (layout_d) cublasLtMatrixLayoutDestroy(layout_d);
    if (layout_b) cublasLtMatrixLayoutDestroy(layout_b);
    if (layout_a) cublasLtMatrixLayoutDestroy(layout_a);
    if (operation) cublasLtMatmulDescDestroy(operation);
    return status;
}

extern "C" int schnell_cuda_linear(const schnell_bf16 *x, size_t x_stride, size_t rows, size_t k,
                                   const schnell_bf16 *weight, const schnell_bf16 *bias, size_t n,
                                   schnell_bf16 *y, size_t y_stride, int gelu_tanh) {
    if (require_ready("linear")) return -1;
    if (rows == 0 || n == 0) return 0;
    if (k == 0 || x_stride < k || y_stride < n)
        return fail("linear: bad shape rows=%zu k=%zu n=%zu x_stride=%zu y_stride=%zu", rows, k,
                    n, x_stride, y_stride);
    // D[n, rows] = W^T . x^T in column-major terms (see the top of this file).
    return gemm_bf16(true, false, n, rows, k, weight, k, x, x_stride, y, y_stride, bias,
                     gelu_tanh != 0);
}
