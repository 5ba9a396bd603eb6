import FerrySystem
import Logging
import Synchronization

/// Turns folder trees into a stream of "this file is complete" reports.
///
/// Each file is reported for the first rule, in the order given, whose root covers its folder and whose
/// patterns select its relative path, and never for two rules. A file is complete when its size, mtime
/// and inode have not changed for the rule's `settle` (and its ready marker exists, if the rule has one)
/// and no process has it open for writing (`WriteActivity`; without CAP_LEASE for files another user
/// owns, stat stability alone decides and `statistics.lastProblem` says so). Names are compared byte for
/// byte; roots are resolved with no symbolic link in any component and a root whose path comes to lead
/// elsewhere is lost, never followed; `WatchRule.excludedFolders` subtrees produce nothing.
/// The same (path, version) is never reported twice while the watcher lives, and `isKnown` lets the
/// caller suppress versions it already has from a previous run. Missed events cannot lose files: new
/// folders are scanned after their watch is added, a queue overflow rescans everything, and a periodic
/// reconciliation scan catches anything else.
///
/// Start it with `run()` in a task of its own and read `completedFiles`; cancel the task to stop.
public final class FolderWatcher: Sendable {
    private struct Control {
        var rules: [WatchRule]
        var input: AsyncStream<WatchInput>.Continuation?
        var running = false
    }

    private let control: Mutex<Control>
    private let shared = SharedStatistics()
    private let reports: AsyncStream<CompletedFile>
    private let reportsContinuation: AsyncStream<CompletedFile>.Continuation
    private let reconcileInterval: Duration
    private let fallbackScanInterval: Duration
    private let logger: Logger
    private let isKnown: @Sendable (String, String, FileVersion) -> Bool
    private let writeCheck: WriteChecker

    /// Creates a watcher for `rules` (in priority order).
    ///
    /// - Parameters:
    ///   - reconcileInterval: how often every root is rescanned as a safety net.
    ///   - fallbackScanInterval: how often a root is scanned when the inotify watch limit stops it
    ///     from being watched.
    ///   - isKnown: whether the caller already has this exact version of the file (rule id, absolute
    ///     path, version); such files are not reported.
    public convenience init(rules: [WatchRule], reconcileInterval: Duration = .seconds(600),
                fallbackScanInterval: Duration = .seconds(10), logger: Logger,
                isKnown: @escaping @Sendable (_ ruleID: String, _ path: String, _ version: FileVersion) -> Bool = { _, _, _ in false }) {
        self.init(rules: rules, reconcileInterval: reconcileInterval, fallbackScanInterval: fallbackScanInterval,
                  logger: logger, isKnown: isKnown, writeCheck: WriteCheck.of)
    }

    /// The designated initializer; tests pass a `writeCheck` that answers as a kernel without leases would.
    init(rules: [WatchRule], reconcileInterval: Duration, fallbackScanInterval: Duration, logger: Logger,
         isKnown: @escaping @Sendable (String, String, FileVersion) -> Bool, writeCheck: @escaping WriteChecker) {
        control = Mutex(Control(rules: rules))
        self.writeCheck = writeCheck
        (reports, reportsContinuation) = AsyncStream<CompletedFile>.makeStream()
        self.reconcileInterval = reconcileInterval
        self.fallbackScanInterval = fallbackScanInterval
        self.logger = logger
        self.isKnown = isKnown
    }

    /// Files that have become complete, in the order they did. Finishes when `run()` returns.
    public var completedFiles: AsyncStream<CompletedFile> { reports }

    /// A snapshot of the watcher's counters.
    public var statistics: WatchStatistics { shared.value }

    /// Since when the watcher has been handling one event, scan or pass, or nil while it waits: a
    /// folder on a hung file system (or a journal that does not answer `isKnown`) stops it there.
    public var handlingSince: ContinuousClock.Instant? { handling.withLock { $0 } }
    private let handling = Mutex<ContinuousClock.Instant?>(nil)

    /// `/proc/<pid>/task/<tid>` of the inotify reader thread while running.
    var readerThreadProcPath: String? { shared.readerThreadProcPath }

    /// Watches until the calling task is cancelled, then stops the reader thread, removes the watches
    /// and finishes `completedFiles`. Throws if a rule's pattern is invalid or inotify cannot be set up.
    public func run() async throws {
        let (inputs, input) = AsyncStream<WatchInput>.makeStream()
        let rules = try control.withLock { control throws(WatchError) -> [WatchRule] in
            guard !control.running else {
                throw WatchError(code: .alreadyRunning, message: "this FolderWatcher is already running; create one per run")
            }
            control.running = true
            control.input = input
            return control.rules
        }
        defer {
            control.withLock { $0.input = nil }
            reportsContinuation.finish()
        }
        let inotify = try Inotify()
        defer { inotify.stop() }
        let alarm = Alarm()
        let core = try WatchCore(rules: rules, inotify: inotify, alarm: alarm, input: input, output: reportsContinuation,
                                 published: shared, isKnown: isKnown, reconcileInterval: reconcileInterval,
                                 fallbackScanInterval: fallbackScanInterval, logger: logger, writeCheck: writeCheck)
        try inotify.startReader { batch in input.yield(.events(batch)) }
        core.start()
        await withTaskGroup(of: Void.self) { timer in
            // The core's timers: one loop for the watcher's life, waking the core at its earliest deadline.
            timer.addTask {
                while !Task.isCancelled {
                    if await alarm.wait() { input.yield(.tick) }
                }
            }
            await withTaskCancellationHandler {
                for await item in inputs {
                    handling.withLock { $0 = .now }
                    core.handle(item)
                    handling.withLock { $0 = nil }
                }
            } onCancel: {
                input.finish()
            }
            timer.cancelAll()
        }
        core.shutdown()
    }

    /// Replaces the rules (SIGHUP reload): new roots are watched and scanned, dropped roots unwatched,
    /// and every root rescanned so files newly selected are found. Invalid patterns keep the old rules.
    public func updateRules(_ rules: [WatchRule]) {
        control.withLock { control in
            control.rules = rules
            control.input?.yield(.rules(rules))
        }
    }

    /// Drops what the watcher remembers about `path` (for example after it was archived), so memory
    /// stays bounded; if the same version shows up again later, it is reported again.
    public func forget(path: String) {
        _ = control.withLock { $0.input?.yield(.forget(path)) }
    }

    /// Forgets `path` and watches it settle again, so it is reported again (even the same version)
    /// once complete. For a report the caller declined because the file was open for writing or had
    /// changed when it looked: without this, a writer that closes without changing the file would
    /// leave that version unreported until the next reconciliation.
    public func recheck(path: String) {
        _ = control.withLock { $0.input?.yield(.recheck(path)) }
    }
}
