internal import Glibc

/// What lstat says about a path, reduced to what the watcher decides on.
struct FileStatus {
    enum Kind: Equatable {
        case regular, directory, symbolicLink
        /// fifo, socket or device, named for the debug log.
        case other(String)
    }

    var kind: Kind
    var version: FileVersion

    init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        case S_IFIFO: kind = .other("fifo")
        case S_IFSOCK: kind = .other("socket")
        case S_IFCHR: kind = .other("character device")
        case S_IFBLK: kind = .other("block device")
        default: kind = .other("special file")
        }
        version = FileVersion(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                              mtimeNanoseconds: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }

    /// lstat: never follows a symbolic link. nil when the path is gone (or unreadable).
    static func of(_ path: String) -> FileStatus? {
        var info = stat()
        guard (try? Syscall.retrying("lstat", path: path) { lstat(path, &info) }) != nil else { return nil }
        return FileStatus(info)
    }

    /// fstatat with AT_SYMLINK_NOFOLLOW relative to an open folder, as a scan does for each entry.
    static func of(_ name: String, in folder: Int32) -> FileStatus? {
        var info = stat()
        guard (try? Syscall.retrying("fstatat", path: name) { fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) }) != nil
        else { return nil }
        return FileStatus(info)
    }
}

/// One folder's entries, read with O_NOFOLLOW so a folder replaced by a link is not entered.
struct FolderListing {
    enum EntryType { case regular, directory, symbolicLink, unknown, other }

    /// Lists `path`, calling `body` with the open folder descriptor, each name and its d_type.
    /// Throws the open error (ENOENT, ENOTDIR, ELOOP when it became a link, EACCES).
    static func read(_ path: String, _ body: (Int32, String, EntryType) -> Void) throws(WatchError) {
        let descriptor = try Syscall.retrying("open", path: path) {
            open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        guard let folder = fdopendir(descriptor) else {
            let code = Glibc.errno
            close(descriptor)
            throw Syscall.failure("fdopendir", path: path, errno: code)
        }
        defer { closedir(folder) }
        while let entry = readdir(folder) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            let type: EntryType
            switch Int32(entry.pointee.d_type) {
            case Int32(DT_REG): type = .regular
            case Int32(DT_DIR): type = .directory
            case Int32(DT_LNK): type = .symbolicLink
            case Int32(DT_UNKNOWN): type = .unknown
            default: type = .other
            }
            body(descriptor, name, type)
        }
    }
}
