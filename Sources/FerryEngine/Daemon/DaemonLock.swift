import FerrySystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `<state_dir>/ferry.pid`, locked with flock while `ferry run` lives: one daemon per state_dir, and
/// `ferry status` can tell whether it runs (a lock held by a dead process is released by the kernel).
public final class DaemonLock: Sendable {
    private let descriptor: Int32
    /// The lock file.
    public let path: String

    /// Takes the lock, or throws naming the process that holds it.
    public init(stateDir: String) throws {
        path = (stateDir as NSString).appendingPathComponent("ferry.pid")
        try? FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard descriptor >= 0 else {
            throw SystemError.last("open", path: path)
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(descriptor)
            throw SystemError("lock", path: path, errno: .wouldBlock, advice: "ferry already runs with this state_dir as pid \(holder); stop it first")
        }
        let text = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = text.withCString { pwrite(descriptor, $0, strlen($0), 0) }
    }

    deinit { close(descriptor) }

    /// The pid of the daemon running with `stateDir`, or nil if none holds the lock.
    public static func runningPID(stateDir: String) -> Int32? {
        let path = (stateDir as NSString).appendingPathComponent("ferry.pid")
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        let text = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return Int32(text) ?? -1
    }
}
