import FerrySystem
/// One outbound folder to watch, as the engine derives it from a rule.
public struct WatchRule: Sendable, Hashable {
    /// The rule's name; reported back in `CompletedFile.ruleID`.
    public var id: String
    /// Absolute path of the watched folder.
    public var root: String
    /// Whether sub-folders are watched too.
    public var recursive: Bool
    /// Globs on the path relative to `root`; empty selects everything.
    public var include: [String]
    /// Globs that deselect, in addition to ferry's default ignores.
    public var exclude: [String]
    /// How long size, mtime and inode must stay the same before a file counts as complete.
    public var settle: Duration
    /// When set, `X` is complete only once `X<readyMarker>` exists; the marker is never reported.
    public var readyMarker: String?
    /// Absolute folders whose whole subtrees never produce candidates and are not watched, even inside a
    /// recursive `root`: the archive_dir, quarantine (`.ferry/failed/`) and in-doubt folders. Compared
    /// byte for byte, component-wise (`/srv/out/archive` does not exclude `/srv/out/archived`).
    public var excludedFolders: [String]
    /// inotify, polling, or chosen from the root's file system type (`FileSystemKind`).
    public var watchMode: WatchMode
    /// How often a polled root is checked for changed folders.
    public var pollInterval: Duration

    /// Creates a rule; `root` and every `excludedFolders` entry must be absolute.
    public init(id: String, root: String, recursive: Bool = false, include: [String] = [], exclude: [String] = [],
                settle: Duration = .seconds(2), readyMarker: String? = nil, excludedFolders: [String] = [],
                watchMode: WatchMode = .auto, pollInterval: Duration = .seconds(5)) {
        self.watchMode = watchMode
        self.pollInterval = pollInterval
        self.id = id
        self.root = root
        self.recursive = recursive
        self.include = include
        self.exclude = exclude
        self.settle = settle
        self.readyMarker = readyMarker
        self.excludedFolders = excludedFolders
    }
}

/// A file that has stopped changing for its rule's settle time (and has its ready marker, if required).
public struct CompletedFile: Sendable, Hashable {
    /// The rule the file belongs to: the first rule, in order, whose folder and patterns select it.
    public var ruleID: String
    /// Absolute path.
    public var path: String
    /// Path relative to the rule's root, `/`-separated.
    public var relativePath: String
    /// The version that settled.
    public var version: FileVersion

    /// Creates a report.
    public init(ruleID: String, path: String, relativePath: String, version: FileVersion) {
        self.ruleID = ruleID
        self.path = path
        self.relativePath = relativePath
        self.version = version
    }
}

/// Counters describing what the watcher has done, for `ferry status` and metrics.
public struct WatchStatistics: Sendable, Hashable {
    /// IN_Q_OVERFLOW events seen (each triggers a rescan of every root).
    public var overflows = 0
    /// Full scans of a root started: at start, after overflow, reconciliation, fallback polling, regained roots.
    public var scans = 0
    /// inotify watches currently held (one per watched folder).
    public var watches = 0
    /// Files reported as complete.
    public var reported = 0
    /// Files seen that no rule selects (filtered out, markers excluded) or that are not regular files.
    public var ignored = 0
    /// Files the caller's `isKnown` said it already has, so they were not reported.
    public var known = 0
    /// Times the single settle timer fired.
    public var timerWakeups = 0
    /// Times the inotify reader thread woke up.
    public var readerWakeups = 0
    /// Roots that could not be watched (watch limit) and are being scanned periodically instead.
    public var pollingRoots = 0
    /// Roots that are configured but currently missing.
    public var missingRoots = 0
    /// Files waiting to settle (or for their ready marker).
    public var pending = 0
    /// Whether the first scan of every root present at start has finished.
    public var initialScanComplete = false
    /// The most recent watch problem a user should act on (for example the watch limit, or leases being
    /// unavailable so open-for-writing detection is off), if any.
    public var lastProblem: String?
    /// Times a file that had settled was found still open for writing (by any process) and kept waiting.
    public var stillOpenForWriting = 0
    /// Files reported complete by stat stability alone because the kernel refused the write check
    /// (no CAP_LEASE for a file another user owns, or a file system without leases). Should stay 0.
    public var completedWithoutWriteCheck = 0
    /// Whether the open-for-writing check has been unavailable for some file (see `lastProblem`).
    public var writeCheckUnavailable = false
    /// How each attached root is watched and why, keyed by root (its description reads like
    /// "poll every 5s (auto: fuse is a network or FUSE file system)").
    public var watchModes: [String: WatchModeChoice] = [:]
    /// Incremental poll passes made over polled roots.
    public var pollPasses = 0
    /// Folders re-read by poll passes because their inode, mtime or ctime changed.
    public var pollFoldersRead = 0
    /// Reported files poll passes stat'ed again to find rewrites in place (`trackedFilesPerPass` a pass).
    public var pollFilesChecked = 0
    /// The last finished poll pass: wall time and this process's CPU time from its start until the
    /// folders it found changed were listed again (settling the files found comes later).
    public var lastPollPass: PollPassCost?

    /// What one poll pass cost.
    public struct PollPassCost: Sendable, Hashable {
        /// Wall time.
        public var wall: Duration
        /// Process CPU time (user + system) over the same span.
        public var cpu: Duration
        /// Folders listed again because they changed.
        public var foldersRead: Int
        /// The pass's number (`pollPasses` when it started).
        public var pass: Int
    }

    /// Creates zeroed statistics.
    public init() {}
}
