// Activation buffers, 64-byte aligned for the vector kernels.
//
// Ordinary 4 KB pages on purpose. On this project's benchmark VM, memory the guest has freed
// is handed back to the host after a few seconds, and the first touch of it costs about 0.4 s
// per GB in 4 KB pages but about 2.2 s per GB as transparent huge pages (MADV_HUGEPAGE): the
// huge-page advice made the first transformer step 0.4 s slower in a fresh process.
#include <stdlib.h>

#include "schnell_kernels.h"

enum { ALIGNMENT = 64 };

void *schnell_buffer_allocate(size_t bytes) {
    size_t rounded = (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    return aligned_alloc(ALIGNMENT, rounded ? rounded : ALIGNMENT);
}

void schnell_buffer_free(void *buffer) { free(buffer); }
