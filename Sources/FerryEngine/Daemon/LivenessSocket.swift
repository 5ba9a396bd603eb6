import FerrySystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the running daemon answers on its liveness socket: the loops that are stuck.
public struct LivenessAnswer: Codable, Sendable, Equatable {
    /// Loops on one piece of work for longer than `limitSeconds`, the longest first.
    public var stuck: [Liveness.Stuck]
    /// How long a loop may be on one piece of work before it counts as stuck (WatchdogSec/2).
    public var limitSeconds: Int

    /// Whether a stuck loop is stuck on the journal: then reading it (`ferry status`) would hang too.
    public var journalStuck: Bool { stuck.contains { $0.loop == "journal" } }
}

/// `<state_dir>/ferry.sock`: the daemon's answer to "is every loop moving?", for `ferry status`.
///
/// Everything else `ferry status` reads lives in files the daemon writes, and a daemon whose journal's
/// file system is frozen or hung cannot write them; worse, reading the journal then blocks as well
/// (SQLite's shared memory index is written even by readers). A socket needs no writes: the path was
/// bound at start, connecting only looks it up, and the answer is computed in memory by a thread of
/// its own that never touches the journal.
final class LivenessSocket: Sendable {
    /// The socket's path for a state_dir.
    static func path(stateDir: String) -> String { (stateDir as NSString).appendingPathComponent("ferry.sock") }

    private let descriptor: Int32
    private let socketPath: String
    private let stopped = Locked(false)
    private let answer: @Sendable () -> LivenessAnswer

    /// Binds the socket (replacing a stale one: the caller holds the state_dir's lock).
    init(stateDir: String, answer: @escaping @Sendable () -> LivenessAnswer) throws {
        socketPath = Self.path(stateDir: stateDir)
        self.answer = answer
        guard var address = Self.address(socketPath) else {
            throw DaemonStartError(message: "state_dir path too long for a unix socket (\(socketPath)); use a shorter state_dir")
        }
        unlink(socketPath)
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw DaemonStartError(message: "\(SystemError.last("socket(AF_UNIX, SOCK_STREAM) for the liveness socket"))") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(descriptor, 8) == 0 else {
            let cause = SystemError.last("listen", path: socketPath)
            close(descriptor)
            throw DaemonStartError(message: "\(cause)")
        }
        // Readable by whoever may read the state_dir (status runs as the service user or root).
        chmod(socketPath, 0o660)
    }

    /// Serves answers on a thread of its own until `stop()`.
    func start() {
        let thread = Thread { [self] in serve() }
        thread.name = "ferry-liveness"
        thread.start()
    }

    /// Stops serving and removes the socket.
    func stop() {
        stopped.withLock { $0 = true }
        unlink(socketPath)
    }

    private func serve() {
        defer { close(descriptor) }
        while !stopped.withLock({ $0 }) {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 250) == 1 else { continue }
            let client = accept(descriptor, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            let bytes = [UInt8]((try? encoder.encode(answer())) ?? Data())
            var sent = 0
            while sent < bytes.count {
                let count = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if count <= 0 { break }
                sent += count
            }
            close(client)
        }
    }

    /// Asks the daemon of `stateDir`; nil when no daemon answers within `timeout` seconds.
    static func ask(stateDir: String, timeout: Int = 2) -> LivenessAnswer? {
        guard var address = address(path(stateDir: stateDir)) else { return nil }
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0 else { return nil }
        defer { close(client) }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return nil }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(client, &buffer, buffer.count, 0)
            if count <= 0 { break }
            data.append(contentsOf: buffer[0..<count])
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try? decoder.decode(LivenessAnswer.self, from: data)
    }

    private static func address(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return address
    }
}
