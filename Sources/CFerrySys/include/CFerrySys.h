#ifndef CFERRYSYS_H
#define CFERRYSYS_H
// Linux system calls that Swift's Glibc module does not export.
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
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
#endif
