// C helpers for what Swift cannot say directly: fault-guarded copies and
// atomics on registered memory (the software NIC's placement and remote
// atomics), a mapped-page probe for registration, accept4, and the futex
// lock the software NIC's structures sit behind, and the sleeps with
// nanosecond timeouts.
#ifndef CFABRIC_SHIMS_H
#define CFABRIC_SHIMS_H
#include <stdint.h>
#include <stddef.h>
#include <poll.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/uio.h>

/// accept4 (a GNU extension the Glibc module does not show).
int fabric_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

/// Guarded access to memory that its owner may have unmapped under a
/// registration. The software NIC copies small payloads and applies atomics
/// itself; a fault inside these calls is caught (SIGSEGV/SIGBUS) and
/// reported as a return value instead of killing the process. Faults
/// anywhere else go to the handler that was installed before ours.
/// Call fabric_guard_install() once before use; it returns 0 on success.
int fabric_guard_install(void);

/// Copies `length` bytes; returns 0, or -1 if a page of either side was
/// not mapped (part of the copy may have happened).
int fabric_guarded_copy(void *destination, const void *source, size_t length);

/// Guarded 8-byte atomics: return 0 and store the old value in *old, or -1
/// if the page is not mapped.
int fabric_guarded_fetch_add_u64(void *address, uint64_t add, uint64_t *old);
int fabric_guarded_compare_swap_u64(void *address, uint64_t compare, uint64_t swap, uint64_t *old);

/// Returns 1 when every page of [address, address+length) is mapped, 0 when
/// one is not (mincore fails with ENOMEM on an unmapped page).
int fabric_range_is_mapped(const void *address, size_t length);

/// How many fork()s this process went through (0 in the original process):
/// incremented in the child by a pthread_atfork handler that
/// fabric_fork_counter_install() sets up once. A C global, read by an inline
/// function, so that the check every poll makes is one load, not a call.
extern uint64_t fabric_fork_counter;
void fabric_fork_counter_install(void);
static inline uint64_t fabric_fork_generation(void) {
    return __atomic_load_n(&fabric_fork_counter, __ATOMIC_RELAXED);
}

/// The software NIC's transfer calls, made with syscall(2) rather than
/// through the libc wrappers: those are thread-cancellation points, which
/// costs every call two more function calls around the system call (we
/// never cancel threads). They return what the system call returns, with
/// errno set on failure, like the wrappers.
ssize_t fabric_recv(int fd, void *buffer, size_t length, int flags);
ssize_t fabric_send(int fd, const void *buffer, size_t length, int flags);
ssize_t fabric_readv(int fd, const struct iovec *vectors, int count);
ssize_t fabric_sendmsg(int fd, const struct msghdr *message, int flags);

/// A mutual-exclusion lock in one 32-bit word (0 free, 1 held, 2 held with
/// sleepers), sleeping in futex(2) when contended. It does what the
/// software NIC needs of a pthread mutex, uncontended in a fraction of its
/// instructions (no type dispatch, no owner bookkeeping): a poll takes
/// several such locks. Not recursive; the word must start at 0.
void fabric_lock(uint32_t *word);
/// Takes the lock if it is free; returns 1 if it did, 0 if not.
int fabric_try_lock(uint32_t *word);
void fabric_unlock(uint32_t *word);

/// Sleeps with a timeout in nanoseconds (the Glibc module shows neither
/// GNU extension): ppoll(2) without a signal mask, and epoll_pwait2(2)
/// without one, which fails with ENOSYS where glibc or the kernel (before
/// Linux 5.11) lacks it. A null timeout waits without limit. They return
/// what the calls return, with errno set on failure.
int fabric_ppoll(struct pollfd *descriptors, nfds_t count, const struct timespec *timeout);
int fabric_epoll_pwait2(int fd, struct epoll_event *events, int capacity, const struct timespec *timeout);

/// The calling thread's timer slack in nanoseconds (prctl(2)
/// PR_GET_TIMERSLACK; -1 on failure), and setting it (PR_SET_TIMERSLACK;
/// 0 on success). prctl is variadic, which Swift cannot call.
long fabric_timer_slack(void);
int fabric_set_timer_slack(unsigned long nanoseconds);

/// The process's memory monitor (memory_monitor.c): a userfaultfd read by
/// a thread of its own, publishing every unmapped, removed or moved range
/// of watched memory into a ring that readers follow with cursors.
typedef struct {
    uint64_t start, end;
} fabric_unmapped_range;
/// Starts the monitor once per process; returns 0, or the errno why it
/// cannot run (no userfaultfd in this kernel or container, not permitted).
/// `simulate_failure` makes a first start fail with ENOSYS (for tests).
int fabric_memory_monitor_start(int simulate_failure);
/// Watches the pages of [address, address+length): returns 0, or the errno
/// of UFFDIO_REGISTER (EINVAL: file-backed or unsupported memory, or not
/// all mapped; EBUSY: another userfaultfd watches part of it).
int fabric_memory_monitor_watch(const void *address, size_t length);
/// Events published so far, after any batch being read has been published:
/// every unmap that returned before this call is counted.
uint64_t fabric_memory_monitor_head(void);
/// Whether a reader that has seen `seen` events may have news: events
/// published since, or a batch being read. Inline (two loads) for the
/// paths that ask at every use: the cache's lookups, the software NIC's
/// checks of remote keys.
extern uint64_t fabric_memory_monitor_published;
extern int fabric_memory_monitor_busy;
static inline int fabric_memory_monitor_has_news(uint64_t seen) {
    return __atomic_load_n(&fabric_memory_monitor_busy, __ATOMIC_SEQ_CST)
        || __atomic_load_n(&fabric_memory_monitor_published, __ATOMIC_ACQUIRE) != seen;
}
/// Bumped by a follower that lost events and revoked every key it
/// followed (the software NIC's key table): registration caches that hand
/// out those keys forget everything when it moves.
extern uint64_t fabric_memory_monitor_lost_events;
static inline uint64_t fabric_memory_monitor_lost_generation(void) {
    return __atomic_load_n(&fabric_memory_monitor_lost_events, __ATOMIC_ACQUIRE);
}
void fabric_memory_monitor_announce_lost(void);
/// Copies up to `capacity` ranges published after *cursor and advances it.
/// Sets *overflowed (and moves the cursor to the head) when the ring
/// lapped the reader: then the reader must forget everything it cached.
size_t fabric_memory_monitor_read(uint64_t *cursor, fabric_unmapped_range *ranges, size_t capacity, int *overflowed);
/// For the registration cache's tests (memory_tests.c): mremap(2) with
/// its optional fifth argument (variadic in C, which Swift cannot call),
/// glibc's mallopt thresholds (0 leaves one as it is) and malloc_trim(0).
void *fabric_mremap(void *old_address, size_t old_size, size_t new_size, int flags, void *new_address);
void fabric_malloc_thresholds(int mmap_threshold, int trim_threshold);
int fabric_malloc_trim(void);
/// Events seen: unmaps, removes (MADV_DONTNEED/FREE), remaps, and page
/// faults (never expected).
void fabric_memory_monitor_counters(uint64_t counters[4]);

#endif
