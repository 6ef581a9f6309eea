// What the registration cache's tests call to change mappings and the
// heap the way programs do, and Swift cannot call directly (variadic
// mremap; malloc.h, which the Glibc module does not show).
#define _GNU_SOURCE
#include "CFabricShims.h"
#include <malloc.h>
#include <sys/mman.h>

void *fabric_mremap(void *old_address, size_t old_size, size_t new_size, int flags, void *new_address) {
    return mremap(old_address, old_size, new_size, flags, new_address);
}

void fabric_malloc_thresholds(int mmap_threshold, int trim_threshold) {
    if (mmap_threshold > 0) mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    if (trim_threshold > 0) mallopt(M_TRIM_THRESHOLD, trim_threshold);
}

int fabric_malloc_trim(void) { return malloc_trim(0); }
