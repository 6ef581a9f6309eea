#define _GNU_SOURCE
#include "CFabricShims.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

// MARK: - Sleeps with nanosecond timeouts (CFabricShims.h)

int fabric_ppoll(struct pollfd *descriptors, nfds_t count, const struct timespec *timeout) {
    return ppoll(descriptors, count, timeout, NULL);
}

int fabric_epoll_pwait2(int fd, struct epoll_event *events, int capacity, const struct timespec *timeout) {
#if __GLIBC_PREREQ(2, 35)
    return epoll_pwait2(fd, events, capacity, timeout, NULL);
#else
    (void)fd; (void)events; (void)capacity; (void)timeout;
    errno = ENOSYS;
    return -1;
#endif
}

long fabric_timer_slack(void) {
    return prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
}

int fabric_set_timer_slack(unsigned long nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0);
}

// MARK: - The futex lock (CFabricShims.h)
//
// The classic three-state futex mutex: a free lock is taken with one
// compare-and-swap; a contended one is marked 2 ("someone sleeps") before
// sleeping, so that the unlocker knows to wake one sleeper.

static void fabric_lock_contended(uint32_t *word) {
    uint32_t seen = __atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE);
    while (seen != 0) {
        // Sleeps only while the word is still 2; EAGAIN/EINTR just retry.
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        seen = __atomic_exchange_n(word, 2, __ATOMIC_ACQUIRE);
    }
}

void fabric_lock(uint32_t *word) {
    uint32_t expected = 0;
    if (__atomic_compare_exchange_n(word, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    fabric_lock_contended(word);
}

int fabric_try_lock(uint32_t *word) {
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(word, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

void fabric_unlock(uint32_t *word) {
    if (__atomic_exchange_n(word, 0, __ATOMIC_RELEASE) == 2) {
        syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}

// MARK: - Transfer calls without cancellation points (CFabricShims.h)

ssize_t fabric_recv(int fd, void *buffer, size_t length, int flags) {
    return syscall(SYS_recvfrom, fd, buffer, length, flags, NULL, NULL);
}

ssize_t fabric_send(int fd, const void *buffer, size_t length, int flags) {
    return syscall(SYS_sendto, fd, buffer, length, flags, NULL, 0);
}

ssize_t fabric_readv(int fd, const struct iovec *vectors, int count) {
    return syscall(SYS_readv, fd, vectors, count);
}

ssize_t fabric_sendmsg(int fd, const struct msghdr *message, int flags) {
    return syscall(SYS_sendmsg, fd, message, flags);
}

// MARK: - The fork counter (CFabricShims.h)

uint64_t fabric_fork_counter = 0;

static void fabric_fork_counter_child(void) {
    __atomic_fetch_add(&fabric_fork_counter, 1, __ATOMIC_RELAXED);
}

static pthread_once_t fabric_fork_counter_once = PTHREAD_ONCE_INIT;

static void fabric_fork_counter_register(void) {
    pthread_atfork(NULL, NULL, fabric_fork_counter_child);
}

void fabric_fork_counter_install(void) {
    pthread_once(&fabric_fork_counter_once, fabric_fork_counter_register);
}
