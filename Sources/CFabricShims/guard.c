// UNSAFE AREA: fault-guarded memory access for the software NIC.
//
// A registered region's owner may unmap it (misuse, but it must not crash
// anyone). Socket calls into such memory fail with EFAULT by themselves; the
// few places where the NIC touches registered memory with the CPU (copying a
// small payload that arrived together with its header, remote atomics) run
// inside a guard: a thread-local jump buffer is armed, and the SIGSEGV/SIGBUS
// handler jumps back to it when the fault happened inside the guard. Any
// other fault is passed to the previously installed handler (or the default
// action), so the process still crashes on its own bugs.
#define _GNU_SOURCE
#include "CFabricShims.h"
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <pthread.h>

static __thread sigjmp_buf guard_jump;
static __thread volatile sig_atomic_t guard_armed;
static struct sigaction previous_segv;
static struct sigaction previous_bus;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_status = -1;

static void forward(int signal_number, siginfo_t *info, void *context, const struct sigaction *previous) {
    if (previous->sa_flags & SA_SIGINFO) {
        if (previous->sa_sigaction) { previous->sa_sigaction(signal_number, info, context); return; }
    } else if (previous->sa_handler == SIG_IGN) {
        return;
    } else if (previous->sa_handler != SIG_DFL && previous->sa_handler) {
        previous->sa_handler(signal_number);
        return;
    }
    // Default action: restore it and return; the faulting instruction runs
    // again and the default action (a core dump) takes place.
    signal(signal_number, SIG_DFL);
}

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    if (guard_armed) {
        guard_armed = 0;
        siglongjmp(guard_jump, 1);
    }
    forward(signal_number, info, context, signal_number == SIGSEGV ? &previous_segv : &previous_bus);
}

static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_fault;
    // SA_NODEFER: the signal is not blocked while the handler runs, so the
    // jump out of it needs no signal-mask restore (sigsetjmp with savemask 0
    // stays a few nanoseconds on the fast path).
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &previous_segv) != 0) return;
    if (sigaction(SIGBUS, &action, &previous_bus) != 0) return;
    install_status = 0;
}

int fabric_guard_install(void) {
    pthread_once(&install_once, install);
    return install_status;
}

int fabric_guarded_copy(void *destination, const void *source, size_t length) {
    if (sigsetjmp(guard_jump, 0) != 0) {
        return -1;
    }
    guard_armed = 1;
    memcpy(destination, source, length);
    guard_armed = 0;
    return 0;
}

int fabric_guarded_fetch_add_u64(void *address, uint64_t add, uint64_t *old) {
    if (sigsetjmp(guard_jump, 0) != 0) {
        return -1;
    }
    guard_armed = 1;
    uint64_t value = __atomic_fetch_add((uint64_t *)address, add, __ATOMIC_SEQ_CST);
    guard_armed = 0;
    *old = value;
    return 0;
}

int fabric_guarded_compare_swap_u64(void *address, uint64_t compare, uint64_t swap, uint64_t *old) {
    if (sigsetjmp(guard_jump, 0) != 0) {
        return -1;
    }
    guard_armed = 1;
    uint64_t expected = compare;
    __atomic_compare_exchange_n((uint64_t *)address, &expected, swap, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    guard_armed = 0;
    *old = expected;
    return 0;
}
