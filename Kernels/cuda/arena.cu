// Device context: availability query, init/shutdown, errors, the per-step arena and copies.
//
// Memory model: weights are uploaded once with their own allocations; everything a denoising
// step needs comes from one arena allocated at init and reset between steps, so a step makes
// no cudaMalloc calls and its pointers repeat (which is what lets a CUDA graph replay it).
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.cuh"

schnell_cuda_context g_cuda = {};

static thread_local char g_last_error[512] = "";

static const size_t kBlasWorkspaceBytes = 32u << 20;
static const size_t kConvColumnsBytes = 64u << 20;
static const size_t kArenaAlignment = 256;

int fail(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(g_last_error, sizeof g_last_error, format, arguments);
    va_end(arguments);
    return -1;
}

int check_cuda(cudaError_t status, const char *what) {
    if (status == cudaSuccess) return 0;
    return fail("%s: %s", what, cudaGetErrorString(status));
}

int check_launch(const char *kernel_name) {
    return check_cuda(cudaGetLastError(), kernel_name);
}

int require_ready(const char *op_name) {
    if (g_cuda.ready) return 0;
    return fail("%s: the CUDA context is not initialised (call init first)", op_name);
}

extern "C" const char *schnell_cuda_last_error(void) { return g_last_error; }

static void copy_text(char *destination, size_t capacity, const char *text) {
    snprintf(destination, capacity, "%s", text);
}

extern "C" int schnell_cuda_query_device(int device_index, schnell_cuda_device_info *info) {
    if (info == NULL) return fail("query_device: info is NULL");
    memset(info, 0, sizeof *info);
    // cudart reports a missing driver as "driver version is insufficient"; say plainly instead.
    void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (driver == NULL) {
        copy_text(info->error, sizeof info->error,
                  "no NVIDIA driver: libcuda.so.1 cannot be loaded");
        return fail("%s", info->error);
    }
    dlclose(driver);
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        snprintf(info->error, sizeof info->error, "cudaGetDeviceCount: %s",
                 cudaGetErrorString(status));
        return fail("%s", info->error);
    }
    info->device_count = count;
    if (device_index < 0 || device_index >= count) {
        snprintf(info->error, sizeof info->error, "no CUDA device %d (the driver sees %d)",
                 device_index, count);
        return fail("%s", info->error);
    }
    cudaDeviceProp properties;
    status = cudaGetDeviceProperties(&properties, device_index);
    if (status != cudaSuccess) {
        snprintf(info->error, sizeof info->error, "cudaGetDeviceProperties: %s",
                 cudaGetErrorString(status));
        return fail("%s", info->error);
    }
    copy_text(info->name, sizeof info->name, properties.name);
    info->compute_major = properties.major;
    info->compute_minor = properties.minor;
    info->multiprocessor_count = properties.multiProcessorCount;
    info->total_bytes = properties.totalGlobalMem;
    int previous = 0;
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(device_index) == cudaSuccess &&
        cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
        info->free_bytes = free_bytes;
        info->total_bytes = total_bytes;
    }
    cudaSetDevice(previous);
    if (properties.major < 8) {
        snprintf(info->error, sizeof info->error,
                 "%s has compute capability %d.%d; bf16 kernels need 8.0 or newer",
                 properties.name, properties.major, properties.minor);
        return fail("%s", info->error);
    }
    return 0;
}

extern "C" void schnell_cuda_shutdown(void) {
    if (!g_cuda.ready) return;
    cudaSetDevice(g_cuda.device);
    cudaStreamSynchronize(g_cuda.stream);
    cudaFree(g_cuda.conv_columns);
    cudaFree(g_cuda.arena);
    cudaFree(g_cuda.blas_workspace);
    cublasLtDestroy(g_cuda.blas);
    cudaStreamDestroy(g_cuda.stream);
    g_cuda = schnell_cuda_context{};
}

extern "C" int schnell_cuda_init(int device_index, size_t arena_bytes) {
    schnell_cuda_shutdown();
    schnell_cuda_device_info info;
    if (schnell_cuda_query_device(device_index, &info) != 0) return -1;
    schnell_cuda_context context = {};
    context.device = device_index;
    if (check_cuda(cudaSetDevice(device_index), "cudaSetDevice")) return -1;
    if (check_cuda(cudaStreamCreateWithFlags(&context.stream, cudaStreamNonBlocking),
                   "cudaStreamCreate")) return -1;
    g_cuda = context;  // from here on, shutdown() releases whatever was made
    g_cuda.ready = true;
    if (cublasLtCreate(&g_cuda.blas) != CUBLAS_STATUS_SUCCESS) {
        schnell_cuda_shutdown();
        return fail("cublasLtCreate failed");
    }
    g_cuda.blas_workspace_bytes = kBlasWorkspaceBytes;
    g_cuda.conv_columns_bytes = kConvColumnsBytes;
    g_cuda.arena_bytes = arena_bytes;
    if (check_cuda(cudaMalloc(&g_cuda.blas_workspace, kBlasWorkspaceBytes), "cuBLASLt workspace") ||
        check_cuda(cudaMalloc((void **)&g_cuda.conv_columns, kConvColumnsBytes), "conv scratch") ||
        check_cuda(cudaMalloc((void **)&g_cuda.arena, arena_bytes > 0 ? arena_bytes : 1),
                   "arena") ||
        attention_prepare()) {
        char reason[512];
        copy_text(reason, sizeof reason, g_last_error);
        schnell_cuda_shutdown();
        return fail("init(device %d, arena %zu bytes): %s", device_index, arena_bytes, reason);
    }
    return 0;
}

extern "C" int schnell_cuda_synchronize(void) {
    if (require_ready("synchronize")) return -1;
    return check_cuda(cudaStreamSynchronize(g_cuda.stream), "synchronize");
}

extern "C" void *schnell_cuda_arena_alloc(size_t bytes) {
    if (require_ready("arena_alloc")) return NULL;
    size_t start = (g_cuda.arena_offset + kArenaAlignment - 1) & ~(kArenaAlignment - 1);
    if (start > g_cuda.arena_bytes || bytes > g_cuda.arena_bytes - start) {
        fail("arena_alloc: %zu bytes do not fit (%zu of %zu in use)", bytes, g_cuda.arena_offset,
             g_cuda.arena_bytes);
        return NULL;
    }
    g_cuda.arena_offset = start + bytes;
    return g_cuda.arena + start;
}

extern "C" void schnell_cuda_arena_reset(void) { g_cuda.arena_offset = 0; }

extern "C" size_t schnell_cuda_arena_used_bytes(void) { return g_cuda.arena_offset; }

extern "C" void *schnell_cuda_weight_upload(const void *host, size_t bytes) {
    if (require_ready("weight_upload")) return NULL;
    void *device = NULL;
    if (check_cuda(cudaMalloc(&device, bytes), "weight_upload: cudaMalloc")) return NULL;
    if (check_cuda(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice),
                   "weight_upload: copy")) {
        cudaFree(device);
        return NULL;
    }
    return device;
}

extern "C" int schnell_cuda_weight_free(void *device) {
    if (require_ready("weight_free")) return -1;
    return check_cuda(cudaFree(device), "weight_free");
}

extern "C" int schnell_cuda_copy_to_device(void *device, const void *host, size_t bytes) {
    if (require_ready("copy_to_device")) return -1;
    return check_cuda(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, g_cuda.stream),
                      "copy_to_device");
}

extern "C" int schnell_cuda_copy_to_host(void *host, const void *device, size_t bytes) {
    if (require_ready("copy_to_host")) return -1;
    if (check_cuda(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, g_cuda.stream),
                   "copy_to_host")) return -1;
    return check_cuda(cudaStreamSynchronize(g_cuda.stream), "copy_to_host: synchronize");
}
