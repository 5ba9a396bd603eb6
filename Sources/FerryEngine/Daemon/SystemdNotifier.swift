import FerrySystem
import Foundation
import SystemPackage

/// Tells systemd how the service is doing, over the `sd_notify` protocol: one datagram per message,
/// sent to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
///
/// ferry speaks the protocol itself rather than linking libsystemd, so the package needs no extra
/// run-time library. When `$NOTIFY_SOCKET` is unset (ferry run by hand, or under `Type=simple`) every
/// call is a no-op, so callers never need to check.
///
/// ```swift
/// let notifier = try SystemdNotifier()
/// try notifier.ready()
/// try notifier.status("3 rules, 0 files waiting")
/// if let interval = notifier.watchdogInterval { /* call watchdog() every `interval` */ }
/// ```
public final class SystemdNotifier: Sendable {
    /// How often `watchdog()` must be called: half of `$WATCHDOG_USEC`, as systemd recommends, so one
    /// late tick does not get the service killed. `nil` when the watchdog is off or meant for another
    /// process (`$WATCHDOG_PID` names a different PID).
    public let watchdogInterval: Duration?

    /// `true` when `$NOTIFY_SOCKET` was set, i.e. messages actually go somewhere.
    public var isEnabled: Bool { socket != nil }

    private let socket: NotifySocket?

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` from `environment` and opens the
    /// datagram socket once, so later messages cannot fail for lack of file descriptors.
    ///
    /// - Parameters:
    ///   - environment: the process environment; tests pass their own.
    ///   - processID: this process's PID, compared with `$WATCHDOG_PID`.
    /// - Throws: `SystemdNotifierError` when `$NOTIFY_SOCKET` holds an address ferry cannot use or the
    ///   socket cannot be created.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment,
                processID: Int32 = getpid()) throws(SystemdNotifierError) {
        if let address = environment["NOTIFY_SOCKET"], !address.isEmpty {
            socket = try NotifySocket(address: address)
        } else {
            socket = nil
        }
        watchdogInterval = Self.watchdogInterval(environment: environment, processID: processID)
    }

    /// `READY=1`: start-up is finished (watches set up, journal open). systemd holds back units
    /// ordered after ferry, and `systemctl start` returns, only once this arrives.
    public func ready() throws(SystemdNotifierError) {
        try send("READY=1")
    }

    /// `STATUS=…`: the one-line summary `systemctl status ferry` shows. Line breaks are turned into
    /// spaces, because a newline would start a new protocol field.
    public func status(_ text: String) throws(SystemdNotifierError) {
        let oneLine = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        try send("STATUS=\(oneLine)")
    }

    /// `WATCHDOG=1`: proof of life; send it every `watchdogInterval`.
    public func watchdog() throws(SystemdNotifierError) {
        try send("WATCHDOG=1")
    }

    /// `STOPPING=1`: ferry has begun draining after SIGTERM/SIGINT.
    public func stopping() throws(SystemdNotifierError) {
        try send("STOPPING=1")
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` stamp that systemd 253+ requires to match the reload;
    /// older systemd ignores the extra field. Send `ready()` again once the new rules are in force.
    public func reloading() throws(SystemdNotifierError) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        try send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    /// Sends `message` (newline-separated `VARIABLE=value` assignments) as one datagram.
    /// Does nothing when `$NOTIFY_SOCKET` is unset.
    public func send(_ message: String) throws(SystemdNotifierError) {
        try socket?.send(message)
    }

    static func watchdogInterval(environment: [String: String], processID: Int32) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        // systemd sets WATCHDOG_PID so that children inheriting the environment do not feed the watchdog.
        if let pidText = environment["WATCHDOG_PID"], !pidText.isEmpty, Int32(pidText) != processID {
            return nil
        }
        return .microseconds(Int64(clamping: usec / 2))
    }
}

/// Why a message could not reach systemd.
public struct SystemdNotifierError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for callers that react differently to each.
    public enum Code: Sendable, Equatable {
        /// `$NOTIFY_SOCKET` is not an absolute path or `@abstract` name, or is too long.
        case invalidAddress
        /// `socket(2)` failed.
        case socketFailed
        /// `sendto(2)` failed, e.g. systemd is gone or the socket path is wrong.
        case sendFailed
    }

    /// The kind of failure.
    public let code: Code
    /// The failed system call (with its errno), if one was the cause.
    public let cause: SystemError?
    /// A sentence a user can act on.
    public let message: String

    /// The `errno` the system call returned, if a system call failed.
    public var errno: Errno? { cause?.errno }

    init(code: Code, cause: SystemError? = nil, message: String) {
        self.code = code
        self.cause = cause
        self.message = message
    }

    public var description: String { message }
}

/// Owns the notify datagram socket; closes it when the notifier goes away.
private final class NotifySocket: Sendable {
    private let descriptor: Int32
    /// The `sun_path` bytes: the path, or a NUL followed by the abstract name.
    private let pathBytes: [UInt8]
    private let address: String

    init(address: String) throws(SystemdNotifierError) {
        self.address = address
        let bytes: [UInt8]
        if address.hasPrefix("@") {
            bytes = [0] + Array(address.utf8.dropFirst())
        } else if address.hasPrefix("/") {
            bytes = Array(address.utf8)
        } else {
            throw SystemdNotifierError(code: .invalidAddress,
                message: "NOTIFY_SOCKET=\(address) is neither an absolute path nor an @abstract socket name; start ferry from systemd or unset NOTIFY_SOCKET")
        }
        // A path needs room for its terminating NUL; an abstract name does not have one.
        let limit = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - (bytes.first == 0 ? 0 : 1)
        guard bytes.count <= limit else {
            throw SystemdNotifierError(code: .invalidAddress,
                message: "NOTIFY_SOCKET=\(address) is longer than the \(limit) bytes a unix socket address can hold")
        }
        pathBytes = bytes
        let opened = try retryingInterrupts(.socketFailed, "socket(AF_UNIX, SOCK_DGRAM) for NOTIFY_SOCKET", path: nil) {
            Int(socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        }
        descriptor = Int32(truncatingIfNeeded: opened)
    }

    deinit {
        close(descriptor)
    }

    func send(_ message: String) throws(SystemdNotifierError) {
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { $0.copyBytes(from: pathBytes) }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        let length = socklen_t(pathOffset + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        let payload = Array(message.utf8)
        let sent = try retryingInterrupts(.sendFailed, "sendto", path: address) {
            withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    payload.withUnsafeBytes { bytes in
                        sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), address, length)
                    }
                }
            }
        }
        // A datagram goes out whole or not at all; anything else means the kernel truncated it.
        guard sent == payload.count else {
            throw SystemdNotifierError(code: .sendFailed,
                message: "sendto(\(address)) sent \(sent) of \(payload.count) bytes")
        }
    }
}

/// A system call for the notifier: EINTR retried, any other failure an error carrying errno and a
/// message naming the call.
private func retryingInterrupts(_ code: SystemdNotifierError.Code, _ operation: String, path: String?,
                                _ call: () -> Int) throws(SystemdNotifierError) -> Int {
    try SystemError.retryingInterrupts(call) { errno in
        let cause = SystemError(operation, path: path, errno: errno)
        return SystemdNotifierError(code: code, cause: cause, message: cause.description)
    }
}
