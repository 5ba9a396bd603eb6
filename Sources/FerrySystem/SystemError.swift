import Glibc
import SystemPackage

/// A failed system call: what was attempted, on which path, the `Errno`, and what the operator should
/// do about it. The one representation of an errno in ferry: the watcher's, the engine's local file
/// operations, `download_to` placement, the systemd notifier and S3 uploads from local files all report
/// a failed call with this type, so every such message has the same shape and the same advice.
///
/// `description` reads `<operation> <path> failed: <strerror> (errno <n>) — <advice>`.
public struct SystemError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The call or action that failed, as the message names it: `open`, `rename`, `fcntl(F_SETLEASE)`.
    public var operation: String
    /// The path (or paths, "a to b") it was made on, if any.
    public var path: String?
    /// The errno the call failed with.
    public var errno: Errno
    /// What to do about it; nil when there is nothing to say beyond the error itself.
    public var advice: String?

    /// A failure of `operation` on `path` with `errno`. Without `advice`, the advice for the errno's
    /// class (`SystemError.advice(for:)`) is given.
    public init(_ operation: String, path: String? = nil, errno: Errno, advice: String? = nil) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.advice = advice ?? Self.advice(for: errno)
    }

    /// The same from a raw errno value, as `Glibc.errno` holds it.
    public init(_ operation: String, path: String? = nil, code: Int32, advice: String? = nil) {
        self.init(operation, path: path, errno: Errno(rawValue: code), advice: advice)
    }

    /// What the operator should do about an errno, by class; nil for errnos whose fix depends on what
    /// was attempted (ENOENT, EEXIST, EINVAL…), for which the caller gives its own advice.
    public static func advice(for errno: Errno) -> String? {
        switch errno {
        case .permissionDenied, .notPermitted:
            return "give the ferry user read/write access to the folder (and its files)"
        case .noSpace:
            return "the disk is full; free space and ferry resumes"
        case .diskQuotaExceeded:
            return "the ferry user's disk quota is used up; free space or raise the quota and ferry resumes"
        case .readOnlyFileSystem:
            return "the file system is read-only; remount it read-write or choose a folder on a writable one"
        case .tooManySymbolicLinkLevels:
            return "it is a symbolic link; ferry never follows or sends links"
        case .tooManyOpenFiles, .tooManyOpenFilesInSystem:
            return "too many open files; raise LimitNOFILE in the systemd unit (`systemctl edit ferry`)"
        case .ioError:
            return "the storage reported an I/O error; check the kernel log (`journalctl -k`)"
        default:
            return nil
        }
    }

    /// Whether the errno means the file system has no room left (ENOSPC, EDQUOT): a condition that
    /// passes once space is freed, not a fault of the file.
    public var isOutOfSpace: Bool { errno == .noSpace || errno == .diskQuotaExceeded }

    public var description: String {
        let subject = path.map { " \($0)" } ?? ""
        let what = advice.map { " — \($0)" } ?? ""
        return "\(operation)\(subject) failed: \(errno) (errno \(errno.rawValue))\(what)"
    }

    /// Runs `call` until it returns a non-negative result or fails with something other than EINTR,
    /// which becomes the `SystemError` `failure` makes of the errno (so each caller names its
    /// operation and path and may give its own advice).
    @discardableResult
    public static func retryingInterrupts<T: BinaryInteger, E: Error>(
        _ call: () -> T, failure: (Errno) -> E
    ) throws(E) -> T {
        while true {
            let result = call()
            if result >= 0 { return result }
            let code = Glibc.errno
            if code != EINTR { throw failure(Errno(rawValue: code)) }
        }
    }

    /// Runs `call`, retrying EINTR; a negative result becomes `SystemError(operation, path:, errno:)`.
    @discardableResult
    public static func retrying<T: BinaryInteger>(
        _ operation: String, path: String? = nil, _ call: () -> T
    ) throws(SystemError) -> T {
        try retryingInterrupts(call) { SystemError(operation, path: path, errno: $0) }
    }

    /// The errno the last failed call left, as a `SystemError` of `operation` on `path`.
    public static func last(_ operation: String, path: String? = nil, advice: String? = nil) -> SystemError {
        SystemError(operation, path: path, code: Glibc.errno, advice: advice)
    }
}
