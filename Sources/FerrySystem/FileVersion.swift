import Glibc

/// Which file: the file system holding it (`st_dev`) and its inode (`st_ino`). A rename keeps it; a
/// file replaced by another of the same name (written elsewhere and renamed over it) changes it. The
/// watcher tells a watched folder from another one swapped in at its path by this.
public struct FileIdentity: Hashable, Sendable {
    /// `st_dev` of the file system holding the file.
    public var device: UInt64
    /// `st_ino`.
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

/// One version of one local file: its identity, size and modification time. What the watcher reports,
/// what the journal records (columns `device`, `inode`, `size`, `mtime_ns`) and what the engine checks
/// again before it uploads and before `after_send`: a file rewritten in place is a new version.
public struct FileVersion: Hashable, Sendable, CustomStringConvertible {
    /// `st_dev` of the file system holding the file.
    public var device: UInt64
    /// `st_ino`.
    public var inode: UInt64
    /// Size in bytes.
    public var size: Int64
    /// Modification time in nanoseconds since the epoch.
    public var mtimeNanoseconds: Int64

    /// Creates a version from its stat fields.
    public init(device: UInt64, inode: UInt64, size: Int64, mtimeNanoseconds: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.mtimeNanoseconds = mtimeNanoseconds
    }

    /// The version a `stat` (from stat, lstat, fstat or fstatat) describes. `package`: C types stay out
    /// of ferry's public signatures.
    package init(_ info: stat) {
        self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                  mtimeNanoseconds: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }

    /// Which file this is a version of.
    public var identity: FileIdentity { FileIdentity(device: device, inode: inode) }

    public var description: String { "dev \(device) ino \(inode) size \(size) mtime \(mtimeNanoseconds)ns" }
}
