import FerryGlob
import FerrySystem
import Logging
import Synchronization
internal import Glibc

/// Everything the watcher's single loop reacts to, in arrival order.
enum WatchInput: Sendable {
    case events([InotifyEvent])
    case tick
    case continueScan
    case rules([WatchRule])
    case forget(String)
    case recheck(String)
}

/// A rule with its patterns compiled and its root normalised.
struct CompiledRule {
    let rule: WatchRule
    let filter: FileFilter
    let root: String
    /// Excludes that match a single name; a folder whose name matches one can hold no selected file.
    let folderExcludes: [Glob]
    /// `rule.excludedFolders`, normalised, each with the `/`-terminated prefix of what lies below it.
    let excludedFolders: [(folder: String, below: String)]

    init(_ rule: WatchRule) throws(WatchError) {
        self.rule = rule
        var root = rule.root
        while root.utf8.count > 1, root.hasByteSuffix("/") { root.removeLast() }
        guard root.hasBytePrefix("/") else {
            throw WatchError(code: .invalidPattern, message: "rule \(rule.id): watch path \(rule.root) must be absolute")
        }
        self.root = root
        do {
            filter = try FileFilter(include: rule.include, exclude: rule.exclude)
        } catch {
            throw WatchError(code: .invalidPattern, message: "rule \(rule.id): \(error)")
        }
        folderExcludes = filter.exclude.filter(\.matchesBaseName)
        var excluded: [(folder: String, below: String)] = []
        for var folder in rule.excludedFolders {
            while folder.utf8.count > 1, folder.hasByteSuffix("/") { folder.removeLast() }
            guard folder.hasBytePrefix("/") else {
                throw WatchError(code: .invalidPattern, message: "rule \(rule.id): excluded folder \(folder) must be absolute")
            }
            excluded.append((folder, folder == "/" ? "/" : folder + "/"))
        }
        excludedFolders = excluded
    }

    /// Whether `path` is one of the excluded folders or lies below one (compared byte for byte).
    func excludes(_ path: String) -> Bool {
        excludedFolders.contains { path.utf8.elementsEqual($0.folder.utf8) || path.hasBytePrefix($0.below) }
    }

    /// The folder's path relative to this rule's root with a trailing `/` ("" for the root itself), or
    /// nil when the rule does not cover that folder.
    /// Byte-exact: a folder spelled in NFD is not the NFC-spelled root.
    func relativeFolder(of path: String) -> String? {
        if !excludedFolders.isEmpty, excludes(path) { return nil }
        if path.utf8.elementsEqual(root.utf8) { return "" }
        guard rule.recursive else { return nil }
        let prefix = root == "/" ? "/" : root + "/"
        guard path.hasBytePrefix(prefix) else { return nil }
        let relative = path.droppingBytes(prefix.utf8.count)
        for segment in relative.utf8.split(separator: UInt8(ascii: "/")) {
            if segment.elementsEqual(".ferry".utf8) { return nil }
            let name = String(decoding: segment, as: UTF8.self)
            if folderExcludes.contains(where: { $0.matches(name) }) { return nil }
        }
        return relative + "/"
    }

    /// `FileFilter.accepts` for a file in a folder `relativeFolder(of:)` already admitted: that check
    /// ran the same single-name excludes over every folder segment once per folder, so per file only
    /// the whole-path excludes and the includes remain (half the glob matching in a burst).
    func selects(_ relativePath: String) -> Bool {
        if filter.exclude.contains(where: { $0.matches(relativePath) }) { return false }
        return filter.include.isEmpty || filter.include.contains { $0.matches(relativePath) }
    }
}

/// The statistics the loop publishes and `FolderWatcher.statistics` reads.
final class SharedStatistics: Sendable {
    private let state = Mutex(WatchStatistics())
    private let readerThread = Mutex<String?>(nil)
    var value: WatchStatistics { state.withLock { $0 } }
    func publish(_ statistics: WatchStatistics) { state.withLock { $0 = statistics } }
    /// `/proc/<pid>/task/<tid>` of the inotify reader thread, so tests can read its schedstat.
    var readerThreadProcPath: String? {
        get { readerThread.withLock { $0 } }
        set { readerThread.withLock { $0 = newValue } }
    }
}

/// What the one timer structure holds.
enum TimerPayload {
    case settle(node: UInt32, name: String)
    case reconcile
    case rootCheck(String)
    case poll(String)
    case pollPass(String)
    case moveExpiry(UInt32)
}

/// A file waiting to settle: the version seen last and when it may count as complete.
struct PendingFile {
    var version: FileVersion
    var deadline: ContinuousClock.Instant
    var settle: Duration
    /// The rule that selected the file, valid while `rulesGeneration` is unchanged, so the patterns are
    /// matched once per file rather than at every check.
    var rule: Int
    var rulesGeneration: Int
    var awaitingMarker = false
    var scheduled = false
}

/// One folder some rule covers. Per-file state lives here keyed by the short file name, so a file
/// costs a name and a version, not a full path.
final class FolderNode {
    let id: UInt32
    let path: String
    var wd: Int32 = -1
    /// Rules covering this folder, in priority order, with the folder's path relative to each root.
    var rules: [(index: Int, folder: String)]
    /// Keyed by bytes (`ExactString`): Unicode twins are different files on Linux.
    var subfolders = NameSet()
    var reported = NameTable<FileVersion>()
    var pending = NameTable<PendingFile>()
    /// In poll mode, the folder's inode, mtime and ctime when it was last listed: a pass re-reads it
    /// only when one of them changed (a create, delete or rename in it).
    var stamp: FolderStamp?

    init(id: UInt32, path: String, rules: [(index: Int, folder: String)]) {
        self.id = id
        self.path = path
        self.rules = rules
    }

    func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }
}

/// What a poll pass compares to tell whether a folder must be listed again.
struct FolderStamp: Equatable {
    var inode: UInt64
    var mtimeNanoseconds: Int64
    var ctimeNanoseconds: Int64

    /// The stamp of a folder relative to an open folder, without following a link; nil when it is gone.
    /// Fresh from the file system (`FileStatus.freshInfo`): an NFS client caches a folder's attributes
    /// for up to `acdirmax` (60 s by default) and FUSE for its attr_timeout, which would delay every
    /// new file by that much. Costs one GETATTR round trip per known folder per pass on NFS.
    static func of(_ path: String, in folder: Int32) -> FolderStamp? {
        guard let info = try? FileStatus.freshInfo(path, in: folder), info.st_mode & S_IFMT == S_IFDIR else { return nil }
        return FolderStamp(inode: UInt64(info.st_ino),
                           mtimeNanoseconds: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                           ctimeNanoseconds: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))
    }
}

/// The watcher's state and logic. It is used only from the task running `FolderWatcher.run()`, so it
/// needs no locks; the outside world reaches it through `WatchInput`.
final class WatchCore {
    enum RootStatus: Equatable {
        case watching
        case polling
        case missing(backoff: Duration, wasWatched: Bool)
    }

    enum Route {
        case file(rule: Int, relativePath: String)
        case marker(base: String)
        case none
    }

    static let firstRootCheck: Duration = .milliseconds(200)
    static let longestRootCheck: Duration = .seconds(30)
    static let moveExpiry: Duration = .seconds(1)
    static let scanSliceEntries = 4096
    static let timerSlack: Duration = .milliseconds(25)
    /// How many reported files a poll pass stats again, in folders taken in turn: a file rewritten in
    /// place under its old name changes no folder's mtime, so only a stat of the file itself shows it.
    /// Bounded so that a pass over a large unchanged tree stays cheap; a tree of N reported files is
    /// covered every ceil(N / 1000) passes (and by the full scan at each reconciliation).
    static let trackedFilesPerPass = 1_000

    private(set) var rules: [CompiledRule]
    private let inotify: Inotify
    private let input: AsyncStream<WatchInput>.Continuation
    private let output: AsyncStream<CompletedFile>.Continuation
    private let published: SharedStatistics
    private let isKnown: @Sendable (String, String, FileVersion) -> Bool
    private let writeCheck: WriteChecker
    private let reconcileInterval: Duration
    private let fallbackScanInterval: Duration
    private var logger: Logger
    private let debugEnabled: Bool

    private var counters = WatchStatistics()
    private var rootStates = NameTable<RootStatus>()
    /// How each attached root is watched (inotify or poll) and why, decided when it is attached.
    private var rootChoices = NameTable<WatchModeChoice>()
    /// Roots with a poll pass scheduled, so re-attaching does not schedule a second one.
    private var pollPassesScheduled = NameSet()
    /// The poll pass whose re-listings are still queued: when it started (wall and process CPU) and the
    /// folders read before it, so `lastPollPass` can say what it cost once the queue drains.
    private var passInProgress: (wall: ContinuousClock.Instant, cpu: Duration, foldersRead: Int, pass: Int)?
    /// Per polled root, the id of the last folder whose reported files a pass stat'ed again.
    private var trackedCursor = NameTable<UInt32>()
    /// Folders queued by a poll pass: their existing sub-folders are not queued with them (the pass
    /// stamps each folder itself); a full scan queued meanwhile takes the folder out of this set.
    private var incrementalScans: Set<UInt32> = []
    /// The folder (device, inode) each attached root resolved to, without links, when it was attached.
    private var rootIdentities = NameTable<FileIdentity>()
    /// Roots opened (from `/`, without links) and checked against `rootIdentities` during this loop
    /// turn; every stat, scan and open below a root goes through its descriptor. Closed at the end of
    /// the turn: a descriptor held longer would keep the root's file system busy (umount fails with
    /// EBUSY) and a deleted root's inode alive (no IN_DELETE_SELF).
    private var openRoots = NameTable<RootHandle>()
    /// The causes (code and errno) for which "cannot check for writers" was logged, so each is said once.
    private var writeCheckProblemsLogged: Set<String> = []
    private var byPath = NameTable<FolderNode>()
    private var byWD: [Int32: FolderNode] = [:]
    private var byID: [UInt32: FolderNode] = [:]
    private var nextID: UInt32 = 0
    private var timers = DeadlineHeap<TimerPayload>()
    private var armedDeadline: ContinuousClock.Instant?
    private var lastTick = ContinuousClock.now
    /// Rings at the earliest timer's deadline; `FolderWatcher.run()` turns each ring into a `.tick`.
    private let alarm: Alarm
    private var scanQueue: [UInt32] = []
    private var scanQueueHead = 0
    private var queuedScans: Set<UInt32> = []
    private var scanKickOutstanding = false
    private var pendingMoves: [UInt32: [Int32]] = [:]
    private var rulesGeneration = 0
    private var rootChecksScheduled = NameSet()
    /// Reports of one loop turn, handed over together so a consumer wakes once per batch, not per file.
    private var outbox: [CompletedFile] = []
    private let clock = ContinuousClock()

    init(rules: [WatchRule], inotify: Inotify, alarm: Alarm, input: AsyncStream<WatchInput>.Continuation,
         output: AsyncStream<CompletedFile>.Continuation, published: SharedStatistics,
         isKnown: @escaping @Sendable (String, String, FileVersion) -> Bool,
         reconcileInterval: Duration, fallbackScanInterval: Duration, logger: Logger,
         writeCheck: @escaping WriteChecker = WriteCheck.of) throws(WatchError) {
        var compiled: [CompiledRule] = []
        for rule in rules { compiled.append(try CompiledRule(rule)) }
        self.rules = compiled
        self.inotify = inotify
        self.alarm = alarm
        self.input = input
        self.output = output
        self.published = published
        self.isKnown = isKnown
        self.writeCheck = writeCheck
        self.reconcileInterval = reconcileInterval
        self.fallbackScanInterval = fallbackScanInterval
        self.logger = logger
        self.debugEnabled = logger.logLevel <= .debug
    }
}

// MARK: - The loop

extension WatchCore {
    /// Starts watching every root and queues the start-up scan.
    func start() {
        for root in distinctRoots() where rootStates[root] == nil {
            rootStates[root] = .missing(backoff: Self.firstRootCheck, wasWatched: false)
            attachRoot(root, reason: "start")
        }
        schedule(.reconcile, after: reconcileInterval)
        afterInput()
    }

    func handle(_ item: WatchInput) {
        switch item {
        case .events(let batch):
            for event in batch { handle(event) }
            inotify.batchConsumed()
        case .tick:
            counters.timerWakeups += 1
            armedDeadline = nil
            lastTick = clock.now
            fireDueTimers()
        case .continueScan:
            scanKickOutstanding = false
            scanSlice()
        case .rules(let newRules):
            apply(newRules)
        case .forget(let path):
            forget(path)
        case .recheck(let path):
            recheck(path)
        }
        afterInput()
    }

    func shutdown() {
        for node in byWD.values { inotify.removeWatch(node.wd) }
        byWD.removeAll()
        openRoots.removeAll()
        rootIdentities.removeAll()
        counters.watches = 0
        publish()
    }

    private func afterInput() {
        openRoots.removeAll()
        for file in outbox { output.yield(file) }
        outbox.removeAll(keepingCapacity: true)
        if scanQueueHead < scanQueue.count {
            if !scanKickOutstanding {
                scanKickOutstanding = true
                input.yield(.continueScan)
            }
        } else {
            counters.initialScanComplete = true
            if let pass = passInProgress {
                passInProgress = nil
                counters.lastPollPass = .init(wall: clock.now - pass.wall, cpu: Self.processCPUTime() - pass.cpu,
                                              foldersRead: counters.pollFoldersRead - pass.foldersRead, pass: pass.pass)
            }
        }
        armTimer()
        publish()
    }

    private func publish() {
        counters.watches = byWD.count
        counters.readerWakeups = inotify.readerWakeups.load(ordering: .relaxed)
        if published.readerThreadProcPath == nil {
            published.readerThreadProcPath = inotify.readerThreadProcPath.withLock { $0 }
        }
        counters.missingRoots = rootStates.values.filter { if case .missing = $0 { true } else { false } }.count
        counters.pollingRoots = rootStates.values.filter { $0 == .polling }.count
        published.publish(counters)
    }

    // MARK: Timers

    private func schedule(_ payload: TimerPayload, after delay: Duration) {
        timers.insert(payload, at: clock.now.advanced(by: delay))
    }

    /// Arms the alarm for the earliest deadline; a later deadline needs nothing (the alarm rings first).
    /// Fires are at least `timerSlack` apart so a stream of files settling a few µs apart is handled in
    /// batches; a file may complete up to that much after its settle time, never before.
    private func armTimer() {
        guard var earliest = timers.earliest else { return }
        if let armed = armedDeadline, armed <= earliest { return }
        earliest = max(earliest, lastTick.advanced(by: Self.timerSlack))
        armedDeadline = earliest
        alarm.arm(notAfter: earliest)
    }

    private func fireDueTimers() {
        let now = clock.now
        while let entry = timers.popDue(at: now) {
            switch entry.payload {
            case .settle(let id, let name): settleCheck(node: id, name: name, now: now)
            case .reconcile:
                reconcile()
                schedule(.reconcile, after: reconcileInterval)
            case .rootCheck(let root):
                rootChecksScheduled.remove(root)
                checkRoot(root)
            case .poll(let root):
                guard rootStates[root] == .polling else { break }
                if let node = byPath[root] {
                    counters.scans += 1
                    enqueueScan(node)
                } else {
                    attachRoot(root, reason: "fallback scan")
                }
                schedule(.poll(root), after: fallbackScanInterval)
            case .pollPass(let root):
                pollPassesScheduled.remove(root)
                pollPass(root)
            case .moveExpiry(let cookie):
                // The folder left the watched trees: its old watches now point outside and must go.
                for wd in pendingMoves.removeValue(forKey: cookie) ?? [] where byWD[wd] == nil {
                    inotify.removeWatch(wd)
                }
            }
        }
    }

    // MARK: Events

    private func handle(_ event: InotifyEvent) {
        if event.has(InotifyFlag.overflow) {
            counters.overflows += 1
            logger.info("inotify queue overflowed; rescanning every watched folder",
                        metadata: ["watch.overflows": "\(counters.overflows)"])
            rescanAll()
            return
        }
        guard let node = byWD[event.wd] else { return }
        if event.undecodableName {
            // Not valid UTF-8: it could not be named byte-exactly, so ferry never acts on it.
            counters.ignored += 1
            if debugEnabled { logger.debug("ignoring a name that is not valid UTF-8", metadata: ["watch.folder": "\(node.path)"]) }
            return
        }
        if event.has(InotifyFlag.ignored) {
            byWD[event.wd] = nil
            node.wd = -1
            drop(node, removeWatches: true, reason: "its watch was removed by the kernel")
            return
        }
        if event.name.isEmpty {
            if event.has(InotifyFlag.deleteSelf) || event.has(InotifyFlag.unmount) {
                drop(node, removeWatches: true, reason: event.has(InotifyFlag.unmount) ? "unmounted" : "deleted")
            } else if event.has(InotifyFlag.moveSelf), rootStates[node.path] != nil {
                // The watch follows the moved folder; the root path itself is now gone or something else.
                drop(node, removeWatches: true, reason: "moved away")
            }
            return
        }
        if event.has(InotifyFlag.isDir) {
            let path = node.childPath(event.name)
            if event.has(InotifyFlag.create) || event.has(InotifyFlag.movedTo) {
                if let child = ensureNode(path) { enqueueScan(child) }
            } else if event.has(InotifyFlag.delete) {
                if let child = byPath[path] { drop(child, removeWatches: true, reason: "deleted") }
            } else if event.has(InotifyFlag.movedFrom) {
                // Keep the watches until the pairing IN_MOVED_TO re-adds them (same inode, same wd);
                // an unpaired half expires and its watches are removed then.
                if let child = byPath[path] {
                    let watches = drop(child, removeWatches: false, reason: "moved away")
                    pendingMoves[event.cookie, default: []].append(contentsOf: watches)
                    schedule(.moveExpiry(event.cookie), after: Self.moveExpiry)
                }
            }
            return
        }
        if event.has(InotifyFlag.closeWrite) || event.has(InotifyFlag.movedTo) || event.has(InotifyFlag.attrib) {
            consider(event.name, in: node, status: nil, fromScan: false)
        } else if event.has(InotifyFlag.delete) || event.has(InotifyFlag.movedFrom) {
            if node.pending.removeValue(forKey: event.name) != nil { counters.pending -= 1 }
            node.reported[event.name] = nil
        } else if event.has(InotifyFlag.create) {
            // A name given with link() (an inbound placement, `ln`, a tool that writes elsewhere and links
            // the file in) raises IN_CREATE and nothing after it: the file is complete already. So every
            // created file starts settling now; one still being written is held by the open-for-writing
            // check when it settles (and its IN_CLOSE_WRITE restarts the clock), exactly as a scanned one.
            consider(event.name, in: node, status: nil, fromScan: false)
        }
    }

    private func noteIgnored(_ path: String, kind: FileStatus.Kind) {
        counters.ignored += 1
        guard debugEnabled else { return }
        switch kind {
        case .symbolicLink:
            logger.debug("ignoring symbolic link: links are never followed", metadata: ["file.path": "\(path)"])
        case .other(let what):
            logger.debug("ignoring \(what): not a regular file", metadata: ["file.path": "\(path)"])
        case .regular, .directory:
            break
        }
    }
}

// MARK: - Folders and roots

extension WatchCore {
    private func distinctRoots() -> [String] {
        var seen = NameSet()
        return rules.map(\.root).filter { seen.insert($0).inserted }
    }

    /// This turn's descriptor of a root covering `node`, and the node's folder relative to it ("" for
    /// the root, else ending in `/`); nil when no covering root is attached (or it was just lost).
    private func anchor(of node: FolderNode) -> (fd: Int32, folder: String)? {
        for covering in node.rules {
            let root = rules[covering.index].root
            guard rootIdentities[root] != nil else { continue }
            if let fd = rootDescriptor(root) { return (fd, covering.folder) }
            // The root was lost, and this folder with it.
            if byID[node.id] !== node { return nil }
        }
        return nil
    }

    /// The root's descriptor for this loop turn: opened from `/` with no link in any component and
    /// checked to be the folder that was attached. A root whose path now leads elsewhere (a parent
    /// swapped for a link, a mount over it, a new folder) is lost here, before anything below it is
    /// stat'ed, scanned or reported, and is never re-attached through a link.
    private func rootDescriptor(_ root: String) -> Int32? {
        if let open = openRoots[root] { return open.fd }
        guard let identity = rootIdentities[root] else { return nil }
        switch RootHandle.open(root) {
        case .success(let handle) where handle.identity == identity:
            openRoots[root] = handle
            return handle.fd
        case .success:
            rootLost(root, reason: Self.lossReason(.replaced))
        case .failure(let problem):
            if case .symbolicLink = problem { counters.lastProblem = "stopped watching \(root): \(Self.lossReason(problem))" }
            rootLost(root, reason: Self.lossReason(problem))
        }
        return nil
    }

    /// fstatat of a file in `node`, relative to its root's descriptor: a parent folder swapped for a
    /// link above the root cannot redirect it.
    private func status(of name: String, in node: FolderNode) -> FileStatus? {
        guard let anchor = anchor(of: node) else { return nil }
        return FileStatus.of(anchor.folder + name, in: anchor.fd)
    }

    /// Splits an absolute path at its last `/`, byte-wise (a `/` followed by a combining mark is one
    /// Character to Swift, but still a separator to Linux).
    private static func parentAndName(_ path: String) -> (parent: String, name: String)? {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        let parent = slash == path.utf8.startIndex ? "/" : String(decoding: path.utf8[..<slash], as: UTF8.self)
        return (parent, String(decoding: path.utf8[path.utf8.index(after: slash)...], as: UTF8.self))
    }

    private func coveringRules(_ path: String) -> [(index: Int, folder: String)] {
        var covering: [(index: Int, folder: String)] = []
        for (index, rule) in rules.enumerated() {
            if let folder = rule.relativeFolder(of: path) { covering.append((index, folder)) }
        }
        return covering
    }

    /// A folder needs a watch when one of its rules' roots is being watched (not polled for lack of watches).
    private func needsWatch(_ node: FolderNode) -> Bool {
        node.rules.contains {
            let root = rules[$0.index].root
            return rootStates[root] == .watching && rootChoices[root]?.mode != .poll
        }
    }

    /// Whether some root covering the folder is polled, so its listings are stamped.
    private func isPolled(_ node: FolderNode) -> Bool {
        node.rules.contains { rootChoices[rules[$0.index].root]?.mode == .poll }
    }

    /// Decides (again) how `root` is watched from its rules' `watchMode` and its file system type,
    /// logs a new or changed choice, and schedules the poll passes of a polled root. A root shared by
    /// rules asking for different modes is polled (polling sees everything inotify sees), at the
    /// shortest of their intervals.
    private func chooseMode(_ root: String, descriptor fd: Int32) {
        let covering = rules.filter { $0.root == root }.map(\.rule)
        let requested: WatchMode = covering.contains { $0.watchMode == .poll } ? .poll
            : covering.contains { $0.watchMode == .auto } ? .auto : .inotify
        let interval = covering.map(\.pollInterval).min() ?? .seconds(5)
        let kind = FileSystemKind.of(descriptor: fd)
        var choice = WatchModeChoice.decide(requested, on: kind, pollInterval: interval)
        if choice.mode == .poll, kind?.isNFS == true { choice.attributeCacheTime = NFSAttributeCache.time(forFolder: fd) }
        if rootChoices[root] != choice {
            rootChoices[root] = choice
            counters.watchModes[root] = choice
            logger.info("watching \(root) with \(choice)", metadata: ["watch.root": "\(root)", "watch.mode": "\(choice.mode.rawValue)"])
        }
        if choice.mode == .poll, pollPassesScheduled.insert(root).inserted {
            schedule(.pollPass(root), after: choice.pollInterval)
        }
    }

    /// One incremental pass over a polled root. Every known folder is stat'ed (one statx each, fresh
    /// from the file system, relative to the root's descriptor) and only those whose inode, mtime or
    /// ctime changed since they were last listed are listed again: no per-file work for unchanged
    /// folders. Then at most `trackedFilesPerPass` reported files, folder by folder in turn, are
    /// stat'ed for rewrites in place, which change no folder. Files still settling need nothing here:
    /// their settle check looks at them again, fresh from the file system, when their time is up.
    private func pollPass(_ root: String) {
        guard let choice = rootChoices[root], choice.mode == .poll, rootStates[root] == .watching else { return }
        defer {
            if rootChoices[root]?.mode == .poll, pollPassesScheduled.insert(root).inserted {
                schedule(.pollPass(root), after: choice.pollInterval)
            }
        }
        guard let fd = rootDescriptor(root), let top = byPath[root] else { return }
        counters.pollPasses += 1
        if passInProgress == nil {
            passInProgress = (clock.now, Self.processCPUTime(), counters.pollFoldersRead, counters.pollPasses)
        }
        var tracked: [(node: FolderNode, folder: String)] = []
        var stack = [top]
        while let node = stack.popLast() {
            for name in node.subfolders { if let child = byPath[node.childPath(name)] { stack.append(child) } }
            guard let folder = node.rules.first(where: { rules[$0.index].root == root })?.folder else { continue }
            if !node.reported.isEmpty { tracked.append((node, folder)) }
            let stamp = FolderStamp.of(folder.isEmpty ? "." : folder.droppingLastBytes(1), in: fd)
            guard stamp == nil || stamp != node.stamp else { continue }
            if queuedScans.insert(node.id).inserted {
                scanQueue.append(node.id)
                incrementalScans.insert(node.id)
            }
        }
        revisitTracked(tracked, of: root, below: fd)
    }

    /// Stats reported files again for rewrites in place, whole folders at a time in order of folder id
    /// starting after the last one visited, until `trackedFilesPerPass` files were looked at.
    private func revisitTracked(_ tracked: [(node: FolderNode, folder: String)], of root: String, below fd: Int32) {
        guard !tracked.isEmpty else { return }
        let ordered = tracked.sorted { $0.node.id < $1.node.id }
        let cursor = trackedCursor[root] ?? 0
        let first = ordered.firstIndex { $0.node.id > cursor } ?? 0
        var budget = Self.trackedFilesPerPass
        var index = first
        repeat {
            let (node, folder) = ordered[index]
            trackedCursor[root] = node.id
            for (key, version) in node.reported.storage where node.pending[key.string] == nil {
                let name = key.string
                budget -= 1
                counters.pollFilesChecked += 1
                guard let status = FileStatus.of(folder + name, in: fd) else { continue }
                if status.version != version { consider(name, in: node, status: status, fromScan: true) }
            }
            index = (index + 1) % ordered.count
        } while budget > 0 && index != first
    }

    /// This process's CPU time so far (CLOCK_PROCESS_CPUTIME_ID), to tell what a poll pass cost.
    static func processCPUTime() -> Duration {
        var now = timespec()
        guard (try? Syscall.retrying("clock_gettime") { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now) }) != nil else { return .zero }
        return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
    }

    /// A rule's settle time; in poll mode on NFS at least the client's attribute-cache time, so that
    /// two looks at a file cannot both be one cached answer.
    private func settleWindow(_ rule: Int) -> Duration {
        let settle = rules[rule].rule.settle
        guard let choice = rootChoices[rules[rule].root], choice.mode == .poll else { return settle }
        return max(settle, choice.attributeCacheTime)
    }

    /// The node for a covered folder, created (and watched) if new; nil if no rule covers it or it vanished.
    @discardableResult
    private func ensureNode(_ path: String) -> FolderNode? {
        if let existing = byPath[path] {
            if existing.wd < 0, needsWatch(existing), !watch(existing) {
                drop(existing, removeWatches: true, reason: "vanished")
                return nil
            }
            return existing
        }
        let covering = coveringRules(path)
        guard !covering.isEmpty else { return nil }
        nextID &+= 1
        let node = FolderNode(id: nextID, path: path, rules: covering)
        byPath[path] = node
        byID[node.id] = node
        if let split = Self.parentAndName(path), split.parent != path, let parent = byPath[split.parent] {
            parent.subfolders.insert(split.name)
        }
        // Watch before listing, so a file created between the two is seen by one or the other.
        if needsWatch(node), !watch(node) {
            drop(node, removeWatches: false, reason: "vanished")
            return nil
        }
        return node
    }

    /// Adds the inotify watch; false when the folder is gone. A full watch table switches the roots
    /// involved to periodic scanning instead of failing.
    private func watch(_ node: FolderNode) -> Bool {
        guard byID[node.id] === node, let anchor = anchor(of: node) else { return false }
        do {
            // Opened below the root's descriptor with no link in any component, then watched through
            // the folder's own descriptor: the path is never resolved again.
            let folder = try SafeOpen.below(anchor.fd, anchor.folder.isEmpty ? "." : anchor.folder.droppingLastBytes(1),
                                            flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            defer { close(folder) }
            let wd = try inotify.addWatch(folder: folder, path: node.path)
            if let other = byWD[wd], other !== node { other.wd = -1 }
            node.wd = wd
            byWD[wd] = node
            return true
        } catch {
            if error.code == .tooManyWatches {
                fallBackToScanning(node, error)
                return true
            }
            if let code = error.errno, code == .noSuchFileOrDirectory || code == .notDirectory || code == .tooManySymbolicLinkLevels {
                return false
            }
            logger.info("cannot watch folder; it is still scanned at every reconciliation",
                        metadata: ["watch.folder": "\(node.path)", "watch.error": "\(error)"])
            return true
        }
    }

    private func fallBackToScanning(_ node: FolderNode, _ error: WatchError) {
        var roots = NameSet()
        for covering in node.rules { roots.insert(rules[covering.index].root) }
        var newlyPolling: [String] = []
        for root in roots.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) where rootStates[root] == .watching {
            rootStates[root] = .polling
            newlyPolling.append(root)
            schedule(.poll(root), after: fallbackScanInterval)
        }
        guard !newlyPolling.isEmpty else { return }
        let message = "\(error.message); until then ferry scans \(newlyPolling.joined(separator: ", ")) every \(fallbackScanInterval) instead of watching it"
        counters.lastProblem = message
        logger.info("\(message)", metadata: ["watch.root": "\(newlyPolling.joined(separator: ","))"])
        // Half-watched trees would look healthy while missing events; release their watches for others.
        for (wd, watched) in byWD where !needsWatch(watched) {
            inotify.removeWatch(wd)
            byWD[wd] = nil
            watched.wd = -1
        }
    }

    /// Forgets a folder and everything under it; returns the watch descriptors that were held.
    @discardableResult
    private func drop(_ node: FolderNode, removeWatches: Bool, reason: String) -> [Int32] {
        guard byID[node.id] === node else { return [] }
        var watches: [Int32] = []
        for name in node.subfolders {
            if let child = byPath[node.childPath(name)] {
                watches += drop(child, removeWatches: removeWatches, reason: reason)
            }
        }
        byID[node.id] = nil
        byPath[node.path] = nil
        counters.pending -= node.pending.count
        if node.wd >= 0 {
            if byWD[node.wd] === node { byWD[node.wd] = nil }
            if removeWatches { inotify.removeWatch(node.wd) }
            watches.append(node.wd)
            node.wd = -1
        }
        if let split = Self.parentAndName(node.path), split.parent != node.path, let parent = byPath[split.parent] {
            parent.subfolders.remove(split.name)
        }
        if rootStates[node.path] != nil { rootLost(node.path, reason: reason) }
        return watches
    }

    private func rootLost(_ root: String, reason: String) {
        if case .missing = rootStates[root] { return }
        rootStates[root] = .missing(backoff: Self.firstRootCheck, wasWatched: true)
        rootIdentities[root] = nil
        openRoots[root] = nil
        logger.info("watched folder is gone (\(reason)); watching it again when it reappears",
                    metadata: ["watch.root": "\(root)"])
        scheduleRootCheck(root, after: Self.firstRootCheck)
        if let node = byPath[root] { drop(node, removeWatches: true, reason: reason) }
    }

    /// Watches and scans a root whose path resolves, from `/`, with no symbolic link in any component;
    /// otherwise marks it missing and checks again with backoff. Never attaches through a link.
    private func attachRoot(_ root: String, reason: String, opened: RootHandle? = nil) {
        let handle: RootHandle
        if let opened {
            handle = opened
        } else {
            switch RootHandle.open(root) {
            case .success(let resolved): handle = resolved
            case .failure(let problem):
                if case .missing(_, let wasWatched) = rootStates[root] {
                    if reason == "start" {
                        let until = if case .symbolicLink = problem { "it is not watched while its path has a link" } else { "checking again until it appears" }
                        logger.info("cannot watch folder: \(problem.explanation); \(until)", metadata: ["watch.root": "\(root)"])
                        // A link is a configuration mistake, not a folder that will appear: show it in status.
                        if case .symbolicLink = problem { counters.lastProblem = "cannot watch \(root): \(problem.explanation)" }
                    }
                    rootStates[root] = .missing(backoff: Self.firstRootCheck, wasWatched: wasWatched)
                } else {
                    rootLost(root, reason: Self.lossReason(problem))
                    return
                }
                scheduleRootCheck(root, after: Self.firstRootCheck)
                return
            }
        }
        let previous = rootStates[root]
        rootStates[root] = .watching
        rootIdentities[root] = handle.identity
        openRoots[root] = handle
        chooseMode(root, descriptor: handle.fd)
        guard let node = ensureNode(root) else { return }
        if case .missing(_, true) = previous {
            logger.info("watched folder is back; watching and scanning it again", metadata: ["watch.root": "\(root)"])
        }
        counters.scans += 1
        enqueueScan(node)
    }

    /// The reason logged when a watched root's path stops leading to the folder that was watched.
    private static func lossReason(_ problem: RootHandle.Problem) -> String {
        switch problem {
        case .missing: "missing"
        case .replaced: "replaced"
        case .symbolicLink(let link):
            "its path now goes through a symbolic link\(link.map { " (\($0))" } ?? ""), which ferry never follows"
        case .notDirectory: "it is no longer a folder"
        case .other(let error): "\(error)"
        }
    }

    /// One pending check per missing root, however many paths noticed it was gone.
    private func scheduleRootCheck(_ root: String, after delay: Duration) {
        guard rootChecksScheduled.insert(root).inserted else { return }
        schedule(.rootCheck(root), after: delay)
    }

    private func checkRoot(_ root: String) {
        guard case .missing(let backoff, let wasWatched) = rootStates[root] else { return }
        if case .success(let handle) = RootHandle.open(root) {
            attachRoot(root, reason: "reappeared", opened: handle)
        } else {
            let next = min(backoff * 2, Self.longestRootCheck)
            rootStates[root] = .missing(backoff: next, wasWatched: wasWatched)
            scheduleRootCheck(root, after: next)
        }
    }

    /// The periodic safety net: notices roots replaced under a live watch (a mount over the folder),
    /// retries watching roots that fell back to scanning, and rescans everything.
    private func reconcile() {
        for root in distinctRoots() {
            switch rootStates[root] {
            case .watching, .polling:
                // rootDescriptor re-resolves the path and loses the root if it now leads elsewhere.
                if byPath[root] == nil || rootDescriptor(root) == nil {
                    rootLost(root, reason: "replaced")
                    attachRoot(root, reason: "replaced")
                    continue
                }
                guard rootStates[root] == .polling else { continue }
                rootStates[root] = .watching
                if let node = byPath[root] {
                    if node.wd < 0 { _ = watch(node) }
                } else {
                    attachRoot(root, reason: "retry")
                }
            case .missing, nil:
                continue
            }
        }
        rescanAll()
    }

    private func rescanAll() {
        for root in distinctRoots() {
            guard let node = byPath[root] else { continue }
            counters.scans += 1
            enqueueScan(node)
        }
    }

    private func apply(_ newRules: [WatchRule]) {
        var compiled: [CompiledRule] = []
        do {
            for rule in newRules { compiled.append(try CompiledRule(rule)) }
        } catch {
            logger.info("new watch rules refused; the running ones stay", metadata: ["watch.error": "\(error)"])
            return
        }
        rules = compiled
        rulesGeneration += 1
        var roots = NameSet()
        for root in distinctRoots() { roots.insert(root) }
        for root in rootStates.keys where !roots.contains(root) {
            rootStates[root] = nil
            rootChoices[root] = nil
            trackedCursor[root] = nil
            counters.watchModes[root] = nil
            rootIdentities[root] = nil
            openRoots[root] = nil
        }
        for node in Array(byID.values) {
            node.rules = coveringRules(node.path)
        }
        for node in Array(byID.values) where node.rules.isEmpty {
            drop(node, removeWatches: true, reason: "no longer watched")
        }
        for root in distinctRoots() where rootStates[root] == nil {
            rootStates[root] = .missing(backoff: Self.firstRootCheck, wasWatched: false)
            attachRoot(root, reason: "start")
        }
        for root in distinctRoots() where rootIdentities[root] != nil {
            if let fd = rootDescriptor(root) { chooseMode(root, descriptor: fd) }
        }
        for (wd, watched) in byWD where !needsWatch(watched) {
            inotify.removeWatch(wd)
            byWD[wd] = nil
            watched.wd = -1
        }
        for node in byID.values where node.wd < 0 && needsWatch(node) { _ = watch(node) }
        logger.info("watch rules updated", metadata: ["watch.rules": "\(rules.count)"])
        rescanAll()
    }

    /// Forgets the file and starts its settle clock again, so the same version is reported once more
    /// when it is complete: for a report the engine declined because a writer had opened it meanwhile.
    private func recheck(_ path: String) {
        forget(path)
        guard let (folder, name) = Self.parentAndName(path), let node = byPath[folder] else { return }
        consider(name, in: node, status: nil, fromScan: false)
    }

    private func forget(_ path: String) {
        guard let (folder, name) = Self.parentAndName(path), let node = byPath[folder] else { return }
        // Only what was reported is forgotten: a version that arrived meanwhile (a file moved back in
        // just after the old one was archived) keeps settling and is reported.
        node.reported[name] = nil
    }
}

// MARK: - Scanning

extension WatchCore {
    private func enqueueScan(_ node: FolderNode) {
        incrementalScans.remove(node.id)
        guard queuedScans.insert(node.id).inserted else { return }
        scanQueue.append(node.id)
    }

    /// Scans queued folders until a budget of entries is spent, then lets events in before continuing.
    private func scanSlice() {
        var budget = Self.scanSliceEntries
        while budget > 0, scanQueueHead < scanQueue.count {
            let id = scanQueue[scanQueueHead]
            scanQueueHead += 1
            queuedScans.remove(id)
            let incremental = incrementalScans.remove(id) != nil
            if let node = byID[id] { budget -= 1 + scan(node, incremental: incremental) }
        }
        if scanQueueHead == scanQueue.count {
            scanQueue.removeAll(keepingCapacity: false)
            scanQueueHead = 0
        }
    }

    /// Lists one folder: new sub-folders are watched and queued, regular files become candidates, and
    /// state for names no longer present is dropped. Returns the number of entries seen.
    /// An incremental scan (a poll pass's) queues only new sub-folders; the pass stamps the others.
    private func scan(_ node: FolderNode, incremental: Bool = false) -> Int {
        var seen = NameSet()
        var subfolders: [String] = []
        guard let anchor = anchor(of: node) else { return 0 }
        if isPolled(node) {
            // Stamped before listing: a change made while listing shows in the next pass.
            node.stamp = FolderStamp.of(anchor.folder.isEmpty ? "." : anchor.folder.droppingLastBytes(1), in: anchor.fd)
            counters.pollFoldersRead += incremental ? 1 : 0
        }
        do {
            let undecodable = try FolderListing.read(anchor.folder.isEmpty ? "" : anchor.folder.droppingLastBytes(1), below: anchor.fd) { folder, name, type in
                seen.insert(name)
                var type = type
                var status: FileStatus?
                if type == .unknown || type == .other || type == .regular {
                    status = FileStatus.of(name, in: folder)
                    switch status?.kind {
                    case .regular?: type = .regular
                    case .directory?: type = .directory
                    case .symbolicLink?: type = .symbolicLink
                    default: type = .other
                    }
                }
                let path = node.childPath(name)
                switch type {
                case .directory: subfolders.append(path)
                case .regular: if let status { consider(name, in: node, status: status, fromScan: true) }
                case .symbolicLink: noteIgnored(path, kind: .symbolicLink)
                case .other, .unknown: if let status { noteIgnored(path, kind: status.kind) }
                }
            }
            if undecodable > 0 {
                counters.ignored += undecodable
                if debugEnabled { logger.debug("ignoring names that are not valid UTF-8", metadata: ["watch.folder": "\(node.path)", "watch.count": "\(undecodable)"]) }
            }
        } catch {
            if let code = error.errno, code == .noSuchFileOrDirectory || code == .notDirectory || code == .tooManySymbolicLinkLevels {
                drop(node, removeWatches: true, reason: "vanished")
            } else {
                logger.info("cannot list folder", metadata: ["watch.folder": "\(node.path)", "watch.error": "\(error)"])
            }
            return 0
        }
        for path in subfolders {
            if incremental, byPath[path] != nil { continue }
            if let child = ensureNode(path) { enqueueScan(child) }
        }
        for name in node.subfolders where !seen.contains(name) {
            if let child = byPath[node.childPath(name)] { drop(child, removeWatches: true, reason: "vanished") }
        }
        for name in node.reported.keys where !seen.contains(name) { node.reported[name] = nil }
        for name in node.pending.keys where !seen.contains(name) {
            node.pending[name] = nil
            counters.pending -= 1
        }
        return seen.count
    }
}

// MARK: - Settling

extension WatchCore {
    /// The first rule whose folder and patterns select the file, or that it is a ready marker.
    private func route(_ name: String, in node: FolderNode) -> Route {
        for covering in node.rules {
            let rule = rules[covering.index]
            if let marker = rule.rule.readyMarker, !marker.isEmpty, name.utf8.count > marker.utf8.count, name.hasByteSuffix(marker) {
                let base = name.droppingLastBytes(marker.utf8.count)
                if case .file(let owner, _) = route(base, in: node), owner == covering.index { return .marker(base: base) }
            }
        }
        for covering in node.rules {
            let rule = rules[covering.index]
            let relative = covering.folder + name
            guard rule.selects(relative) else { continue }
            if let marker = rule.rule.readyMarker, !marker.isEmpty, name.hasByteSuffix(marker) { return .none }
            return .file(rule: covering.index, relativePath: relative)
        }
        return .none
    }

    /// A file may have changed: start (or restart) its settle clock unless this version was reported.
    private func consider(_ name: String, in node: FolderNode, status known: FileStatus?, fromScan: Bool) {
        // The common case of a re-listed folder (a poll pass, a reconciliation): a file already
        // reported in this version. Only completed files are in `reported` (never markers or files
        // no rule selects), so this answers before any pattern is matched.
        if let known, node.reported[name] == known.version { return }
        let rule: Int
        switch route(name, in: node) {
        case .none:
            counters.ignored += 1
            if debugEnabled { logger.debug("not selected by any rule", metadata: ["file.path": "\(node.childPath(name))"]) }
            return
        case .marker(let base):
            markerAppeared(for: base, in: node)
            return
        case .file(let index, _):
            rule = index
        }
        guard let status = known ?? status(of: name, in: node) else { return }
        guard status.kind == .regular else {
            noteIgnored(node.childPath(name), kind: status.kind)
            return
        }
        if node.reported[name] == status.version { return }
        if fromScan, node.pending[name] == nil, isKnown(rules[rule].rule.id, node.childPath(name), status.version) {
            // A version the journal already has, found by a scan (a restart's start-up scan, a poll
            // pass): it would only be settled to be dropped as known. Skipping that saves a write
            // check per file and keeps a large tree's start-up from holding a pending entry and a
            // timer for every file at once. A later change is a new version and settles as usual.
            node.reported[name] = status.version
            counters.known += 1
            return
        }
        let settle = settleWindow(rule)
        let now = clock.now
        if var pending = node.pending[name] {
            if fromScan, pending.version == status.version { return }
            pending.version = status.version
            pending.deadline = now.advanced(by: settle)
            pending.settle = settle
            pending.rule = rule
            pending.rulesGeneration = rulesGeneration
            pending.awaitingMarker = false
            if !pending.scheduled {
                pending.scheduled = true
                timers.insert(.settle(node: node.id, name: name), at: pending.deadline)
            }
            node.pending[name] = pending
        } else {
            let deadline = now.advanced(by: settle)
            node.pending[name] = PendingFile(version: status.version, deadline: deadline, settle: settle, rule: rule,
                                             rulesGeneration: rulesGeneration, scheduled: true)
            counters.pending += 1
            timers.insert(.settle(node: node.id, name: name), at: deadline)
        }
    }

    /// A marker for a file that already settled sends it through the full check again at once (the
    /// write check included), rather than completing it on the version seen earlier.
    private func markerAppeared(for base: String, in node: FolderNode) {
        if var pending = node.pending[base], pending.awaitingMarker {
            pending.awaitingMarker = false
            pending.deadline = clock.now
            if !pending.scheduled {
                pending.scheduled = true
                timers.insert(.settle(node: node.id, name: base), at: pending.deadline)
            }
            node.pending[base] = pending
            return
        }
        consider(base, in: node, status: nil, fromScan: false)
    }

    private func settleCheck(node id: UInt32, name: String, now: ContinuousClock.Instant) {
        guard let node = byID[id], var pending = node.pending[name] else { return }
        pending.scheduled = false
        if pending.deadline > now {
            pending.scheduled = true
            timers.insert(.settle(node: id, name: name), at: pending.deadline)
            node.pending[name] = pending
            return
        }
        let rule: Int
        if pending.rulesGeneration == rulesGeneration {
            rule = pending.rule
        } else if case .file(let index, _) = route(name, in: node) {
            rule = index
        } else {
            node.pending[name] = nil
            counters.pending -= 1
            return
        }
        guard let folder = node.rules.first(where: { $0.index == rule })?.folder else { return }
        let root = rules[rule].root
        guard let rootFD = rootDescriptor(root) else {
            // A lost root dropped this folder (and this file) with it. A folder that survives is also
            // covered by another rule's root while this one is missing: look again later.
            if byID[id] === node { retry(name, in: node, pending, now: now) }
            return
        }
        let relative = folder + name
        let version: FileVersion
        var uncheckable: WatchError?
        switch writeCheck(relative, rootFD, node.childPath(name)) {
        case .gone, .unanswerable(nil, _):
            node.pending[name] = nil
            counters.pending -= 1
            return
        case .openForWriting:
            // Unchanged for the whole settle time, yet a writer holds it open (a paused writer, or one
            // that was writing before ferry started): look again after another settle time. Its close
            // also brings an IN_CLOSE_WRITE when the folder is watched.
            counters.stillOpenForWriting += 1
            if debugEnabled { logger.debug("settled but still open for writing; waiting", metadata: ["file.path": "\(node.childPath(name))"]) }
            retry(name, in: node, pending, now: now)
            return
        case .tryAgain(let error):
            logger.debug("cannot check the file yet; trying again", metadata: ["file.path": "\(node.childPath(name))", "watch.error": "\(error)"])
            retry(name, in: node, pending, now: now)
            return
        case .idle(let seen):
            version = seen
        case .unanswerable(let seen?, let error):
            uncheckable = error
            version = seen
        }
        if version != pending.version {
            pending.version = version
            pending.deadline = now.advanced(by: pending.settle)
            pending.scheduled = true
            timers.insert(.settle(node: id, name: name), at: pending.deadline)
            node.pending[name] = pending
            return
        }
        if let marker = rules[rule].rule.readyMarker, !marker.isEmpty, FileStatus.of(relative + marker, in: rootFD) == nil {
            pending.awaitingMarker = true
            node.pending[name] = pending
            if debugEnabled { logger.debug("settled; waiting for its ready marker", metadata: ["file.path": "\(node.childPath(name))"]) }
            return
        }
        if let uncheckable { writeCheckUnavailable(uncheckable) }
        complete(name, in: node, version: version, rule: rule, relativePath: relative)
    }

    /// Keeps the file pending and checks it again after its settle time.
    private func retry(_ name: String, in node: FolderNode, _ pending: PendingFile, now: ContinuousClock.Instant) {
        var pending = pending
        pending.deadline = now.advanced(by: pending.settle)
        pending.scheduled = true
        timers.insert(.settle(node: node.id, name: name), at: pending.deadline)
        node.pending[name] = pending
    }

    /// The write check could not be made for a file, which then completes by stat stability alone:
    /// said once per cause in the log and in the statistics, so the operator can fix the unit.
    private func writeCheckUnavailable(_ error: WatchError) {
        counters.completedWithoutWriteCheck += 1
        counters.writeCheckUnavailable = true
        guard writeCheckProblemsLogged.insert("\(error.code.rawValue) \(error.errno?.rawValue ?? 0)").inserted else { return }
        let message = "\(error.message); until then such files count as complete once unchanged for their settle time, even if a writer still holds them open"
        counters.lastProblem = message
        logger.info("\(message)", metadata: ["watch.error": "\(error.errno.map { "\($0)" } ?? "none")"])
    }

    private func complete(_ name: String, in node: FolderNode, version: FileVersion, rule index: Int, relativePath relative: String) {
        if node.pending.removeValue(forKey: name) != nil { counters.pending -= 1 }
        // A table keeps its capacity when emptied: after a burst, give it back (most folders are idle).
        if node.pending.isEmpty { node.pending.removeAll() }
        guard node.reported[name] != version else { return }
        node.reported[name] = version
        let rule = rules[index].rule
        let path = node.childPath(name)
        if isKnown(rule.id, path, version) {
            counters.known += 1
            return
        }
        counters.reported += 1
        if debugEnabled { logger.debug("file complete", metadata: ["file.path": "\(path)", "watch.rule": "\(rule.id)"]) }
        outbox.append(CompletedFile(ruleID: rule.id, path: path, relativePath: relative, version: version))
    }
}
