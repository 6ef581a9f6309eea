// Counts heap allocations of the whole process while enabled, so that a
// benchmark can show that its steady state allocates nothing. Linked only
// into the benchmarks (fabric-perf, mpibench): it replaces malloc and
// friends for those executables and forwards to glibc's own implementations.
#ifndef CALLOCATION_COUNTER_H
#define CALLOCATION_COUNTER_H
#include <stdint.h>

void allocation_counter_enable(int enabled);
uint64_t allocation_counter_count(void);
#endif
