// Most of CFerrySys is inline in include/CFerrySys.h. The two functions here need <sys/vfs.h> and
// <linux/stat.h>, whose declarations would clash with Swift's Glibc module if the header included them.
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
