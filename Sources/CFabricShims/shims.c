#define _GNU_SOURCE
#include "CFabricShims.h"
#include <sys/mman.h>
#include <unistd.h>
#include <errno.h>
#include <sys/socket.h>

int fabric_range_is_mapped(const void *address, size_t length) {
    // Asked each time: registration is not a hot path, and a cached static
    // would be a data race between threads registering at once.
    const long page_size = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)address & ~((uintptr_t)page_size - 1);
    uintptr_t end = (uintptr_t)address + (length ? length : 1);
    // One vector byte per page; a small fixed buffer walked in steps keeps
    // this allocation-free for any length.
    unsigned char vec[64];
    while (start < end) {
        size_t pages = (end - start + (uintptr_t)page_size - 1) / (uintptr_t)page_size;
        if (pages > sizeof(vec)) pages = sizeof(vec);
        if (mincore((void *)start, pages * (size_t)page_size, vec) != 0) {
            return 0;
        }
        start += pages * (uintptr_t)page_size;
    }
    return 1;
}

int fabric_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}
