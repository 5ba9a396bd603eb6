import FerryConfig
import FerryStore
import FerrySystem
import Foundation
import Logging

/// What one pruning pass did.
public struct PruneReport: Sendable, Equatable {
    /// Outbound file rows deleted.
    public var outboundFiles = 0
    /// Outbound rows kept because the exact version they describe is still on disk (a `keep` rule's
    /// dedupe needs them, or a file put back).
    public var outboundKept = 0
    public var inboundFiles = 0
    public var batches = 0
    /// Free pages given back to the file system.
    public var pagesReturned = 0
    /// The longest time one step held the journal lock.
    public var longestLockHold: Duration = .zero
    /// That step: what it pruned and how much (e.g. "outbound done, 500 rows", "free pages, 2048").
    public var longestStep = ""
    /// Steps (small transactions) taken.
    public var steps = 0
    /// Checkpoints of the write-ahead log run beside the journal lock.
    public var checkpoints = 0
    /// The whole pass, pauses between steps included.
    public var duration: Duration = .zero
}

/// Deletes journal rows that finished longer than `retention` ago, at start and then every `interval`,
/// in steps of at most `batchSize` rows, pausing between steps so the pipeline's own journal writes wait
/// for at most one step (measured: see docs/operations.md, "History and retention").
///
/// What is never pruned, because dedupe needs it:
/// - an outbound `done` row whose exact version (path, device, inode, size, mtime) is still on disk:
///   with `after_send: keep` that row is all that stops the watcher sending the file again. The check is
///   an `lstat` outside the journal lock; a version that is gone cannot come back with the same inode
///   and mtime unless someone moves it back, which archive rules treat as a new arrival anyway.
/// - an inbound `done` row of a rule that keeps the partner's files (`after_retrieve: keep`, or a rule no
///   longer in the rules file) while it is the newest row of its remote path: the partner may still list it.
/// Live rows (waiting, in flight, failed, quarantined, in doubt) are never pruned, whatever their age.
public struct JournalPruner: Sendable {
    let journal: Journal
    /// The rules in force (read at every pass, so a reload's `retention` applies at the next one).
    let rules: @Sendable () -> Rules
    let logger: Logger
    let now: @Sendable () -> Date
    var interval: Duration = .seconds(3600)
    var batchSize = 500
    /// Between steps: long enough for waiting journal writers to take the lock.
    var pause: Duration = .milliseconds(5)
    /// Pages returned per incremental-vacuum step (4 KiB each), at most.
    var vacuumPages = 512
    /// How long one step should hold the journal: steps are resized to stay near it.
    var targetHold: Duration = .milliseconds(20)
    /// How often the pass checkpoints the write-ahead log beside the journal lock.
    var checkpointEvery: Duration = .milliseconds(250)

    public init(journal: Journal, rules: @escaping @Sendable () -> Rules, logger: Logger,
                now: @escaping @Sendable () -> Date = { Date() }, interval: Duration = .seconds(3600),
                batchSize: Int = 500, pause: Duration = .milliseconds(5)) {
        self.journal = journal
        self.rules = rules
        self.logger = logger
        self.now = now
        self.interval = interval
        self.batchSize = batchSize
        self.pause = pause
    }

    /// Prunes at start, then every `interval`, until cancelled. A failing pass is logged and tried again
    /// at the next interval: pruning is housekeeping, never a reason to stop sending.
    public func run() async {
        while !Task.isCancelled {
            do {
                let report = try await pass()
                if report.outboundFiles + report.inboundFiles + report.batches > 0 {
                    logger.info("journal pruned", metadata: [
                        "prune.outbound": "\(report.outboundFiles)", "prune.outbound_kept": "\(report.outboundKept)",
                        "prune.inbound": "\(report.inboundFiles)", "prune.batches": "\(report.batches)",
                        "prune.pages_returned": "\(report.pagesReturned)", "prune.longest_lock_hold": "\(report.longestLockHold)", "prune.longest_step": "\(report.longestStep)",
                        "prune.steps": "\(report.steps)", "prune.checkpoints": "\(report.checkpoints)", "prune.duration": "\(report.duration)",
                    ])
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("journal pruning failed; retried at the next interval", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: Self.nextPass(interval: interval, retention: rules().retention))
        }
    }

    /// How long until the next pass: `interval`, or `retention` when that is shorter. With the accepted
    /// retentions (1h or more) that is always `interval`; with a retention lowered for a test
    /// (`FERRY_TEST_MIN_RETENTION`) rows are pruned within about twice their retention, not after an hour.
    static func nextPass(interval: Duration, retention: Duration) -> Duration {
        retention > .zero ? min(interval, retention) : interval
    }

    /// One pass over everything that finished before `now - retention`.
    public func pass() async throws -> PruneReport {
        let started = ContinuousClock.now
        let rules = rules()
        let cutoff = now().addingTimeInterval(-Double(rules.retention.components.seconds))
        // Unknown rules (removed from the file) count as keeping: re-adding one must not fetch again.
        let tidying = Set(rules.inbound.filter { $0.afterRetrieve != .keep }.map(\.name))
        let keepingRules = Set(try journal.inboundRuleNames()).subtracting(tidying)
        var report = PruneReport()
        // Steps shrink when one held the journal longer than `targetHold` (a cold page cache, a
        // checkpoint, a slow disk) and grow back when they are quick, so a writer waits at most about
        // one short step whatever the machine.
        var size = StepSize(maximum: batchSize, target: targetHold)
        var pages = StepSize(maximum: vacuumPages, target: targetHold, minimum: 16)
        // The steps' commits skip SQLite's auto-checkpoint, which would otherwise run inside whichever
        // commit takes the log past 1,000 pages — copying them and two fsyncs while the step holds the
        // journal (measured: one step beside the pipeline's writer held it 60.6 ms). The pass checkpoints
        // beside the lock instead, a few times a second, so the log stays bounded however long it runs.
        var lastCheckpoint = ContinuousClock.now
        func checkpointIfDue(force: Bool = false) throws {
            guard force || ContinuousClock.now - lastCheckpoint >= checkpointEvery else { return }
            try journal.checkpointBeside()
            lastCheckpoint = ContinuousClock.now
            report.checkpoints += 1
        }
        func longest(_ held: Duration, _ what: @autoclosure () -> String) {
            guard held > report.longestLockHold else { return }
            report.longestLockHold = held
            report.longestStep = what()
        }
        func note(_ step: PruneStep, _ what: @autoclosure () -> String) throws {
            report.steps += 1
            longest(step.lockHeld, what())
            report.batches += step.batches
            size.adjust(after: step.lockHeld)
            try checkpointIfDue()
        }

        for state in [OutboundState.done, .dropped, .retried] {
            var cursor = PruneCursor.start
            while true {
                try Task.checkCancellation()
                let limit = size.current
                let candidates = try journal.outboundPruneCandidates(state: state, finishedBefore: cutoff, after: cursor, limit: limit)
                guard let last = candidates.last else { break }
                cursor = PruneCursor(finishedAt: last.finishedAt, id: last.id)
                let doomed = candidates.filter { state != .done || !Self.versionExists($0) }
                report.outboundKept += candidates.count - doomed.count
                // The pages the step will change are read first, beside the lock (an optimisation: a
                // failure to read ahead only makes the step slower).
                _ = try? journal.readAheadOutboundPrune(doomed.map(\.id))
                let step = try journal.pruneOutbound(doomed.map(\.id), finishedBefore: cutoff)
                try note(step, "outbound \(state.rawValue), \(doomed.count) rows (step \(report.steps + 1))")
                report.outboundFiles += step.files
                if candidates.count < limit { break }
                try await Task.sleep(for: pause)
            }
        }

        var batchCursor: Int64? = 0
        while let after = batchCursor {
            try Task.checkCancellation()
            let limit = size.current
            let (step, next) = try journal.pruneEmptyBatches(finishedBefore: cutoff, afterID: after, limit: limit)
            try note(step, "batches, up to \(limit) (step \(report.steps + 1))")
            batchCursor = next
            if next != nil { try await Task.sleep(for: pause) }
        }

        var inboundCursor: PruneCursor? = .start
        while let cursor = inboundCursor {
            try Task.checkCancellation()
            let limit = size.current
            let (step, next) = try journal.pruneInbound(finishedBefore: cutoff, keepingRules: keepingRules, after: cursor, limit: limit)
            try note(step, "inbound, up to \(limit) rows (step \(report.steps + 1))")
            report.inboundFiles += step.files
            inboundCursor = next
            if next != nil { try await Task.sleep(for: pause) }
        }

        if journal.returnsFreePages {
            while true {
                try Task.checkCancellation()
                let before = try journal.freePages()
                guard before > 0 else { break }
                let (remaining, held) = try journal.returnFreePages(pages.current)
                report.steps += 1
                longest(held, "free pages, \(pages.current) (step \(report.steps))")
                pages.adjust(after: held)
                try checkpointIfDue()
                report.pagesReturned += before - remaining
                if remaining == 0 || remaining >= before { break }
                try await Task.sleep(for: pause)
            }
        }
        if report.steps > 0 { try checkpointIfDue(force: true) }
        report.duration = ContinuousClock.now - started
        return report
    }

    /// Whether the exact version a row describes is still at its path (never following a link).
    static func versionExists(_ candidate: OutboundPruneCandidate) -> Bool {
        var info = stat()
        guard lstat(candidate.path, &info) == 0 else { return errno != ENOENT && errno != ENOTDIR }
        return FileVersion(info) == candidate.version
    }
}

/// The size of the next pruning step: halved after a step that held the journal longer than `target`,
/// grown by half after one that took less than a quarter of it, between `minimum` and `maximum`.
struct StepSize {
    let maximum: Int
    let target: Duration
    var minimum = 25
    private(set) var current: Int

    init(maximum: Int, target: Duration, minimum: Int = 25) {
        self.maximum = max(1, maximum)
        self.target = target
        self.minimum = min(minimum, self.maximum)
        current = self.maximum
    }

    mutating func adjust(after held: Duration) {
        if held > target {
            current = max(minimum, current / 2)
        } else if held < target / 4 {
            current = min(maximum, current + max(1, current / 2))
        }
    }
}
