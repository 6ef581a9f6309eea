// The process's memory monitor: a userfaultfd that reports every unmap,
// MADV_DONTNEED/MADV_FREE and mremap of the ranges it watches, read by a
// thread of its own into a ring of unmapped ranges that any number of
// readers (registration caches, the software NIC) follow with cursors.
//
// Why in C: the thread that unmaps a watched range blocks in the kernel
// until this thread has read the event. So this thread must never wait for
// anything an unmapping thread may hold: no lock, and no free() (a free
// can trim the heap and unmap a watched range, which would wait for this
// very thread). The loop below uses only memory allocated before it starts
// and atomics; written in Swift, the runtime's retains and releases would
// be out of our hands.
#define _GNU_SOURCE
#include "CFabricShims.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_CAPACITY 4096  // a power of two
#define READ_BATCH 64

static struct {
    pthread_mutex_t start_lock;  // only start() takes it, never the thread
    int started;                 // 1 running, -errno could not start
    int fd;
    struct {
        _Atomic uint64_t start, end;
    } ring[RING_CAPACITY];
    _Atomic uint64_t unmaps, removes, remaps, faults;
} monitor = {.start_lock = PTHREAD_MUTEX_INITIALIZER};

// Events published so far, and a flag the thread sets before it reads
// events and clears once it has published them: a reader that finds it set
// waits, so that every unmap that has returned is in the ring before the
// reader looks. Globals (the header's inline check reads them), accessed
// with atomic builtins only.
uint64_t fabric_memory_monitor_published;
int fabric_memory_monitor_busy;
uint64_t fabric_memory_monitor_lost_events;

void fabric_memory_monitor_announce_lost(void) {
    __atomic_fetch_add(&fabric_memory_monitor_lost_events, 1, __ATOMIC_RELEASE);
}

// A fork() child has no monitor thread: a batch being read at the fork
// would leave the flag raised forever, and readers would wait on it.
static void clear_in_child(void) {
    __atomic_store_n(&fabric_memory_monitor_busy, 0, __ATOMIC_SEQ_CST);
}

static void publish(uint64_t start, uint64_t end) {
    uint64_t head = __atomic_load_n(&fabric_memory_monitor_published, __ATOMIC_RELAXED);
    // The previous count is visible before this slot (which held event
    // head - RING_CAPACITY) changes: a reader that checks the count after
    // copying sees that it was lapped (a seqlock's writer side).
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&monitor.ring[head % RING_CAPACITY].start, start, memory_order_relaxed);
    atomic_store_explicit(&monitor.ring[head % RING_CAPACITY].end, end, memory_order_relaxed);
    __atomic_store_n(&fabric_memory_monitor_published, head + 1, __ATOMIC_RELEASE);
}

static void *monitor_loop(void *unused) {
    (void)unused;
    struct uffd_msg messages[READ_BATCH];
    struct pollfd descriptor = {.fd = monitor.fd, .events = POLLIN};
    for (;;) {
        if (poll(&descriptor, 1, -1) < 0) continue;  // EINTR
        for (;;) {
            // Raised for one batch at a time, so that readers wait for the
            // batch in hand, not for a storm of unmaps to end.
            __atomic_store_n(&fabric_memory_monitor_busy, 1, __ATOMIC_SEQ_CST);
            ssize_t got = read(monitor.fd, messages, sizeof messages);
            if (got <= 0) {  // EAGAIN: all read
                __atomic_store_n(&fabric_memory_monitor_busy, 0, __ATOMIC_SEQ_CST);
                break;
            }
            size_t count = (size_t)got / sizeof messages[0];
            for (size_t i = 0; i < count; i++) {
                struct uffd_msg *message = &messages[i];
                switch (message->event) {
                case UFFD_EVENT_UNMAP:
                    atomic_fetch_add(&monitor.unmaps, 1);
                    publish(message->arg.remove.start, message->arg.remove.end);
                    break;
                case UFFD_EVENT_REMOVE:
                    atomic_fetch_add(&monitor.removes, 1);
                    publish(message->arg.remove.start, message->arg.remove.end);
                    break;
                case UFFD_EVENT_REMAP:
                    // The pages moved away from `from`: whatever was
                    // registered there is gone (the destination, if it was
                    // watched, reports its own unmap).
                    atomic_fetch_add(&monitor.remaps, 1);
                    publish(message->arg.remap.from, message->arg.remap.from + message->arg.remap.len);
                    break;
                case UFFD_EVENT_PAGEFAULT: {
                    // Never expected: ranges are registered for
                    // write-protection and no page is ever protected. If
                    // one arrives, lift the protection so the writer goes
                    // on, and count it.
                    atomic_fetch_add(&monitor.faults, 1);
                    struct uffdio_writeprotect lift = {
                        .range = {.start = message->arg.pagefault.address & ~(uint64_t)4095, .len = 4096}, .mode = 0};
                    ioctl(monitor.fd, UFFDIO_WRITEPROTECT, &lift);
                    break;
                }
                default:
                    break;
                }
            }
            __atomic_store_n(&fabric_memory_monitor_busy, 0, __ATOMIC_SEQ_CST);
        }
    }
    return NULL;
}

static int open_descriptor(void) {
    // Unprivileged processes may watch their own user-space faults only
    // (vm.unprivileged_userfaultfd=0); kernels before 5.11 do not know the
    // flag and say EINVAL, so try without it too.
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    struct uffdio_api api = {
        .api = UFFD_API, .features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP};
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

int fabric_memory_monitor_start(int simulate_failure) {
    pthread_mutex_lock(&monitor.start_lock);
    if (monitor.started == 0) {
        int fd = simulate_failure ? -ENOSYS : open_descriptor();
        if (fd < 0) {
            monitor.started = fd;
        } else {
            monitor.fd = fd;
            pthread_t thread;
            pthread_attr_t attributes;
            pthread_attr_init(&attributes);
            pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
            pthread_atfork(NULL, NULL, clear_in_child);
            int status = pthread_create(&thread, &attributes, monitor_loop, NULL);
            pthread_attr_destroy(&attributes);
            if (status != 0) {
                close(fd);
                monitor.started = -status;
            } else {
                pthread_setname_np(thread, "fabric-memmon");
                monitor.started = 1;
            }
        }
    }
    int result = monitor.started == 1 ? 0 : -monitor.started;
    pthread_mutex_unlock(&monitor.start_lock);
    return result;
}

int fabric_memory_monitor_watch(const void *address, size_t length) {
    if (monitor.started != 1) return ENOSYS;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t start = (uint64_t)(uintptr_t)address & ~(page - 1);
    uint64_t end = ((uint64_t)(uintptr_t)address + length + page - 1) & ~(page - 1);
    struct uffdio_register request = {.range = {.start = start, .len = end - start}, .mode = UFFDIO_REGISTER_MODE_WP};
    return ioctl(monitor.fd, UFFDIO_REGISTER, &request) == 0 ? 0 : errno;
}

uint64_t fabric_memory_monitor_head(void) {
    while (__atomic_load_n(&fabric_memory_monitor_busy, __ATOMIC_SEQ_CST)) sched_yield();
    return __atomic_load_n(&fabric_memory_monitor_published, __ATOMIC_ACQUIRE);
}

size_t fabric_memory_monitor_read(uint64_t *cursor, fabric_unmapped_range *ranges, size_t capacity, int *overflowed) {
    uint64_t first = *cursor;
    uint64_t head = fabric_memory_monitor_head();
    *overflowed = 0;
    if (head == first) return 0;
    if (head - first >= RING_CAPACITY) {
        *overflowed = 1;
        *cursor = head;
        return 0;
    }
    size_t count = (size_t)(head - first) < capacity ? (size_t)(head - first) : capacity;
    for (size_t i = 0; i < count; i++) {
        ranges[i].start = atomic_load_explicit(&monitor.ring[(first + i) % RING_CAPACITY].start, memory_order_relaxed);
        ranges[i].end = atomic_load_explicit(&monitor.ring[(first + i) % RING_CAPACITY].end, memory_order_relaxed);
    }
    // The thread may have lapped us while we copied: then what we read may
    // be newer events, so treat it as an overflow (the caller forgets all).
    // The copies above happen before the count is read again (a
    // seqlock's reader side).
    atomic_thread_fence(memory_order_acquire);
    uint64_t now = __atomic_load_n(&fabric_memory_monitor_published, __ATOMIC_ACQUIRE);
    if (now - first >= RING_CAPACITY) {
        *overflowed = 1;
        *cursor = now;
        return 0;
    }
    *cursor = first + count;
    return count;
}

void fabric_memory_monitor_counters(uint64_t counters[4]) {
    counters[0] = atomic_load(&monitor.unmaps);
    counters[1] = atomic_load(&monitor.removes);
    counters[2] = atomic_load(&monitor.remaps);
    counters[3] = atomic_load(&monitor.faults);
}

