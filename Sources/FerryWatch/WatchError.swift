import FerrySystem
internal import Glibc
import SystemPackage

/// Why watching failed, with the errno when a system call was the cause and a message saying what to do.
public struct WatchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure, for callers that react differently to each.
    public enum Code: String, Sendable, Hashable {
        /// `fs.inotify.max_user_watches` is exhausted (ENOSPC from `inotify_add_watch`).
        case tooManyWatches
        /// `fs.inotify.max_user_instances` is exhausted (EMFILE from `inotify_init1`).
        case tooManyInstances
        /// A rule's include or exclude pattern does not compile.
        case invalidPattern
        /// `run()` was called while the watcher was already running.
        case alreadyRunning
        /// The kernel refuses the read lease that tells whether a file is open for writing: no CAP_LEASE
        /// for a file another user owns (EACCES/EPERM), or a file system without leases (EINVAL).
        case leasesUnavailable
        /// `WriteActivity` was given a descriptor not opened `O_RDONLY`.
        case notReadOnly
        /// `LinkFreeFile` refused a path with a symbolic link in some component.
        case symbolicLink
        /// Any other failed system call; `errno` says which.
        case systemCall
    }

    /// The kind of failure.
    public var code: Code
    /// The failed system call (with its errno), if one was the cause.
    public var cause: SystemError?
    /// What happened and what to do about it.
    public var message: String

    /// The errno of the failed system call, if one failed.
    public var errno: Errno? { cause?.errno }

    /// Creates an error; `message` should tell the user what to do.
    public init(code: Code, cause: SystemError? = nil, message: String) {
        self.code = code
        self.cause = cause
        self.message = message
    }

    /// A failed system call and nothing more to say: `.systemCall`, the call's own message.
    public init(_ cause: SystemError) {
        self.init(code: .systemCall, cause: cause, message: cause.description)
    }

    public var description: String { message }
}

/// The one place system calls are made from: retries EINTR and turns -1 into a `WatchError` that names
/// the call, the path and errno, so no call site can forget either.
enum Syscall {
    @discardableResult
    static func retrying<Result: FixedWidthInteger>(
        _ call: String, path: String? = nil, _ body: () -> Result
    ) throws(WatchError) -> Result {
        try SystemError.retryingInterrupts(body) { WatchError(SystemError(call, path: path, errno: $0)) }
    }

    static func failure(_ call: String, path: String?, errno code: Int32) -> WatchError {
        WatchError(SystemError(call, path: path, code: code))
    }

    /// Reads a small integer from `/proc/sys`, for error messages that quote the current limit.
    static func readSysctl(_ name: String) -> Int? {
        let path = "/proc/sys/" + name.replacingDots()
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
        return Int(text.filter { !$0.isWhitespace })
    }
}

extension String {
    fileprivate func replacingDots() -> String {
        String(self.map { $0 == "." ? "/" : $0 })
    }
}
