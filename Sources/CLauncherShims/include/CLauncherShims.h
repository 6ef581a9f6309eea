// What the launcher needs of the system that the Glibc module does not
// show: signals read through a descriptor, and pipes made close-on-exec
// in one call (so that no rank started meanwhile inherits them).
#ifndef CLAUNCHER_SHIMS_H
#define CLAUNCHER_SHIMS_H
#include <signal.h>
#include <spawn.h>

/// signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC): a new descriptor that
/// reads the signals of `mask` (which the caller has blocked).
int launcher_signal_descriptor(const sigset_t *mask);
/// Reads one pending signal's number from such a descriptor; 0 when none.
int launcher_read_signal(int descriptor);
/// pipe2(descriptors, O_CLOEXEC).
int launcher_pipe(int descriptors[2]);

/// posix_spawn file actions glibc has as GNU extensions: close every
/// descriptor from `lowest` on; change the working directory.
int launcher_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);
int launcher_spawn_change_directory(posix_spawn_file_actions_t *actions, const char *path);

#endif
