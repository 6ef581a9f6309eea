// C helpers for what Swift cannot say directly: sequentially consistent
// atomics on an address inside registered memory (the software NIC's remote
// atomics), and a mapped-page probe used before touching such an address.
#ifndef CFABRIC_SHIMS_H
#define CFABRIC_SHIMS_H
#include <stdint.h>
#include <stddef.h>

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

/// Returns 1 when every page of [address, address+length) is mapped, 0 when
/// one is not (mincore fails with ENOMEM on an unmapped page).
int fabric_range_is_mapped(const void *address, size_t length);

#endif
