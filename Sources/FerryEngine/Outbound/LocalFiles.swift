import FerrySystem
import FerryWatch
import Foundation
internal import CFerrySys
#if canImport(Glibc)
import Glibc
#endif

/// Local file operations of the pipeline. Every call retries EINTR; links are never followed.
enum LocalFiles {
    @discardableResult
    static func syscall(_ operation: String, path: String, _ body: () -> Int32) throws(SystemError) -> Int32 {
        try SystemError.retrying(operation, path: path, body)
    }

    /// An open, regular, non-link file whose version is checked against what was journaled.
    final class OpenFile {
        let descriptor: Int32
        let path: String

        /// Opens read-only with no symbolic link in any component of `path` (FerryWatch's LinkFreeFile):
        /// a parent folder swapped for a link cannot make ferry read or archive another tree's file.
        init(path: String) throws {
            self.path = path
            do {
                descriptor = try LinkFreeFile.openForReading(path)
            } catch {
                throw SystemError("open", path: path, errno: error.code == .symbolicLink ? .tooManySymbolicLinkLevels : (error.errno ?? .ioError))
            }
        }

        deinit { close(descriptor) }

        func version() throws -> (FileVersion, isRegular: Bool) {
            var st = stat()
            try LocalFiles.syscall("fstat", path: path) { fstat(descriptor, &st) }
            return (FileVersion(st), (st.st_mode & S_IFMT) == S_IFREG)
        }
    }

    /// The version at `path` without following a link, or nil if nothing is there.
    static func currentVersion(_ path: String) -> FileVersion? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return FileVersion(st)
    }

    static func makeDirectories(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw SystemError("mkdir", path: path, errno: (error as NSError).code == NSFileWriteNoPermissionError ? .permissionDenied : .ioError)
        }
    }

    /// Moves `source` to `destination` without ever overwriting: if the name is taken, ` (1)`, ` (2)`…
    /// is added before the extension. Works across file systems (copy, fsync, then unlink).
    @discardableResult
    static func moveNoReplace(_ source: String, to destination: String, rename: Bool = true) throws -> String {
        var candidate = destination
        var counter = 0
        var madeDirectories = false
        // One atomic call where the file system has it (renameat2 with RENAME_NOREPLACE); else link,
        // which never replaces either, then unlink. `rename: false` is for tests of the second way.
        var renameWorks = rename
        while true {
            if renameWorks {
                if ferry_rename_noreplace(source, candidate) == 0 { return candidate }
                if errno == EINVAL || errno == ENOSYS {
                    renameWorks = false
                    continue
                }
            } else if link(source, candidate) == 0 {
                try syscall("unlink", path: source) { unlink(source) }
                return candidate
            }
            let error = errno
            if error == EINTR { continue }
            // The folder is made only when missing: most moves go to a day's folder that exists.
            if error == ENOENT, !madeDirectories {
                madeDirectories = true
                try makeDirectories((destination as NSString).deletingLastPathComponent)
                continue
            }
            if error == EEXIST {
                counter += 1
                candidate = numbered(destination, counter)
                continue
            }
            if error == EXDEV || error == EPERM || error == ENOTSUP {
                return try copyNoReplace(source, to: destination)
            }
            throw SystemError(renameWorks ? "rename" : "link", path: candidate, code: error)
        }
    }

    static func numbered(_ path: String, _ counter: Int) -> String {
        let ns = path as NSString
        let ext = ns.pathExtension
        let stem = ext.isEmpty ? path : ns.deletingPathExtension
        return ext.isEmpty ? "\(stem) (\(counter))" : "\(stem) (\(counter)).\(ext)"
    }

    /// Across file systems: the bytes go to a temporary name beside the destination, are fsynced, and
    /// only then take the final name (never replacing one), so a full disk or a crash never leaves a
    /// truncated copy under the real name. The source goes last.
    private static func copyNoReplace(_ source: String, to destination: String) throws -> String {
        let input = try OpenFile(path: source)
        let folder = (destination as NSString).deletingLastPathComponent
        let temporary = (folder as NSString).appendingPathComponent(".ferry-copy-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        let output = try syscall("create", path: temporary) { open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o640) }
        var linked = false
        defer {
            close(output)
            if !linked { unlink(temporary) }
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try buffer.withUnsafeMutableBytes { raw in
                try syscall("read", path: source) { Int32(truncatingIfNeeded: read(input.descriptor, raw.baseAddress, raw.count)) }
            }
            if count == 0 { break }
            var written = 0
            while written < count {
                written += Int(try buffer.withUnsafeBytes { raw in
                    try syscall("write", path: temporary) { Int32(truncatingIfNeeded: write(output, raw.baseAddress! + written, Int(count) - written)) }
                })
            }
        }
        try syscall("fsync", path: temporary) { fsync(output) }
        var candidate = destination
        var counter = 0
        while true {
            if link(temporary, candidate) == 0 { break }
            let error = errno
            if error == EINTR { continue }
            guard error == EEXIST else { throw SystemError("link", path: candidate, code: error) }
            counter += 1
            candidate = numbered(destination, counter)
        }
        linked = true
        unlink(temporary)
        try syscall("unlink", path: source) { unlink(source) }
        return candidate
    }

    /// Moves the file at `path` to `claimPath` (a private name under `.ferry/`) if it is still exactly
    /// `expected`, and returns true once the claimed name holds that version. Acting on the claimed name
    /// afterwards cannot touch a newer version renamed into `path` meanwhile: if one slipped in between
    /// the check and the rename, it is put back and false is returned.
    static func claim(_ path: String, expected: FileVersion, as claimPath: String) throws -> Bool {
        guard currentVersion(path) == expected else { return false }
        try makeDirectories((claimPath as NSString).deletingLastPathComponent)
        var noReplaceWorks = true
        while (noReplaceWorks ? ferry_rename_noreplace(path, claimPath) : rename(path, claimPath)) != 0 {
            let error = errno
            if error == EINTR { continue }
            if error == ENOENT { return false }
            // FUSE (bindfs, sshfs) and some NFS servers refuse RENAME_NOREPLACE with EINVAL. The claim
            // name is ferry's own, private and unique, so a plain rename is as safe once it is free;
            // link-then-unlink is not: the unlink could remove a newer version renamed into `path`.
            if noReplaceWorks, error == EINVAL || error == ENOSYS, currentVersion(claimPath) == nil, access(claimPath, F_OK) != 0 {
                noReplaceWorks = false
                continue
            }
            throw SystemError("rename", path: claimPath, code: error)
        }
        if currentVersion(claimPath) == expected { return true }
        // Another version took the name between the check and the rename: give it its name back.
        if ferry_rename_noreplace(claimPath, path) != 0 {
            _ = try moveNoReplace(claimPath, to: path)
        }
        return false
    }

    /// Whether any process holds the file open for writing (FerryWatch's read-lease check). Nil when the
    /// kernel will not grant leases here (no CAP_LEASE for another user's file, or a file system without
    /// leases): the caller then relies on the version check alone, as the watcher does.
    static func isOpenForWriting(_ descriptor: Int32) -> Bool? {
        try? WriteActivity.isOpenForWriting(fileDescriptor: descriptor)
    }

    /// Makes a running watcher notice a file that arrived by hard link (which inotify reports only as
    /// IN_CREATE, not as a completed write): opening it for writing and closing it, without writing,
    /// raises IN_CLOSE_WRITE and changes neither its bytes nor its mtime.
    static func announce(_ path: String) {
        let fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd >= 0 { close(fd) }
    }

    /// Writes `text` to a new file next to `path` and renames it into place, fsynced.
    static func writeAtomically(_ text: String, to path: String) throws {
        let temporary = path + ".ferry-tmp"
        let fd = try syscall("create", path: temporary) { open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o640) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            written += Int(try bytes.withUnsafeBytes { raw in
                try syscall("write", path: temporary) { Int32(truncatingIfNeeded: write(fd, raw.baseAddress! + written, bytes.count - written)) }
            })
        }
        try syscall("fsync", path: temporary) { fsync(fd) }
        try syscall("rename", path: path) { rename(temporary, path) }
    }
}
