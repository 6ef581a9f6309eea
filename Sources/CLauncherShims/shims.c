#define _GNU_SOURCE
#include "CLauncherShims.h"
#include <fcntl.h>
#include <sys/signalfd.h>
#include <spawn.h>
#include <unistd.h>

int launcher_signal_descriptor(const sigset_t *mask) {
    return signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

int launcher_read_signal(int descriptor) {
    struct signalfd_siginfo info;
    if (read(descriptor, &info, sizeof info) != (ssize_t)sizeof info) return 0;
    return (int)info.ssi_signo;
}

int launcher_pipe(int descriptors[2]) {
    return pipe2(descriptors, O_CLOEXEC);
}

int launcher_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}

int launcher_spawn_change_directory(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}
