import FerrySystem
internal import CFerrySys
internal import Glibc

/// Asks the kernel whether any process has a file open for writing.
///
/// stat stability alone cannot tell a finished file from one whose writer paused longer than the settle
/// time; the kernel can. A read lease (`fcntl(F_SETLEASE, F_RDLCK)`) is refused with EAGAIN while any
/// open file description of the inode is writable, in any process, whenever it was opened. ferry takes
/// the lease and releases it at once: it only asks the question, it never keeps the lease.
///
/// Caveats, handled here:
/// - While a lease is held, a process opening the file for writing makes the kernel send SIGIO to the
///   holder, and SIGIO's default action terminates the process. The first check therefore sets SIGIO to
///   "ignore" for the whole process (unless a handler is already installed), and the lease is released
///   within microseconds, so such a writer's `open` waits no longer than that.
/// - Leases on files the process does not own need CAP_LEASE (EACCES otherwise), and some file systems
///   refuse leases (EINVAL; also when `fs.leases-enable` is 0). Both throw `WatchError` with code
///   `.leasesUnavailable`; the watcher then falls back to stat stability and says so.
/// - The answer is a snapshot: a writer may open the file right after. Callers check again at each
///   step that matters (before upload, before after_send) and compare the version they expect.
public enum WriteActivity {
    /// Whether any process (this one included) has the file behind `fileDescriptor` open for writing.
    ///
    /// - Parameter fileDescriptor: an fd of a regular file opened `O_RDONLY` (for example with
    ///   `O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`). A writable fd would count as a writer
    ///   itself; it is refused with `.notReadOnly`. The fd is not closed.
    /// - Returns: true while some open file description of the file is writable, or another process
    ///   holds a lease on it (a write lease means it is about to write); false when nobody does.
    /// - Throws: `WatchError` with code `.leasesUnavailable` when the kernel refuses leases for this
    ///   file (no CAP_LEASE on a file owned by another user, or a file system without leases): fall back
    ///   to stat stability and tell the operator. `.notReadOnly` for a writable fd, `.systemCall` else.
    public static func isOpenForWriting(fileDescriptor: Int32) throws(WatchError) -> Bool {
        let flags = try Syscall.retrying("fcntl(F_GETFL)") { ferry_status_flags(fileDescriptor) }
        guard flags & O_ACCMODE == O_RDONLY else {
            throw WatchError(code: .notReadOnly, message:
                "the write check needs a descriptor opened O_RDONLY: a writable descriptor counts as a writer itself")
        }
        return try probe(fileDescriptor, path: nil)
    }

    /// The lease question for an fd the caller opened read-only; `path` only names the file in errors.
    static func probe(_ fd: Int32, path: String?) throws(WatchError) -> Bool {
        try probe(fd, path: path) { () } == nil
    }

    /// Takes the read lease, runs `whileLeased` holding it, releases it. Returns nil when the file is
    /// open for writing (the lease was refused with EAGAIN), else what `whileLeased` returned.
    ///
    /// Whatever must describe the file *as nobody is writing it* belongs in `whileLeased`: while the
    /// lease is held no process can open the file for writing (its open waits for the lease break), so
    /// an fstat there sees a version no writer is changing. An fstat taken before the lease can see a
    /// version a writer replaced and closed in between (created empty, then filled): that stale
    /// version would then pass as "idle".
    static func probe<T>(_ fd: Int32, path: String?, whileLeased: () -> T) throws(WatchError) -> T? {
        _ = sigioIgnored
        do {
            try Syscall.retrying("fcntl(F_SETLEASE, F_RDLCK)", path: path) { ferry_set_lease(fd, ferry_lease_read) }
        } catch {
            if error.errno == .resourceTemporarilyUnavailable { return nil }
            var info = stat()
            let owner: UInt32? = fstat(fd, &info) == 0 ? info.st_uid : nil
            throw refusal(error, path: path, owner: owner)
        }
        let result = whileLeased()
        // Released at once: holding it would make every writer's open wait for a lease break.
        _ = try? Syscall.retrying("fcntl(F_SETLEASE, F_UNLCK)", path: path) { ferry_set_lease(fd, ferry_lease_unlock) }
        return result
    }

    /// The error for a refused lease: `.leasesUnavailable` with what to do for EACCES/EPERM (no
    /// CAP_LEASE) and EINVAL (no leases on that file system), else `error` itself.
    static func refusal(_ error: WatchError, path: String?, owner: UInt32?) -> WatchError {
        switch error.errno {
        case .permissionDenied?, .notPermitted?:
            let whose = owner.map { " (owned by uid \($0); ferry runs as uid \(geteuid()))" } ?? ""
            return WatchError(code: .leasesUnavailable, cause: error.cause, message:
                "cannot tell whether \(path ?? "a file") is still open for writing: a read lease on a file another user owns\(whose) needs CAP_LEASE; grant it in the systemd unit with `AmbientCapabilities=CAP_LEASE` (and keep it in CapabilityBoundingSet=)")
        case .invalidArgument?:
            return WatchError(code: .leasesUnavailable, cause: error.cause, message:
                "cannot tell whether \(path ?? "a file") is still open for writing: its file system does not support leases (or `fs.leases-enable` is 0)")
        default:
            return error
        }
    }

    /// Set once per process, before the first lease can exist; see the type's documentation.
    private static let sigioIgnored: Bool = ferry_ignore_sigio() == 1

    /// Whether SIGIO can no longer terminate the process (it is ignored or handled).
    static var sigioIsHarmless: Bool { sigioIgnored }
}

/// The completion-time check, replaceable in tests that need the kernel to refuse leases: the
/// relative path, the folder descriptor it is below, and the absolute path for messages.
typealias WriteChecker = @Sendable (_ relativePath: String, _ folder: Int32, _ displayPath: String) -> WriteCheck

/// What the completion-time check found, for a file a rule's settle time says is complete.
enum WriteCheck: Sendable {
    /// Nobody has it open for writing; this is the version the open descriptor saw.
    case idle(FileVersion)
    /// Some process still has it open for writing (or is about to, holding a lease).
    case openForWriting
    /// It is gone, or is no longer a regular file reachable without symbolic links.
    case gone
    /// The kernel cannot answer for this file; `version` is what fstat saw, to judge by stability.
    case unanswerable(FileVersion?, WatchError)
    /// Opening it failed for a reason that passes (EMFILE, ENOMEM, EIO…): look again later.
    case tryAgain(WatchError)

    /// Opens `relativePath` below `folder` (no symbolic link in any component, never above `folder`),
    /// fstats it and asks whether it is open for writing. O_NONBLOCK: opening a file another process
    /// holds a write lease on fails with EWOULDBLOCK instead of waiting for the lease to break.
    static func of(_ relativePath: String, below folder: Int32, displayPath: String) -> WriteCheck {
        let fd: Int32
        do {
            fd = try SafeOpen.below(folder, relativePath, flags: O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        } catch {
            switch error.errno {
            case .wouldBlock?: return .openForWriting
            case .permissionDenied?:
                // Unreadable to ferry: it cannot be sent either, but judging it stays the engine's job.
                let unreadable = WatchError(code: .systemCall, cause: error.cause, message:
                    "cannot open \(displayPath) to tell whether it is still open for writing (\(error)); ferry needs read access to the files it sends")
                return .unanswerable(FileStatus.of(relativePath, in: folder)?.version, unreadable)
            case .noSuchFileOrDirectory?, .tooManySymbolicLinkLevels?, .notDirectory?, .improperLink?, .operationNotSupportedByDevice?, .noSuchAddressOrDevice?:
                // Gone, or no longer reachable without a link (ELOOP, ENOTDIR, EXDEV), or a device now.
                return .gone
            default:
                return .tryAgain(error)
            }
        }
        defer { close(fd) }
        // Fresh from the file system, not its attribute cache: on NFS and FUSE this is the look that
        // must see a remote writer's latest size and mtime before the file counts as complete.
        guard let info = try? FileStatus.freshInfo("", in: fd) else { return .gone }
        let status = FileStatus(info)
        guard status.kind == .regular else { return .gone }
        do {
            // The version is read again under the lease: the fstat above may predate a writer that
            // filled and closed the file just before the lease was granted.
            let leased = try WriteActivity.probe(fd, path: displayPath) { () -> FileStatus? in
                var info = stat()
                return fstat(fd, &info) == 0 ? FileStatus(info) : nil
            }
            guard let underLease = leased else { return .openForWriting }
            guard let current = underLease, current.kind == .regular else { return .gone }
            return .idle(current.version)
        } catch {
            return .unanswerable(status.version, error)
        }
    }
}
