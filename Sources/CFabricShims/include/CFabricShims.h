// C helpers for what Swift cannot say directly: fault-guarded copies and
// atomics on registered memory (the software NIC's placement and remote
// atomics), a mapped-page probe for registration, and accept4.
#ifndef CFABRIC_SHIMS_H
#define CFABRIC_SHIMS_H
#include <stdint.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

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

#endif
