// Activation buffers, 64-byte aligned for the vector kernels.
//
// Ordinary 4 KB pages on purpose. On this project's benchmark VM, memory the guest has freed
// is handed back to the host after a few seconds, and the first touch of it costs about 0.4 s
// per GB in 4 KB pages but about 2.2 s per GB as transparent huge pages (MADV_HUGEPAGE): the
// huge-page advice made the first transformer step 0.4 s slower in a fresh process.
#include <pthread.h>
#include <stdlib.h>

#include "dispatch.h"

enum { ALIGNMENT = 64 };

void *schnell_buffer_allocate(size_t bytes) {
    size_t rounded = (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    return aligned_alloc(ALIGNMENT, rounded ? rounded : ALIGNMENT);
}

void schnell_buffer_free(void *buffer) { free(buffer); }

void *schnell_scratch_take(schnell_scratch *scratch, size_t bytes, int *shared) {
    *shared = pthread_mutex_trylock(&scratch->lock) == 0;
    if (!*shared) return schnell_buffer_allocate(bytes);
    if (scratch->capacity < bytes) {
        free(scratch->buffer);
        scratch->buffer = schnell_buffer_allocate(bytes);
        scratch->capacity = scratch->buffer ? bytes : 0;
    }
    if (!scratch->buffer) {
        pthread_mutex_unlock(&scratch->lock);
        *shared = 0;
    }
    return scratch->buffer;
}

void schnell_scratch_release(schnell_scratch *scratch, void *buffer, int shared) {
    if (shared) pthread_mutex_unlock(&scratch->lock);
    else free(buffer);
}
