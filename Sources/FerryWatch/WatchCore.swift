import FerryGlob
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
}

/// A rule with its patterns compiled and its root normalised.
struct CompiledRule {
    let rule: WatchRule
    let filter: FileFilter
    let root: String
    /// Excludes that match a single name; a folder whose name matches one can hold no selected file.
    let folderExcludes: [Glob]

    init(_ rule: WatchRule) throws(WatchError) {
        self.rule = rule
        var root = rule.root
        while root.count > 1, root.hasSuffix("/") { root.removeLast() }
        guard root.hasPrefix("/") else {
            throw WatchError(code: .invalidPattern, message: "rule \(rule.id): watch path \(rule.root) must be absolute")
        }
        self.root = root
        do {
            filter = try FileFilter(include: rule.include, exclude: rule.exclude)
        } catch {
            throw WatchError(code: .invalidPattern, message: "rule \(rule.id): \(error)")
        }
        folderExcludes = filter.exclude.filter(\.matchesBaseName)
    }

    /// The folder's path relative to this rule's root with a trailing `/` ("" for the root itself), or
    /// nil when the rule does not cover that folder.
    func relativeFolder(of path: String) -> String? {
        if path == root { return "" }
        guard rule.recursive else { return nil }
        let prefix = root == "/" ? "/" : root + "/"
        guard path.hasPrefix(prefix) else { return nil }
        let relative = path.dropFirst(prefix.count)
        for segment in relative.split(separator: "/") {
            let name = String(segment)
            if name == ".ferry" || folderExcludes.contains(where: { $0.matches(name) }) { return nil }
        }
        return String(relative) + "/"
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
    var subfolders: Set<String> = []
    var reported: [String: FileVersion] = [:]
    var pending: [String: PendingFile] = [:]
    var device: UInt64 = 0
    var inode: UInt64 = 0

    init(id: UInt32, path: String, rules: [(index: Int, folder: String)]) {
        self.id = id
        self.path = path
        self.rules = rules
    }

    func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }
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

    private(set) var rules: [CompiledRule]
    private let inotify: Inotify
    private let input: AsyncStream<WatchInput>.Continuation
    private let output: AsyncStream<CompletedFile>.Continuation
    private let published: SharedStatistics
    private let isKnown: @Sendable (String, String, FileVersion) -> Bool
    private let reconcileInterval: Duration
    private let fallbackScanInterval: Duration
    private var logger: Logger
    private let debugEnabled: Bool

    private var counters = WatchStatistics()
    private var rootStates: [String: RootStatus] = [:]
    private var byPath: [String: FolderNode] = [:]
    private var byWD: [Int32: FolderNode] = [:]
    private var byID: [UInt32: FolderNode] = [:]
    private var nextID: UInt32 = 0
    private var timers = DeadlineHeap<TimerPayload>()
    private var armedDeadline: ContinuousClock.Instant?
    private var lastTick = ContinuousClock.now
    private var timerTask: Task<Void, Never>?
    private var scanQueue: [UInt32] = []
    private var scanQueueHead = 0
    private var queuedScans: Set<UInt32> = []
    private var scanKickOutstanding = false
    private var pendingMoves: [UInt32: [Int32]] = [:]
    private var rulesGeneration = 0
    private var rootChecksScheduled: Set<String> = []
    /// Reports of one loop turn, handed over together so a consumer wakes once per batch, not per file.
    private var outbox: [CompletedFile] = []
    private let clock = ContinuousClock()

    init(rules: [WatchRule], inotify: Inotify, input: AsyncStream<WatchInput>.Continuation,
         output: AsyncStream<CompletedFile>.Continuation, published: SharedStatistics,
         isKnown: @escaping @Sendable (String, String, FileVersion) -> Bool,
         reconcileInterval: Duration, fallbackScanInterval: Duration, logger: Logger) throws(WatchError) {
        var compiled: [CompiledRule] = []
        for rule in rules { compiled.append(try CompiledRule(rule)) }
        self.rules = compiled
        self.inotify = inotify
        self.input = input
        self.output = output
        self.published = published
        self.isKnown = isKnown
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
        }
        afterInput()
    }

    func shutdown() {
        timerTask?.cancel()
        timerTask = nil
        for node in byWD.values { inotify.removeWatch(node.wd) }
        byWD.removeAll()
        counters.watches = 0
        publish()
    }

    private func afterInput() {
        for file in outbox { output.yield(file) }
        outbox.removeAll(keepingCapacity: true)
        if scanQueueHead < scanQueue.count {
            if !scanKickOutstanding {
                scanKickOutstanding = true
                input.yield(.continueScan)
            }
        } else {
            counters.initialScanComplete = true
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

    /// Keeps exactly one sleeping task, for the earliest deadline; a later deadline needs no new task.
    /// Fires are at least `timerSlack` apart so a stream of files settling a few µs apart is handled in
    /// batches; a file may complete up to that much after its settle time, never before.
    private func armTimer() {
        guard var earliest = timers.earliest else { return }
        if let armed = armedDeadline, armed <= earliest { return }
        earliest = max(earliest, lastTick.advanced(by: Self.timerSlack))
        timerTask?.cancel()
        armedDeadline = earliest
        let input = self.input
        timerTask = Task {
            do {
                try await Task.sleep(until: earliest, clock: .continuous)
                input.yield(.tick)
            } catch {
                // Cancelled: an earlier deadline replaced this one, or the watcher stopped.
            }
        }
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
        } else if event.has(InotifyFlag.create), debugEnabled {
            // Regular files wait for IN_CLOSE_WRITE; this stat only exists to explain ignored entries.
            let path = node.childPath(event.name)
            if let status = FileStatus.of(path), status.kind != .regular { noteIgnored(path, kind: status.kind) }
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
        var seen: Set<String> = []
        return rules.map(\.root).filter { seen.insert($0).inserted }
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
        node.rules.contains { rootStates[rules[$0.index].root] == .watching }
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
        if let slash = path.lastIndex(of: "/"), let parent = byPath[slash == path.startIndex ? "/" : String(path[..<slash])] {
            parent.subfolders.insert(String(path[path.index(after: slash)...]))
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
        do {
            let wd = try inotify.addWatch(node.path)
            if let other = byWD[wd], other !== node { other.wd = -1 }
            node.wd = wd
            byWD[wd] = node
            if let status = FileStatus.of(node.path) {
                node.device = status.version.device
                node.inode = status.version.inode
            }
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
        let roots = Set(node.rules.map { rules[$0.index].root })
        var newlyPolling: [String] = []
        for root in roots.sorted() where rootStates[root] == .watching {
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
        if let slash = node.path.lastIndex(of: "/"), slash != node.path.startIndex,
           let parent = byPath[String(node.path[..<slash])] {
            parent.subfolders.remove(String(node.path[node.path.index(after: slash)...]))
        }
        if rootStates[node.path] != nil { rootLost(node.path, reason: reason) }
        return watches
    }

    private func rootLost(_ root: String, reason: String) {
        if case .missing = rootStates[root] { return }
        rootStates[root] = .missing(backoff: Self.firstRootCheck, wasWatched: true)
        logger.info("watched folder is gone (\(reason)); watching it again when it reappears",
                    metadata: ["watch.root": "\(root)"])
        scheduleRootCheck(root, after: Self.firstRootCheck)
        if let node = byPath[root] { drop(node, removeWatches: true, reason: reason) }
    }

    /// Watches and scans a root that exists; otherwise marks it missing and checks again with backoff.
    private func attachRoot(_ root: String, reason: String) {
        let status = FileStatus.of(root)
        guard let status, status.kind == .directory else {
            if case .missing(_, let wasWatched) = rootStates[root] {
                if reason == "start" {
                    let why = status?.kind == .symbolicLink
                        ? "it is a symbolic link, and ferry never follows links: configure the real folder"
                        : "it does not exist"
                    logger.info("cannot watch folder: \(why); checking again until it appears",
                                metadata: ["watch.root": "\(root)"])
                }
                rootStates[root] = .missing(backoff: Self.firstRootCheck, wasWatched: wasWatched)
            } else {
                rootLost(root, reason: "missing")
                return
            }
            scheduleRootCheck(root, after: Self.firstRootCheck)
            return
        }
        let previous = rootStates[root]
        rootStates[root] = .watching
        guard let node = ensureNode(root) else { return }
        if case .missing(_, true) = previous {
            logger.info("watched folder is back; watching and scanning it again", metadata: ["watch.root": "\(root)"])
        }
        counters.scans += 1
        enqueueScan(node)
    }

    /// One pending check per missing root, however many paths noticed it was gone.
    private func scheduleRootCheck(_ root: String, after delay: Duration) {
        guard rootChecksScheduled.insert(root).inserted else { return }
        schedule(.rootCheck(root), after: delay)
    }

    private func checkRoot(_ root: String) {
        guard case .missing(let backoff, let wasWatched) = rootStates[root] else { return }
        if let status = FileStatus.of(root), status.kind == .directory {
            attachRoot(root, reason: "reappeared")
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
            case .watching:
                if let node = byPath[root], let status = FileStatus.of(root),
                   status.kind == .directory, status.version.device == node.device, status.version.inode == node.inode {
                    continue
                }
                rootLost(root, reason: "replaced")
                attachRoot(root, reason: "replaced")
            case .polling:
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
        let roots = Set(distinctRoots())
        for root in rootStates.keys where !roots.contains(root) { rootStates[root] = nil }
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
        for node in byID.values where node.wd < 0 && needsWatch(node) { _ = watch(node) }
        logger.info("watch rules updated", metadata: ["watch.rules": "\(rules.count)"])
        rescanAll()
    }

    private func forget(_ path: String) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let folder = slash == path.startIndex ? "/" : String(path[..<slash])
        guard let node = byPath[folder] else { return }
        let name = String(path[path.index(after: slash)...])
        // Only what was reported is forgotten: a version that arrived meanwhile (a file moved back in
        // just after the old one was archived) keeps settling and is reported.
        node.reported[name] = nil
    }
}

// MARK: - Scanning

extension WatchCore {
    private func enqueueScan(_ node: FolderNode) {
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
            if let node = byID[id] { budget -= 1 + scan(node) }
        }
        if scanQueueHead == scanQueue.count {
            scanQueue.removeAll(keepingCapacity: false)
            scanQueueHead = 0
        }
    }

    /// Lists one folder: new sub-folders are watched and queued, regular files become candidates, and
    /// state for names no longer present is dropped. Returns the number of entries seen.
    private func scan(_ node: FolderNode) -> Int {
        var seen: Set<String> = []
        var subfolders: [String] = []
        do {
            try FolderListing.read(node.path) { folder, name, type in
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
        } catch {
            if let code = error.errno, code == .noSuchFileOrDirectory || code == .notDirectory || code == .tooManySymbolicLinkLevels {
                drop(node, removeWatches: true, reason: "vanished")
            } else {
                logger.info("cannot list folder", metadata: ["watch.folder": "\(node.path)", "watch.error": "\(error)"])
            }
            return 0
        }
        for path in subfolders {
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
            if let marker = rule.rule.readyMarker, !marker.isEmpty, name.count > marker.count, name.hasSuffix(marker) {
                let base = String(name.dropLast(marker.count))
                if case .file(let owner, _) = route(base, in: node), owner == covering.index { return .marker(base: base) }
            }
        }
        for covering in node.rules {
            let rule = rules[covering.index]
            let relative = covering.folder + name
            guard rule.selects(relative) else { continue }
            if let marker = rule.rule.readyMarker, !marker.isEmpty, name.hasSuffix(marker) { return .none }
            return .file(rule: covering.index, relativePath: relative)
        }
        return .none
    }

    /// A file may have changed: start (or restart) its settle clock unless this version was reported.
    private func consider(_ name: String, in node: FolderNode, status known: FileStatus?, fromScan: Bool) {
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
        guard let status = known ?? FileStatus.of(node.childPath(name)) else { return }
        guard status.kind == .regular else {
            noteIgnored(node.childPath(name), kind: status.kind)
            return
        }
        if node.reported[name] == status.version { return }
        let settle = rules[rule].rule.settle
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

    private func markerAppeared(for base: String, in node: FolderNode) {
        if let pending = node.pending[base], pending.awaitingMarker,
           let status = FileStatus.of(node.childPath(base)), status.version == pending.version,
           case .file(let rule, let relative) = route(base, in: node) {
            complete(base, in: node, version: pending.version, rule: rule, relativePath: relative)
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
        guard let status = FileStatus.of(node.childPath(name)), status.kind == .regular else {
            node.pending[name] = nil
            counters.pending -= 1
            return
        }
        if status.version != pending.version {
            pending.version = status.version
            pending.deadline = now.advanced(by: pending.settle)
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
        let relative = folder + name
        if let marker = rules[rule].rule.readyMarker, !marker.isEmpty, FileStatus.of(node.childPath(name + marker)) == nil {
            pending.awaitingMarker = true
            node.pending[name] = pending
            if debugEnabled { logger.debug("settled; waiting for its ready marker", metadata: ["file.path": "\(node.childPath(name))"]) }
            return
        }
        complete(name, in: node, version: status.version, rule: rule, relativePath: relative)
    }

    private func complete(_ name: String, in node: FolderNode, version: FileVersion, rule index: Int, relativePath relative: String) {
        if node.pending.removeValue(forKey: name) != nil { counters.pending -= 1 }
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
