import Foundation

/// A real ext4 file system in an image file, loop-mounted at a folder, that a test can freeze
/// (`fsfreeze -f`): every write to it then blocks in the kernel until `thaw()`, as on a hung disk or
/// a snapshot that never finishes. Needs root and loop devices.
public final class LoopMount: @unchecked Sendable {
    /// Where the file system is mounted.
    public let mountPoint: String
    private let image: String
    private let lock = NSLock()
    private var frozen = false
    private var mounted = false

    /// What to install or allow when the prerequisites are missing.
    public static let installHint = "run the tests as root with loop devices (/dev/loop-control) and util-linux + e2fsprogs (`apt-get install -y util-linux e2fsprogs`; in a container, --privileged)"

    /// Makes a `megabytes` ext4 image at `image` and mounts it at `mountPoint` (created if missing).
    public init(image: String, mountPoint: String, megabytes: Int = 64) throws {
        self.image = image
        self.mountPoint = mountPoint
        guard geteuid() == 0 else { throw FuseMountError(message: "a loop mount needs root; \(Self.installHint)") }
        for tool in ["mkfs.ext4", "mount", "umount", "fsfreeze"] where BindfsMount.executable(tool) == nil {
            throw FuseMountError(message: "\(tool) is not installed; \(Self.installHint)")
        }
        guard FileManager.default.createFile(atPath: image, contents: nil),
              truncate(image, off_t(megabytes) * 1_048_576) == 0 else {
            throw FuseMountError(message: "cannot create the image \(image)")
        }
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let made = try BindfsMount.run(BindfsMount.executable("mkfs.ext4")!, ["-q", "-F", image])
        guard made.status == 0 else { throw FuseMountError(message: "mkfs.ext4 \(image) failed: \(made.output)") }
        let mount = try BindfsMount.run(BindfsMount.executable("mount")!, ["-o", "loop", image, mountPoint])
        guard mount.status == 0 else { throw FuseMountError(message: "mount -o loop \(image) \(mountPoint) failed: \(mount.output); \(Self.installHint)") }
        lock.withLock { mounted = true }
    }

    deinit { unmount() }

    /// Freezes the file system: writes block until `thaw()`.
    public func freeze() throws {
        let result = try BindfsMount.run(BindfsMount.executable("fsfreeze")!, ["-f", mountPoint])
        guard result.status == 0 else { throw FuseMountError(message: "fsfreeze -f \(mountPoint) failed: \(result.output)") }
        lock.withLock { frozen = true }
    }

    /// Thaws it (idempotent): the blocked writes go on.
    public func thaw() {
        let wasFrozen = lock.withLock {
            defer { frozen = false }
            return frozen
        }
        guard wasFrozen else { return }
        _ = try? BindfsMount.run(BindfsMount.executable("fsfreeze")!, ["-u", mountPoint])
    }

    /// Thaws, unmounts (lazily if still busy) and removes the image. Idempotent.
    public func unmount() {
        thaw()
        let wasMounted = lock.withLock {
            defer { mounted = false }
            return mounted
        }
        guard wasMounted else { return }
        if (try? BindfsMount.run(BindfsMount.executable("umount")!, [mountPoint]))?.status != 0 {
            _ = try? BindfsMount.run(BindfsMount.executable("umount")!, ["-l", mountPoint])
        }
        unlink(image)
    }
}
