// CFerrySys is header-only (include/CFerrySys.h); SwiftPM wants one source file in a C target.
#include "CFerrySys.h"

#include <sys/vfs.h>
long long ferry_statfs_type(int fd, const char *path) {
    struct statfs info;
    int rc = path ? statfs(path, &info) : fstatfs(fd, &info);
    return rc == 0 ? (long long)(unsigned long)info.f_type : -1;
}
