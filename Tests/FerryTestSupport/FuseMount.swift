import Foundation

/// A real FUSE mount made by a test: `bindfs source mountPoint`, so that files written in `source`
/// appear under `mountPoint` without passing through the mount, as files written by another host
/// appear on an NFS or SMB client. inotify on `mountPoint` sees none of them; that is what the poll
/// mode is for. Unmounted by `unmount()` or, at the latest, when the value is released.
public final class BindfsMount: @unchecked Sendable {
    /// The real folder behind the mount (where "the other host" writes).
    public let source: String
    /// Where the FUSE file system is mounted (what ferry watches).
    public let mountPoint: String
    private let lock = NSLock()
    private var mounted = true
    private let process = Process()
    private var outputPath = ""

    /// What to run when FUSE or bindfs is missing; tests fail with this rather than skip.
    public static let installHint = "install FUSE and bindfs: `apt-get install -y bindfs fuse3` (or `make deps`), and make sure /dev/fuse exists (`modprobe fuse`; in a container, run it with --device /dev/fuse --cap-add SYS_ADMIN)"

    /// Mounts `source` at `mountPoint` (both created if missing) and waits until the mount shows in
    /// /proc/self/mountinfo. Throws, naming the install command, when bindfs or FUSE is unavailable.
    public init(source: String, mountPoint: String) throws {
        self.source = source
        self.mountPoint = mountPoint
        guard let bindfs = Self.executable("bindfs") else {
            throw FuseMountError(message: "bindfs is not installed; \(Self.installHint)")
        }
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            throw FuseMountError(message: "/dev/fuse does not exist; \(Self.installHint)")
        }
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        // In the foreground (-f), as this test's child: a daemonized bindfs would inherit the descriptor
        // Foundation's Process watches for its child's exit, and waitUntilExit would never return.
        outputPath = NSTemporaryDirectory() + "ferry-bindfs-\(UUID().uuidString).log"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil),
              let output = FileHandle(forWritingAtPath: outputPath) else {
            throw FuseMountError(message: "cannot create \(outputPath) for bindfs's output")
        }
        process.executableURL = URL(fileURLWithPath: bindfs)
        process.arguments = ["-f", source, mountPoint]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        try process.run()
        try? output.close()
        let deadline = Date().addingTimeInterval(60)
        while !Self.isMountPoint(mountPoint) {
            guard process.isRunning, Date() < deadline else {
                let said = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
                unmount()
                throw FuseMountError(message: "bindfs -f \(source) \(mountPoint) did not mount (\(process.isRunning ? "still not in /proc/self/mountinfo after 60 s" : "exited \(process.terminationStatus)")): \(said); \(Self.installHint)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    deinit { unmount() }

    /// Unmounts (fusermount3 -u, then a lazy umount if something still holds it busy). Idempotent.
    public func unmount() {
        let wasMounted = lock.withLock {
            defer { mounted = false }
            return mounted
        }
        guard wasMounted else { return }
        defer {
            // Unmounted, bindfs exits by itself; if it did not mount at all it may still be starting.
            if process.isRunning {
                let deadline = Date().addingTimeInterval(10)
                while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
                if process.isRunning { process.terminate() }
            }
            try? FileManager.default.removeItem(atPath: outputPath)
        }
        for attempt in 0..<50 where Self.isMountPoint(mountPoint) {
            if let fusermount = Self.executable("fusermount3") ?? Self.executable("fusermount"),
               (try? Self.run(fusermount, ["-u", mountPoint]))?.status == 0 { return }
            if attempt == 49, let umount = Self.executable("umount") { _ = try? Self.run(umount, ["-l", mountPoint]) }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// Whether `path` is a mount point now, by /proc/self/mountinfo (field 5 is the mount point).
    public static func isMountPoint(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4] == path
        }
    }

    static func executable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin:/usr/sbin:/sbin"
        for folder in path.split(separator: ":") + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            let candidate = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs a command and returns its exit status and output. The output goes to a file, not a pipe:
    /// bindfs daemonizes and its daemon keeps the inherited descriptors open, so reading a pipe to its
    /// end would wait for the unmount.
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let outputPath = NSTemporaryDirectory() + "ferry-fuse-\(UUID().uuidString).out"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil),
              let output = FileHandle(forWritingAtPath: outputPath) else {
            throw FuseMountError(message: "cannot create \(outputPath) for the output of \(executable)")
        }
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        try process.run()
        process.waitUntilExit()
        try? output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Mounting failed; the message says what to install or fix.
public struct FuseMountError: Error, CustomStringConvertible {
    /// What went wrong and how to fix it.
    public var message: String
    public var description: String { message }
}
