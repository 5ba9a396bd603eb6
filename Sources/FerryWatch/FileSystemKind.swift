internal import CFerrySys
internal import Glibc

/// How a rule's folder is watched.
public enum WatchMode: String, Sendable, Hashable, CaseIterable {
    /// Poll on network and FUSE file systems, inotify elsewhere.
    case auto
    /// inotify events, with the periodic reconciliation as a safety net.
    case inotify
    /// Incremental polling every `pollInterval`: for folders whose changes do not pass through this
    /// host's kernel (NFS, SMB, FUSE written behind the mount).
    case poll
}

/// The file system a folder is on, from `statfs(2)`'s `f_type`, and whether inotify can see changes made
/// on it by other hosts (or behind a FUSE mount): for network and FUSE file systems it cannot.
public struct FileSystemKind: Sendable, Hashable, CustomStringConvertible {
    /// `f_type`.
    public var magic: UInt64
    /// A short name ("ext4", "nfs", "fuse"), or the magic number in hex when unknown.
    public var name: String
    /// Whether changes can happen without passing through this host's kernel.
    public var isRemote: Bool

    public var description: String { name }

    /// Magic numbers from linux/magic.h (and the file systems' own headers) of file systems where
    /// writers on other hosts, or behind the mount, are invisible to inotify.
    static let remote: [UInt64: String] = [
        0x6969: "nfs", 0xFF53_4D42: "cifs", 0xFE53_4D42: "smb2", 0x517B: "smb",
        0x6573_5546: "fuse", 0x00C3_6400: "ceph", 0x0102_1997: "9p", 0x5346_414F: "afs",
        0x6B41_4653: "afs", 0x7375_7245: "coda", 0x564C: "ncpfs", 0x0116_1970: "gfs2",
        0x0BD0_0BD0: "lustre", 0x7461_636F: "ocfs2", 0x4750_4653: "gpfs", 0x786F_4256: "vboxsf",
        0x2003_0528: "orangefs", 0x1983_0326: "beegfs",
    ]
    /// Local file systems named in the log.
    static let local: [UInt64: String] = [
        0xEF53: "ext4", 0x5846_5342: "xfs", 0x9123_683E: "btrfs", 0x0102_1994: "tmpfs",
        0x794C_7630: "overlayfs", 0x2FC1_2FC1: "zfs", 0xF2F5_2010: "f2fs", 0x4D44: "vfat",
        0x2011_BAB0: "exfat", 0x5346_544E: "ntfs",
    ]

    /// Creates a kind from `f_type`.
    public init(magic: UInt64) {
        self.magic = magic
        if let name = Self.remote[magic] {
            self.name = name
            isRemote = true
        } else {
            name = Self.local[magic] ?? "0x" + String(magic, radix: 16)
            isRemote = false
        }
    }

    /// Whether this is NFS, whose client caches file attributes for up to `acregmax`.
    public var isNFS: Bool { magic == 0x6969 }

    /// The file system of an open descriptor; nil when fstatfs fails.
    static func of(descriptor fd: Int32) -> FileSystemKind? {
        guard let magic = try? Syscall.retrying("fstatfs", { ferry_statfs_type(fd, nil) }) else { return nil }
        return FileSystemKind(magic: UInt64(magic))
    }

    /// The file system holding `path` (following links: for `ferry validate`, which only advises).
    public static func of(path: String) -> FileSystemKind? {
        guard let magic = try? Syscall.retrying("statfs", path: path, { ferry_statfs_type(-1, path) }) else { return nil }
        return FileSystemKind(magic: UInt64(magic))
    }
}

/// How long an NFS client may answer `stat` from its attribute cache: `acregmax` from the mount's
/// options (`actimeo` sets it too, `noac` makes it 0), else the kernel's default of 60 s.
///
/// A poll-mode file on NFS counts as complete only after it stood unchanged for at least this long
/// (and for `settle`), so that two looks cannot both come from one cached answer.
public enum NFSAttributeCache {
    /// The kernel's default `acregmax`.
    public static let defaultTime: Duration = .seconds(60)

    /// `acregmax` of the NFS mount holding the open folder `fd`, from `/proc/self/mountinfo` (matched
    /// by device number); the default when the mount or the option is not found.
    static func time(forFolder fd: Int32) -> Duration {
        guard let info = try? FileStatus.freshInfo("", in: fd), let text = readMountInfo() else { return defaultTime }
        // glibc's major()/minor() are macros Swift cannot call; this is their bit layout.
        let dev = UInt64(info.st_dev)
        let device = "\((dev >> 8) & 0xFFF | (dev >> 32) & ~0xFFF):\(dev & 0xFF | (dev >> 12) & ~0xFF)"
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 2, fields[2] == device else { continue }
            return time(options: line)
        }
        return defaultTime
    }

    private static func readMountInfo() -> String? {
        guard let fd = try? Syscall.retrying("open", path: "/proc/self/mountinfo", { open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC) })
        else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            guard let count = try? Syscall.retrying("read", { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }),
                  count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The cache time a mountinfo line (or any comma-separated option list) gives.
    public static func time(options line: some StringProtocol) -> Duration {
        var result = defaultTime
        for word in line.split(whereSeparator: { $0 == "," || $0 == " " }) {
            if word == "noac" { return .zero }
            for key in ["actimeo=", "acregmax="] where word.hasPrefix(key) {
                if let seconds = Int(word.dropFirst(key.count)) { result = .seconds(seconds) }
            }
        }
        return result
    }
}

/// The mode a root is watched in and why, as logged at start and shown by `ferry status`.
public struct WatchModeChoice: Sendable, Hashable, CustomStringConvertible {
    /// `.inotify` or `.poll`, never `.auto`.
    public var mode: WatchMode
    /// Why: "auto: fuse is a network or FUSE file system", "set by the rule".
    public var reason: String
    /// How often the root is polled (poll mode).
    public var pollInterval: Duration
    /// On NFS, the client's attribute-cache time (`acregmax`): a polled file must stand unchanged at
    /// least this long, as well as `settle`, before it counts as complete. Zero elsewhere.
    public var attributeCacheTime: Duration = .zero

    public var description: String {
        guard mode == .poll else { return "inotify (\(reason))" }
        let cache = attributeCacheTime > .zero ? "; files must also stand unchanged for the NFS attribute-cache time \(attributeCacheTime)" : ""
        return "poll every \(pollInterval) (\(reason)\(cache))"
    }

    /// Resolves `requested` for a root on `kind` (nil when statfs failed: inotify, said so).
    public static func decide(_ requested: WatchMode, on kind: FileSystemKind?, pollInterval: Duration) -> WatchModeChoice {
        switch requested {
        case .poll:
            return WatchModeChoice(mode: .poll, reason: "watch_mode: poll\(kind.map { " on \($0)" } ?? "")", pollInterval: pollInterval)
        case .inotify:
            let blind = kind?.isRemote == true ? "; inotify cannot see writers on other hosts or behind the mount, so those files wait for reconciliation" : ""
            return WatchModeChoice(mode: .inotify, reason: "watch_mode: inotify\(kind.map { " on \($0)" } ?? "")\(blind)", pollInterval: pollInterval)
        case .auto:
            guard let kind else {
                return WatchModeChoice(mode: .inotify, reason: "auto: file system type unknown (statfs failed)", pollInterval: pollInterval)
            }
            if kind.isRemote {
                return WatchModeChoice(mode: .poll, reason: "auto: \(kind) is a network or FUSE file system", pollInterval: pollInterval)
            }
            return WatchModeChoice(mode: .inotify, reason: "auto: \(kind) is local", pollInterval: pollInterval)
        }
    }
}
