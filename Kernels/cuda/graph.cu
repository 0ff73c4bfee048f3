// CUDA-graph capture and replay on the library's stream, plus the exported function table.
//
// A denoising step is captured once (all its kernels and cuBLASLt calls, which use the fixed
// workspace) and replayed each step, removing per-kernel launch overhead. Replay is valid while
// the captured pointers stay valid: arena offsets repeat when the arena is reset per step.
#include <new>

#include "internal.cuh"

struct schnell_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t executable;
};

extern "C" int schnell_cuda_graph_begin_capture(void) {
    if (require_ready("graph_begin_capture")) return -1;
    return check_cuda(cudaStreamBeginCapture(g_cuda.stream, cudaStreamCaptureModeThreadLocal),
                      "graph_begin_capture");
}

extern "C" int schnell_cuda_graph_end_capture(schnell_cuda_graph **graph) {
    if (require_ready("graph_end_capture")) return -1;
    if (graph == NULL) return fail("graph_end_capture: graph is NULL");
    *graph = NULL;
    cudaGraph_t recorded = NULL;
    if (check_cuda(cudaStreamEndCapture(g_cuda.stream, &recorded), "graph_end_capture"))
        return -1;
    cudaGraphExec_t executable = NULL;
    if (check_cuda(cudaGraphInstantiate(&executable, recorded, 0), "cudaGraphInstantiate")) {
        cudaGraphDestroy(recorded);
        return -1;
    }
    schnell_cuda_graph *result = new (std::nothrow) schnell_cuda_graph{recorded, executable};
    if (result == NULL) {
        cudaGraphExecDestroy(executable);
        cudaGraphDestroy(recorded);
        return fail("graph_end_capture: out of host memory");
    }
    *graph = result;
    return 0;
}

extern "C" int schnell_cuda_graph_launch(schnell_cuda_graph *graph) {
    if (require_ready("graph_launch")) return -1;
    if (graph == NULL) return fail("graph_launch: graph is NULL");
    return check_cuda(cudaGraphLaunch(graph->executable, g_cuda.stream), "graph_launch");
}

extern "C" void schnell_cuda_graph_destroy(schnell_cuda_graph *graph) {
    if (graph == NULL) return;
    cudaGraphExecDestroy(graph->executable);
    cudaGraphDestroy(graph->graph);
    delete graph;
}

static const schnell_cuda_api kApi = {
    SCHNELL_CUDA_API_VERSION,
    (uint32_t)sizeof(schnell_cuda_api),
    schnell_cuda_query_device,
    schnell_cuda_init,
    schnell_cuda_shutdown,
    schnell_cuda_last_error,
    schnell_cuda_synchronize,
    schnell_cuda_arena_alloc,
    schnell_cuda_arena_reset,
    schnell_cuda_arena_used_bytes,
    schnell_cuda_weight_upload,
    schnell_cuda_weight_free,
    schnell_cuda_copy_to_device,
    schnell_cuda_copy_to_host,
    schnell_cuda_f32_to_bf16,
    schnell_cuda_bf16_to_f32,
    schnell_cuda_linear,
    schnell_cuda_attention,
    schnell_cuda_layer_norm_modulate,
    schnell_cuda_group_norm,
    schnell_cuda_qk_norm_rope,
    schnell_cuda_gated_add,
    schnell_cuda_activation,
    schnell_cuda_conv3x3,
    schnell_cuda_upsample_nearest2x,
    schnell_cuda_graph_begin_capture,
    schnell_cuda_graph_end_capture,
    schnell_cuda_graph_launch,
    schnell_cuda_graph_destroy,
};

extern "C" __attribute__((visibility("default"))) const schnell_cuda_api *
schnell_cuda_get_api(void) {
    return &kApi;
}
