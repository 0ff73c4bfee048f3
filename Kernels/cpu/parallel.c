// A persistent thread pool for the kernels' loops. The calling thread works too; helpers
// wait on a condition variable between jobs, so an idle engine uses no CPU. Work is handed
// out in chunks through an atomic counter. Jobs never nest: a range function must not call
// schnell_parallel_for itself (nested calls run inline on the calling thread).
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dispatch.h"

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

const char *schnell_blas_core_name(void) { return openblas_get_corename(); }

enum { SCHNELL_MAX_THREADS = 256 };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static int pool_size = 0;    // helper threads started
static int pool_wanted = 0;  // threads (caller included) a job uses
static unsigned long job_generation = 0;
static int job_pending_helpers = 0;
static schnell_range_fn job_fn;
static void *job_context;
static size_t job_count, job_chunk;
static atomic_size_t job_next;
static _Thread_local int inside_job = 0;
static _Thread_local int worker_index = 0;  // 0 for the submitting thread, i + 1 for helper i

static void run_chunks(void) {
    for (;;) {
        size_t begin = atomic_fetch_add(&job_next, job_chunk);
        if (begin >= job_count) return;
        size_t end = begin + job_chunk < job_count ? begin + job_chunk : job_count;
        job_fn(job_context, begin, end);
    }
}

static void *helper_main(void *argument) {
    int index = (int)(intptr_t)argument;
    unsigned long seen = 0;
    inside_job = 1;
    worker_index = index + 1;
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        while (job_generation == seen) pthread_cond_wait(&pool_wake, &pool_lock);
        seen = job_generation;
        if (index + 1 >= pool_wanted) continue;
        pthread_mutex_unlock(&pool_lock);
        run_chunks();
        pthread_mutex_lock(&pool_lock);
        if (--job_pending_helpers == 0) pthread_cond_signal(&pool_done);
    }
    return NULL;
}

static int default_threads(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

void schnell_set_threads(int count) {
    if (count < 1) count = default_threads();
    if (count > SCHNELL_MAX_THREADS) count = SCHNELL_MAX_THREADS;
    pthread_mutex_lock(&submit_lock);
    pthread_mutex_lock(&pool_lock);
    while (pool_size < count - 1) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, helper_main, (void *)(intptr_t)pool_size) != 0) break;
        pthread_detach(thread);
        pool_size++;
    }
    pool_wanted = pool_size + 1 < count ? pool_size + 1 : count;
    pthread_mutex_unlock(&pool_lock);
    pthread_mutex_unlock(&submit_lock);
    openblas_set_num_threads(count);
}

int schnell_worker_index(void) { return worker_index; }

void schnell_blas_single_threaded(int single) {
    openblas_set_num_threads(single ? 1 : schnell_threads());
}

int schnell_threads(void) {
    if (pool_wanted == 0) schnell_set_threads(0);
    return pool_wanted;
}

void schnell_parallel_for(size_t count, size_t grain, schnell_range_fn fn, void *context) {
    if (count == 0) return;
    if (grain == 0) grain = 1;
    int threads = schnell_threads();
    if (threads <= 1 || count <= grain || inside_job) {
        fn(context, 0, count);
        return;
    }
    // Several chunks per thread balance uneven rows; never below the grain.
    size_t chunk = count / ((size_t)threads * 4);
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&submit_lock);
    pthread_mutex_lock(&pool_lock);
    job_fn = fn;
    job_context = context;
    job_count = count;
    job_chunk = chunk;
    atomic_store(&job_next, 0);
    job_pending_helpers = threads - 1;
    job_generation++;
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_lock);

    inside_job = 1;
    run_chunks();
    inside_job = 0;

    pthread_mutex_lock(&pool_lock);
    while (job_pending_helpers > 0) pthread_cond_wait(&pool_done, &pool_lock);
    pthread_mutex_unlock(&pool_lock);
    pthread_mutex_unlock(&submit_lock);
}

// ---- tiers ----

static const char *const tier_names[] = {"generic", "avx2", "avx512", "avx512bf16"};

const char *schnell_cpu_level_name(int level) {
    return level >= SCHNELL_CPU_GENERIC && level <= SCHNELL_CPU_AVX512_BF16 ? tier_names[level] : NULL;
}

int schnell_cpu_supported_level(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return SCHNELL_CPU_GENERIC;
    // F16C has no __builtin_cpu_supports name: CPUID leaf 1, ECX bit 29.
    unsigned int eax, ebx, ecx, edx;
    __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
    if (!(ecx & (1u << 29))) return SCHNELL_CPU_GENERIC;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq")) {
        return SCHNELL_CPU_AVX2;
    }
    return __builtin_cpu_supports("avx512bf16") ? SCHNELL_CPU_AVX512_BF16 : SCHNELL_CPU_AVX512;
}

int schnell_cpu_has_avx512_vnni(void) {
    __builtin_cpu_init();
    return schnell_cpu_supported_level() >= SCHNELL_CPU_AVX512 && __builtin_cpu_supports("avx512vnni");
}

static atomic_int tier_in_use = -1;
static char environment_error[160];

// The tier SCHNELL_CPU asks for, or the CPU's highest (with environment_error set when the
// variable names no tier or one the CPU lacks).
static int environment_tier(void) {
    int supported = schnell_cpu_supported_level();
    const char *wanted = getenv("SCHNELL_CPU");
    if (!wanted || !*wanted) return supported;
    for (int level = SCHNELL_CPU_GENERIC; level <= SCHNELL_CPU_AVX512_BF16; level++) {
        if (strcmp(wanted, tier_names[level]) != 0) continue;
        if (level <= supported) return level;
        snprintf(environment_error, sizeof environment_error,
                 "SCHNELL_CPU=%s: this CPU supports tiers up to %s", wanted, tier_names[supported]);
        return supported;
    }
    snprintf(environment_error, sizeof environment_error,
             "SCHNELL_CPU=%.40s is not a tier (use generic, avx2, avx512 or avx512bf16)", wanted);
    return supported;
}

static void initialize_tier(void) { atomic_store(&tier_in_use, environment_tier()); }

int schnell_cpu_level(void) {
    int known = atomic_load(&tier_in_use);
    if (known >= 0) return known;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, initialize_tier);
    return atomic_load(&tier_in_use);
}

const char *schnell_cpu_environment_error(void) {
    schnell_cpu_level();
    return environment_error[0] ? environment_error : NULL;
}

int schnell_set_cpu_level(int level) {
    schnell_cpu_level();
    if (level < SCHNELL_CPU_GENERIC || level > schnell_cpu_supported_level()) return -1;
    atomic_store(&tier_in_use, level);
    return 0;
}
