import Foundation

/// Runs file operations as an ordinary user would see them, inside a test process that runs as root:
/// root's CAP_DAC_OVERRIDE would open a `chmod 000` folder, so no EACCES could ever be seen.
///
/// The body runs on a thread of its own whose file-system uid is `nobody` (setfsuid(2)): Linux clears
/// the file-access capabilities of a thread whose fsuid is not 0 and restores them when it is 0 again.
/// The fsuid is per thread (glibc does not spread it to other threads as it does setuid), so the rest
/// of the test process keeps root's access.
public enum WithoutRootAccess {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// The uid the body's file accesses are checked as.
    public static let uid: UInt32 = 65534

    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        typealias SetFSUID = @convention(c) (UInt32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setfsuid") else {
            throw Unavailable(description: "setfsuid is not in the C library")
        }
        let setfsuid = unsafeBitCast(symbol, to: SetFSUID.self)
        let outcome = Outcome<T>()
        let thread = Thread {
            let previous = setfsuid(uid)
            // setfsuid returns the previous fsuid whether or not it changed anything: ask again.
            guard setfsuid(uid) == Int32(bitPattern: uid) else {
                _ = setfsuid(UInt32(bitPattern: previous))
                outcome.finish(.failure(Unavailable(description: "setfsuid(\(uid)) was refused: this test needs root, as CI runs it")))
                return
            }
            let result = Result { try body() }
            _ = setfsuid(UInt32(bitPattern: previous))
            outcome.finish(result)
        }
        thread.start()
        return try outcome.wait().get()
    }

    private final class Outcome<T: Sendable>: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<T, any Error>?

        func finish(_ result: Result<T, any Error>) {
            self.result = result
            done.signal()
        }

        func wait() -> Result<T, any Error> {
            done.wait()
            return result!
        }
    }
}

/// A folder of mode 000 in a fresh temp folder: what an ordinary user (`WithoutRootAccess`) can neither
/// list, enter nor write. Its mode is restored when the value goes, so the temp folder can be removed.
public final class LockedFolder: @unchecked Sendable {
    /// The locked folder.
    public let path: String
    private let parent: TempDirectory

    public init() throws {
        parent = try TempDirectory(prefix: "ferry-locked")
        path = parent.path + "/locked"
        guard mkdir(path, 0o000) == 0 else {
            throw WithoutRootAccess.Unavailable(description: "mkdir \(path) failed: errno \(errno)")
        }
    }

    deinit { chmod(path, 0o755) }
}
