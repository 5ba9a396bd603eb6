// Most of CFerrySys is inline in include/CFerrySys.h. The functions here need <sys/vfs.h>,
// <linux/stat.h> or <spawn.h>'s GNU extensions, whose declarations would clash with Swift's Glibc
// module if the header included them.
// posix_spawn_file_actions_addclosefrom_np (glibc 2.34) is a GNU extension.
#define _GNU_SOURCE
#include "CFerrySys.h"

#include <sys/vfs.h>
long long ferry_statfs_type(int fd, const char *path) {
    struct statfs info;
    int rc = path ? statfs(path, &info) : fstatfs(fd, &info);
    return rc == 0 ? (long long)(unsigned long)info.f_type : -1;
}

#include <linux/stat.h>
#include <sys/sysmacros.h>
int ferry_stat_synced(int dirfd, const char *path, int flags, struct stat *out) {
#ifdef SYS_statx
    struct statx x;
    memset(&x, 0, sizeof x);
    // 0x2000 AT_STATX_FORCE_SYNC; glibc hides it behind _GNU_SOURCE.
    int rc = (int)syscall(SYS_statx, dirfd, path, flags | 0x2000, STATX_BASIC_STATS, &x);
    if (rc != 0) return rc;
    memset(out, 0, sizeof *out);
    out->st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
    out->st_ino = x.stx_ino;
    out->st_mode = x.stx_mode;
    out->st_nlink = x.stx_nlink;
    out->st_size = (off_t)x.stx_size;
    out->st_mtim.tv_sec = x.stx_mtime.tv_sec;
    out->st_mtim.tv_nsec = x.stx_mtime.tv_nsec;
    out->st_ctim.tv_sec = x.stx_ctime.tv_sec;
    out->st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
    return 0;
#else
    (void)dirfd; (void)path; (void)flags; (void)out;
    errno = ENOSYS;
    return -1;
#endif
}

#include <spawn.h>
int ferry_spawn_clean(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd, int stderr_fd, int *pid) {
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
    int rc = posix_spawnattr_init(&attributes);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) { posix_spawnattr_destroy(&attributes); return rc; }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    // SIGKILL and SIGSTOP cannot be changed; glibc skips them in the default set.
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    pid_t child = 0;
    rc = posix_spawn(&child, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (rc == 0) *pid = (int)child;
    return rc;
}

int ferry_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
long ferry_write_nosigpipe(int fd, const void *buffer, unsigned long count) {
    sigset_t pipe_only, previous;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
    ssize_t written = write(fd, buffer, count);
    int saved = errno;
    if (written < 0 && saved == EPIPE && !sigismember(&previous, SIGPIPE)) {
        // The SIGPIPE raised for this write is pending on this thread: take it before unblocking.
        struct timespec now = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &now) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    errno = saved;
    return (long)written;
}
