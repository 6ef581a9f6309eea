// C helpers for what Swift cannot say directly: sequentially consistent
// atomics on an address inside registered memory (the software NIC's remote
// atomics), and a mapped-page probe used before touching such an address.
#ifndef CFABRIC_SHIMS_H
#define CFABRIC_SHIMS_H
#include <stdint.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

/// accept4 (a GNU extension the Glibc module does not show).
int fabric_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

/// Atomically adds `add` to the 8-byte word at `address`; returns the old value.
static inline uint64_t fabric_atomic_fetch_add_u64(void *address, uint64_t add) {
    return __atomic_fetch_add((uint64_t *)address, add, __ATOMIC_SEQ_CST);
}

/// Atomically replaces the word at `address` with `swap` if it equals
/// `compare`; returns the value found there either way.
static inline uint64_t fabric_atomic_compare_swap_u64(void *address, uint64_t compare, uint64_t swap) {
    uint64_t expected = compare;
    __atomic_compare_exchange_n((uint64_t *)address, &expected, swap, 0,
                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}

/// Atomic 8-byte load and store, for benchmarks and tests that watch memory
/// a peer writes into.
static inline uint64_t fabric_atomic_load_u64(const void *address) {
    return __atomic_load_n((const uint64_t *)address, __ATOMIC_ACQUIRE);
}
static inline void fabric_atomic_store_u64(void *address, uint64_t value) {
    __atomic_store_n((uint64_t *)address, value, __ATOMIC_RELEASE);
}

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

#endif
