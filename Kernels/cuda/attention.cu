// Flash-style fused attention: bf16 q/k/v, fp32 softmax statistics and accumulation.
//
// For each head h: out[i, h*D:(h+1)*D] = softmax(scale * q_i . k^T) . v, with q/k/v/out
// token-major ([tokens, stride], head h at column h*D) as the CPU kernel.
//
// One block of 4 warps owns 64 query rows of one head (grid: [ceil(q_tokens / 64), heads]).
// It walks the keys in tiles of 32 with an online softmax (Milakov & Gimelshein; Dao et al.):
//   S = Q K^T            [64, 32]  tensor cores (wmma bf16 -> fp32), each warp its 16 rows
//   m' = max(m, rowmax(S * scale));  P = exp(S * scale - m');  alpha = exp(m - m')
//   l = l * alpha + rowsum(P);       O = O * alpha + P V   [64, D]
// and writes O / l at the end. Only [64, D] + [32, D] tiles live in shared memory; the
// [q_tokens, kv_tokens] score matrix never exists.
#include <mma.h>

#include "internal.cuh"

using namespace nvcuda;

static const int kBlockQ = 64;
static const int kBlockKV = 32;
static const int kWarps = kBlockQ / 16;
static const int kThreads = kWarps * 32;

// Row pitches pad each shared row (8 bf16 or 4 floats) to spread rows over the banks;
// each keeps wmma's 32-byte alignment of every 16-row / 16-column sub-tile.
template <int D>
struct AttentionTiles {
    static const int kPitchQKV = D + 8;             // bf16
    static const int kPitchScores = kBlockKV + 4;   // float
    static const int kPitchProbs = kBlockKV + 8;    // bf16
    static const int kPitchOut = D + 4;             // float
    static const size_t kQBytes = (size_t)kBlockQ * kPitchQKV * 2;
    static const size_t kKVBytes = (size_t)kBlockKV * kPitchQKV * 2;
    static const size_t kScoresBytes = (size_t)kBlockQ * kPitchScores * 4;
    static const size_t kProbsBytes = (size_t)kBlockQ * kPitchProbs * 2;
    static const size_t kOutBytes = (size_t)kBlockQ * kPitchOut * 4;
    static const size_t kBytes = kQBytes + 2 * kKVBytes + kScoresBytes + kProbsBytes + kOutBytes;
};

// Copies rows [first, first + rows) of one head (D columns from column offset) into a shared
// tile with pitch `pitch`; rows past `limit` become zeros so padded keys contribute nothing.
template <int D>
__device__ void load_tile(__nv_bfloat16 *tile, int pitch, const __nv_bfloat16 *source,
                          size_t stride, size_t column, size_t first, int rows, size_t limit,
                          bool vectorized) {
    if (vectorized) {
        const int chunks = D / 8;  // 16-byte chunks per row
        for (int index = threadIdx.x; index < rows * chunks; index += blockDim.x) {
            int r = index / chunks, c = (index % chunks) * 8;
            uint4 value = make_uint4(0, 0, 0, 0);
            if (first + r < limit)
                value = *(const uint4 *)(source + (first + r) * stride + column + c);
            *(uint4 *)(tile + r * pitch + c) = value;
        }
    } else {
        for (int index = threadIdx.x; index < rows * D; index += blockDim.x) {
            int r = index / D, c = index % D;
            tile[r * pitch + c] = first + r < limit ? source[(first + r) * stride + column + c]
                                                    : __float2bfloat16_rn(0.0f);
        }
    }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
attention_kernel(const __nv_bfloat16 *q, size_t q_stride, const __nv_bfloat16 *k,
                 size_t k_stride, const __nv_bfloat16 *v, size_t v_stride, __nv_bfloat16 *out,
                 size_t out_stride, size_t q_tokens, size_t kv_tokens, float scale_log2,
                 bool vectorized) {
    typedef AttentionTiles<D> Tiles;
    extern __shared__ __align__(128) unsigned char shared[];
    __nv_bfloat16 *q_tile = (__nv_bfloat16 *)shared;
    __nv_bfloat16 *k_tile = (__nv_bfloat16 *)(shared + Tiles::kQBytes);
    __nv_bfloat16 *v_tile = (__nv_bfloat16 *)(shared + Tiles::kQBytes + Tiles::kKVBytes);
    float *scores = (float *)(shared + Tiles::kQBytes + 2 * Tiles::kKVBytes);
    __nv_bfloat16 *probs = (__nv_bfloat16 *)((unsigned char *)scores + Tiles::kScoresBytes);
    float *out_tile = (float *)((unsigned char *)probs + Tiles::kProbsBytes);

    const size_t q0 = (size_t)blockIdx.x * kBlockQ;
    const size_t column = (size_t)blockIdx.y * D;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;

    load_tile<D>(q_tile, Tiles::kPitchQKV, q, q_stride, column, q0, kBlockQ, q_tokens, vectorized);
    for (int index = threadIdx.x; index < kBlockQ * D; index += blockDim.x)
        out_tile[(index / D) * Tiles::kPitchOut + index % D] = 0.0f;

    // Softmax bookkeeping: lanes 2r and 2r+1 share row 16*warp + r, each owning 16 of the
    // tile's 32 columns (and half of the row's D output columns when rescaling).
    const int row = warp * 16 + lane / 2, half = lane & 1;
    float running_max = -INFINITY, running_sum = 0.0f;

    for (size_t kv0 = 0; kv0 < kv_tokens; kv0 += kBlockKV) {
        __syncthreads();  // every warp is done with the previous K/V tile
        load_tile<D>(k_tile, Tiles::kPitchQKV, k, k_stride, column, kv0, kBlockKV, kv_tokens,
                     vectorized);
        load_tile<D>(v_tile, Tiles::kPitchQKV, v, v_stride, column, kv0, kBlockKV, kv_tokens,
                     vectorized);
        __syncthreads();

        // S[16 rows of this warp, 32] = Q_w [16, D] . K^T [D, 32]
        for (int n = 0; n < kBlockKV / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> score;
            wmma::fill_fragment(score, 0.0f);
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, q_tile + warp * 16 * Tiles::kPitchQKV + kk * 16,
                                       Tiles::kPitchQKV);
                // K stored [kv, D] row-major is K^T [D, kv] column-major.
                wmma::load_matrix_sync(b, k_tile + n * 16 * Tiles::kPitchQKV + kk * 16,
                                       Tiles::kPitchQKV);
                wmma::mma_sync(score, a, b, score);
            }
            wmma::store_matrix_sync(scores + warp * 16 * Tiles::kPitchScores + n * 16, score,
                                    Tiles::kPitchScores, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax on this lane's 16 columns of its row (log2 domain: exp2f is cheaper).
        float *score_row = scores + row * Tiles::kPitchScores + half * 16;
        float tile_max = -INFINITY;
        for (int c = 0; c < 16; c++) {
            bool valid = kv0 + half * 16 + c < kv_tokens;
            float s = valid ? score_row[c] * scale_log2 : -INFINITY;
            score_row[c] = s;
            tile_max = fmaxf(tile_max, s);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        float new_max = fmaxf(running_max, tile_max);  // finite: key kv0 is always valid
        float alpha = exp2f(running_max - new_max);
        float tile_sum = 0.0f;
        __nv_bfloat16 *prob_row = probs + row * Tiles::kPitchProbs + half * 16;
        for (int c = 0; c < 16; c++) {
            float p = exp2f(score_row[c] - new_max);
            tile_sum += p;
            prob_row[c] = __float2bfloat16_rn(p);
        }
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
        running_sum = running_sum * alpha + tile_sum;
        running_max = new_max;
        float *out_row = out_tile + row * Tiles::kPitchOut + half * (D / 2);
        for (int c = 0; c < D / 2; c++) out_row[c] *= alpha;
        __syncwarp();

        // O_w [16, D] += P_w [16, 32] . V [32, D]
        for (int n = 0; n < D / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> accumulator;
            float *out_block = out_tile + warp * 16 * Tiles::kPitchOut + n * 16;
            wmma::load_matrix_sync(accumulator, out_block, Tiles::kPitchOut, wmma::mem_row_major);
            for (int kk = 0; kk < kBlockKV / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
                wmma::load_matrix_sync(a, probs + warp * 16 * Tiles::kPitchProbs + kk * 16,
                                       Tiles::kPitchProbs);
                wmma::load_matrix_sync(b, v_tile + kk * 16 * Tiles::kPitchQKV + n * 16,
                                       Tiles::kPitchQKV);
                wmma::mma_sync(accumulator, a, b, accumulator);
            }
            wmma::store_matrix_sync(out_block, accumulator, Tiles::kPitchOut,
                                    wmma::mem_row_major);
        }
        __syncwarp();
    }

    // Normalise by the row sums and write the block's valid rows.
    __shared__ float inverse_sum[kBlockQ];
    if (half == 0) inverse_sum[row] = 1.0f / running_sum;
    __syncthreads();
    for (int index = threadIdx.x; index < kBlockQ * D; index += blockDim.x) {
        int r = index / D, c = index % D;
        if (q0 + r < q_tokens)
            out[(q0 + r) * out_stride + column + c] =
                __float2bfloat16_rn(out_tile[r * Tiles::kPitchOut + c] * inverse_sum[r]);
    }
}

int attention_prepare(void) {
    if (check_cuda(cudaFuncSetAttribute(attention_kernel<64>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)AttentionTiles<64>::kBytes),
                   "attention: shared memory limit (head_dim 64)"))
        return -1;
    return check_cuda(cudaFuncSetAttribute(attention_kernel<128>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)AttentionTiles<128>::kBytes),
                      "attention: shared memory limit (head_dim 128)");
}

static bool aligned16(const void *pointer, size_t stride) {
    return ((uintptr_t)pointer & 15) == 0 && stride % 8 == 0;
}

extern "C" int schnell_cuda_attention(const schnell_bf16 *q, size_t q_stride,
                                      const schnell_bf16 *k, size_t k_stride,
                                      const schnell_bf16 *v, size_t v_stride,
                                      schnell_bf16 *out, size_t out_stride,
                                      size_t q_tokens, size_t kv_tokens, size_t heads,
                                      size_t head_dim, float scale) {
    if (require_ready("attention")) return -1;
    if (q_tokens == 0 || heads == 0) return 0;
    if (kv_tokens == 0) return fail("attention: no keys");
    if (head_dim != 64 && head_dim != 128)
        return fail("attention: head_dim %zu (supported: 64, 128)", head_dim);
    size_t width = heads * head_dim;
    if (q_stride < width || k_stride < width || v_stride < width || out_stride < width)
        return fail("attention: a stride is below heads * head_dim = %zu", width);
    size_t query_blocks = (q_tokens + kBlockQ - 1) / kBlockQ;
    if (query_blocks > 0x7fffffffu || heads > 65535)
        return fail("attention: %zu tokens x %zu heads is too large a grid", q_tokens, heads);
    // 16-byte loads when every row start (base + i * stride + h * D) is 16-byte aligned.
    bool vectorized = aligned16(q, q_stride) && aligned16(k, k_stride) && aligned16(v, v_stride);
    const float kLog2e = 1.4426950408889634f;
    dim3 grid((unsigned)query_blocks, (unsigned)heads);
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)q, *kb = (const __nv_bfloat16 *)k;
    const __nv_bfloat16 *vb = (const __nv_bfloat16 *)v;
    if (head_dim == 64)
        attention_kernel<64><<<grid, kThreads, AttentionTiles<64>::kBytes, g_cuda.stream>>>(
            qb, q_stride, kb, k_stride, vb, v_stride, (__nv_bfloat16 *)out, out_stride, q_tokens,
            kv_tokens, scale * kLog2e, vectorized);
    else
        attention_kernel<128><<<grid, kThreads, AttentionTiles<128>::kBytes, g_cuda.stream>>>(
            qb, q_stride, kb, k_stride, vb, v_stride, (__nv_bfloat16 *)out, out_stride, q_tokens,
            kv_tokens, scale * kLog2e, vectorized);
    return check_launch("attention");
}
