// Activation buffers. Large ones sit on transparent huge pages (this kernel's THP mode is
// usually `madvise`): a fresh 2 MB page is one fault and one clear instead of 512 of each, which
// matters when a 256 MB VAE activation is first touched by a single thread.
#include <stdlib.h>
#include <sys/mman.h>

#include "schnell_kernels.h"

enum { HUGE_PAGE = 2 << 20 };

void *schnell_buffer_allocate(size_t bytes) {
    if (bytes < HUGE_PAGE) return malloc(bytes ? bytes : 1);
    size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *buffer = NULL;
    if (posix_memalign(&buffer, HUGE_PAGE, rounded) != 0) return NULL;
    madvise(buffer, rounded, MADV_HUGEPAGE);  // advice only: without THP it stays 4 KB pages
    return buffer;
}

void schnell_buffer_free(void *buffer) { free(buffer); }
