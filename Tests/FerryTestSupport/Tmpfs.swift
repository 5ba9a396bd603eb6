import Foundation

/// A small tmpfs mounted for one test (lazily unmounted when the value goes away): a real file system
/// that fills up (ENOSPC) or refuses writes (mounted read-only, EROFS). Needs root and mount(8), as CI
/// runs the tests; the error says so when mounting is impossible.
public final class Tmpfs: @unchecked Sendable {
    /// The mount point.
    public let path: String

    public struct MountFailed: Error, CustomStringConvertible {
        public var description: String
    }

    /// Mounts a tmpfs of `size` (`64k`, `8m`) at `path`, creating the folder.
    public init(at path: String, size: String, readOnly: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let status = Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)\(readOnly ? ",ro" : "")", "tmpfs", path])
        guard status == 0 else {
            throw MountFailed(description: "cannot mount a tmpfs at \(path) (exit \(status)): this test needs root and mount(8) — run it as root")
        }
        self.path = path
    }

    /// Fills the file system with a filler file until no block is left; returns the filler's path.
    @discardableResult
    public func fill() -> String {
        let filler = path + "/filler"
        _ = Self.run("/bin/sh", ["-c", "dd if=/dev/zero of='\(filler)' bs=4k 2>/dev/null; sync"])
        return filler
    }

    deinit {
        _ = Self.run("/bin/umount", ["-l", path])
    }

    private static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
