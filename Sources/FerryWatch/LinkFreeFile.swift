import FerrySystem
internal import Glibc

/// Opens a reported file the way the watcher itself reaches it: no symbolic link in any component of
/// the path, so a parent folder swapped for a link between the report and the upload cannot make the
/// engine read (or archive) another tree's file.
///
/// The engine's outbound sequence: `openForReading(report.path)`, then `FileVersion(fileDescriptor:)`
/// must equal `report.version`, then `WriteActivity.isOpenForWriting(fileDescriptor:)` must be false;
/// upload from that descriptor, and repeat the last two checks before `after_send`.
public enum LinkFreeFile {
    /// Opens absolute `path` `O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, refusing a symbolic link
    /// in any component. O_NONBLOCK: a file another process holds a write lease on fails at once
    /// (EWOULDBLOCK) instead of waiting for the lease break. The caller closes the descriptor.
    ///
    /// - Throws: `WatchError` with code `.symbolicLink` when a component is a link, `.systemCall`
    ///   (with errno) for anything else, such as ENOENT.
    public static func openForReading(_ path: String) throws(WatchError) -> Int32 {
        guard path.utf8.first == UInt8(ascii: "/") else {
            throw WatchError(SystemError("open", path: path, errno: .invalidArgument, advice: "the path must be absolute"))
        }
        do {
            return try SafeOpen.below(AT_FDCWD, path, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        } catch where error.errno == .tooManySymbolicLinkLevels || (error.errno == .notDirectory && SafeOpen.firstSymbolicLink(in: path) != nil) {
            let link = SafeOpen.firstSymbolicLink(in: path).map { " (\($0))" } ?? ""
            throw WatchError(code: .symbolicLink, cause: error.cause, message:
                "refusing to open \(path): a component of its path is a symbolic link\(link), and ferry never follows links")
        }
    }
}

extension LinkFreeFile {
    /// The first component of absolute `path` (the last one included) that is a symbolic link, or nil:
    /// what a refusal names (`ferry explain`, `ferry retry`).
    public static func firstSymbolicLink(in path: String) -> String? { SafeOpen.firstSymbolicLink(in: path) }
}

extension FileVersion {
    /// The version of the file open as `fileDescriptor`, to compare with a report's version. The
    /// attributes are asked of the file system itself (statx with AT_STATX_FORCE_SYNC), not of an NFS
    /// or FUSE attribute cache, so a remote writer's latest size and mtime show here before sending.
    public init(fileDescriptor: Int32) throws(WatchError) {
        self = FileStatus(try FileStatus.freshInfo("", in: fileDescriptor)).version
    }
}
