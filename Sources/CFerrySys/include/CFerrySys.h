#ifndef CFERRYSYS_H
#define CFERRYSYS_H
// Linux system calls and constants that Swift's Glibc module does not export.
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

// rename(2) that fails with EEXIST instead of replacing an existing `to`, atomically
// (renameat2 with RENAME_NOREPLACE, Linux 3.15+). A file system without it answers EINVAL;
// a kernel without it ENOSYS. Returns 0, or -1 with errno set.
static inline int ferry_rename_noreplace(const char *from, const char *to) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
#else
    (void)from; (void)to;
    errno = ENOSYS;
    return -1;
#endif
}

// openat2(2) (Linux 5.6+) with RESOLVE_NO_SYMLINKS, and RESOLVE_BENEATH when `beneath` is set:
// the kernel refuses (ELOOP) a symbolic link in any component of `path`, and (EXDEV) any escape
// from `dirfd`, so a parent folder swapped for a link can never redirect the open. glibc has no
// wrapper before 2.32 and the struct lives in <linux/openat2.h>, hence the raw syscall with the
// struct spelled out (the kernel's ABI: three u64s). ENOSYS on older kernels. Returns an fd or -1.
static inline int ferry_open_no_symlinks(int dirfd, const char *path, int flags, int beneath) {
#ifdef SYS_openat2
    struct { uint64_t flags; uint64_t mode; uint64_t resolve; } how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned int)flags;
    // 0x04 RESOLVE_NO_SYMLINKS (implies RESOLVE_NO_MAGICLINKS), 0x08 RESOLVE_BENEATH.
    how.resolve = 0x04 | (beneath ? 0x08 : 0);
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
#else
    (void)dirfd; (void)path; (void)flags; (void)beneath;
    errno = ENOSYS;
    return -1;
#endif
}

// fcntl(F_SETLEASE) and its arguments sit behind _GNU_SOURCE, which Swift's Glibc module lacks.
// Variadic fcntl gets a typed wrapper. Returns 0, or -1 with errno set.
static inline int ferry_set_lease(int fd, int type) {
    return fcntl(fd, 1024 /* F_SETLEASE */, type);
}
static const int ferry_lease_read = F_RDLCK;
static const int ferry_lease_unlock = F_UNLCK;

// The file status flags of `fd` (fcntl F_GETFL), typed for Swift. Returns the flags or -1.
static inline int ferry_status_flags(int fd) {
    return fcntl(fd, F_GETFL);
}

// Sets SIGIO's disposition to "ignore" unless someone installed a handler: a lease holder is sent
// SIGIO when another process opens the file for writing, and SIGIO's default action terminates the
// process. Returns 1 when SIGIO is ignored or handled afterwards, 0 if that could not be arranged.
static inline int ferry_ignore_sigio(void) {
    struct sigaction current;
    if (sigaction(SIGIO, NULL, &current) != 0) return 0;
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL) {
        struct sigaction ignore;
        memset(&ignore, 0, sizeof ignore);
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        if (sigaction(SIGIO, &ignore, NULL) != 0) return 0;
    }
    return 1;
}

// Whether SIGIO is currently ignored (for tests and `ferry doctor`). 1 ignored, 0 not, -1 error.
static inline int ferry_sigio_is_ignored(void) {
    struct sigaction current;
    if (sigaction(SIGIO, NULL, &current) != 0) return -1;
    return (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_IGN) ? 1 : 0;
}
// Bytes the allocator has handed out and not had back, over every arena (mallinfo2, glibc 2.33+; malloc.h
// is not in Swift's Glibc module): in-use chunks plus those mmapped on their own.
static inline size_t ferry_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

// Bytes the allocator holds free in its arenas (mallinfo2's fordblks): memory freed by the program that
// glibc keeps mapped for reuse, counted in RSS where its pages were touched.
static inline size_t ferry_heap_free(void) {
    return mallinfo2().fordblks;
}

// malloc_trim(0): gives every arena's whole free pages back to the kernel (MADV_DONTNEED inside the
// heap, a shorter top). Returns 1 if memory was released.
static inline int ferry_heap_trim(void) {
    return malloc_trim(0);
}

#endif

// statfs(2)'s f_type of an open descriptor (path NULL) or a path; -1 with errno on failure. Not
// inline: <sys/vfs.h>'s struct statfs would otherwise clash with Glibc's module in Swift.
long long ferry_statfs_type(int fd, const char *path);

// fstatat(2) that asks the file system for fresh attributes (statx with AT_STATX_FORCE_SYNC): NFS and
// FUSE otherwise answer from a client-side attribute cache, which can hide a remote writer's latest
// bytes for up to its timeout (NFS acregmax, FUSE attr_timeout). Local file systems ignore the flag.
// `flags` are AT_* (AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH with path "" for the descriptor itself). Fills
// the fields of *out the watcher reads (dev, ino, mode, nlink, size, mtim, ctim). 0, or -1 with errno
// (ENOSYS on kernels before 4.11: fall back to fstatat).
int ferry_stat_synced(int dirfd, const char *path, int flags, struct stat *out);
// Starts `path` with `argv` and `envp` (no shell, no PATH lookup) with stdin, stdout and stderr on the
// given descriptors and every other descriptor closed. The daemon's threads block signals and it
// ignores SIGPIPE; both are inherited through exec, so the child starts with an empty signal mask and
// every signal at its default action instead — otherwise a child's SIGTERM from its own timeout, or a
// broken pipe, would be silently ignored. 0 and *pid set, or an errno value (posix_spawn's convention).
// pipe2(fds, O_CLOEXEC), a GNU extension Swift's Glibc module hides: both ends close-on-exec from the
// start, so a child spawned meanwhile by another thread never inherits them. 0, or -1 with errno.
int ferry_pipe_cloexec(int fds[2]);
// write(2) to a pipe whose reader may be gone, without SIGPIPE: blocked in this thread for the call and
// a pending one taken back before the old mask returns, so the write fails with EPIPE whether or not the
// process ignores SIGPIPE (a library cannot know; a test runner does not). Returns write's result, errno set.
long ferry_write_nosigpipe(int fd, const void *buffer, unsigned long count);
int ferry_spawn_clean(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd, int stderr_fd, int *pid);
// AT_EMPTY_PATH, behind _GNU_SOURCE in glibc: with path "", ferry_stat_synced stats dirfd itself.
static const int ferry_at_empty_path = 0x1000;
