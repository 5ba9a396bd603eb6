import Foundation
import FerryConfig
import FerryStore

/// Groups staged files that share rule and remote directory into batches of at most `batch.max_files`,
/// sent when full or when the oldest has waited `batch.max_wait`.
actor Batcher {
    private struct GroupKey: Hashable {
        var rule: String
        var remoteDirectory: String?
    }

    private let rule: @Sendable (String) -> OutboundRule?
    private let queue: @Sendable (String) -> AsyncQueue<PendingBatch>?
    /// Runs an action after a delay (the pipeline's `DelayQueue`): max_wait, without a task per group.
    private let later: @Sendable (Duration, @escaping @Sendable () async -> Void) -> Void
    private var groups: [GroupKey: [OutboundFile]] = [:]
    private var generation: [GroupKey: Int] = [:]
    private var queued: Set<Int64> = []
    private var closed = false

    /// `rule` looks up a rule by name and `queue` a connector's submit queue, both as currently configured;
    /// `later` runs an action after a delay.
    init(rule: @escaping @Sendable (String) -> OutboundRule?, queue: @escaping @Sendable (String) -> AsyncQueue<PendingBatch>?,
         later: @escaping @Sendable (Duration, @escaping @Sendable () async -> Void) -> Void) {
        self.rule = rule
        self.queue = queue
        self.later = later
    }

    func add(_ file: OutboundFile) async {
        guard !closed, let rule = rule(file.rule), !queued.contains(file.id) else { return }
        queued.insert(file.id)
        let key = GroupKey(rule: file.rule, remoteDirectory: file.remoteDirectory)
        // Two versions of one name in one transfer would race for one remote name: the second waits
        // for the next batch, so the partner receives them in order, each whole.
        if groups[key]?.contains(where: { Array($0.relativePath.utf8) == Array(file.relativePath.utf8) }) == true {
            await flush(key)
        }
        groups[key, default: []].append(file)
        let count = groups[key]?.count ?? 0
        if count >= rule.batchMaxFiles {
            await flush(key)
        } else if count == 1 {
            let current = generation[key, default: 0]
            later(rule.batchMaxWait) { await self.flushIfStill(key, generation: current) }
        }
    }

    private func flushIfStill(_ key: GroupKey, generation expected: Int) async {
        guard generation[key, default: 0] == expected else { return }
        await flush(key)
    }

    private func flush(_ key: GroupKey) async {
        guard let files = groups.removeValue(forKey: key), !files.isEmpty else { return }
        generation[key, default: 0] += 1
        for file in files { queued.remove(file.id) }
        guard let connector = rule(key.rule)?.connector else { return }
        await queue(connector)?.push(PendingBatch(rule: key.rule, connector: connector, remoteDirectory: key.remoteDirectory,
                                                   files: files, existingBatchID: nil))
    }

    func close() {
        closed = true
        groups.removeAll()
    }
}

/// A submitted transfer being followed with ListFileTransferResults.
struct TrackedBatch: Sendable {
    var id: Int64
    var rule: String
    var connector: String
    /// The connector id the batch was sent through: tracking asks about it there, even after a reload
    /// changed the connector's id.
    var connectorID: String
    var transferID: String
    /// The files whose outcome is still to be learned (fewer than were sent once a look found some done).
    var fileIDs: [Int64]
    /// Every file sent in the transfer: ListFileTransferResults keeps listing those already recorded.
    let sentFileIDs: [Int64]

    /// `sentFileIDs`: every file of the transfer, when some already have their outcome (a restart
    /// between two looks); by default the files still open are all it sent.
    init(id: Int64, rule: String, connector: String, connectorID: String, transferID: String, fileIDs: [Int64],
         sentFileIDs: [Int64]? = nil, submittedAt: Date, backoff: Duration) {
        self.id = id
        self.rule = rule
        self.connector = connector
        self.connectorID = connectorID
        self.transferID = transferID
        self.fileIDs = fileIDs
        self.sentFileIDs = sentFileIDs ?? fileIDs
        self.submittedAt = submittedAt
        self.backoff = backoff
    }
    /// When StartFileTransfer was called: AWS keeps results for 7 days, after which the outcome is lost.
    var submittedAt: Date
    /// The wait before the next look: 1 s doubling up to 30 s while files are QUEUED or IN_PROGRESS.
    var backoff: Duration

    func backedOff() -> TrackedBatch {
        var next = self
        next.backoff = min(backoff * 2, .seconds(30))
        return next
    }
}

/// Submitted transfers ordered by when to look at them next: one sleeping loop, not one timer each.
///
/// A connector works through its queue in order, so the transfer submitted first is the one that
/// finishes next. Only that one (per connector id: the *head*) is looked at often, from 250 ms after it
/// became the head, doubling to at most 2 s; when it finishes, the next one becomes the head and is
/// looked at at once (it has usually finished too). The others are looked at every 30 s, in case the
/// queue's order is not what it seems (a huge file at the head, another client's transfers). This
/// spends about one ListFileTransferResults per transfer instead of one per backoff step, and frees
/// each in-flight slot as soon as its transfer is done, so the connector's queue never runs dry.
actor Tracker {
    static let headFirstLook: Duration = .milliseconds(250)
    static let headLongestWait: Duration = .seconds(2)
    static let queuedLook: Duration = .seconds(30)

    private var entries: [(due: ContinuousClock.Instant, batch: TrackedBatch)] = []
    /// Unfinished batch ids per connector id, oldest first.
    private var queues: [String: [Int64]] = [:]
    private var waiter: CheckedContinuation<Void, Never>?
    private var closed = false

    /// Looks at `batch` at `due`, whatever its place (used after errors, with their own backoff).
    func add(_ batch: TrackedBatch, due: ContinuousClock.Instant) {
        guard !closed else { return }
        entries.append((due, batch))
        waiter?.resume()
        waiter = nil
    }

    /// A transfer just submitted (or found submitted at start): joins its connector's queue.
    func submitted(_ batch: TrackedBatch) {
        var queue = queues[batch.connectorID, default: []]
        if !queue.contains(batch.id) {
            let previousHead = queue.first
            queue.append(batch.id)
            queue.sort()
            queues[batch.connectorID] = queue
            // Submissions run concurrently, so an older transfer can join after a newer one: the newer
            // one is no longer the head and waits like the rest.
            if let previousHead, queue.first == batch.id {
                let later = ContinuousClock.now + Self.queuedLook
                for index in entries.indices where entries[index].batch.id == previousHead && entries[index].due < later {
                    entries[index].due = later
                }
            }
        }
        var first = batch
        first.backoff = Self.headFirstLook
        add(first, due: .now + lookDelay(first))
    }

    /// Looked at and not finished: looked at again, soon if it is its connector's head.
    func notFinished(_ batch: TrackedBatch) {
        var next = batch
        next.backoff = min(batch.backoff * 2, Self.headLongestWait)
        add(next, due: .now + lookDelay(batch))
    }

    /// Finished (or given up on): leaves the queue, and the transfer behind it is looked at now.
    func finished(_ batch: TrackedBatch) {
        guard var queue = queues[batch.connectorID] else { return }
        let wasHead = queue.first == batch.id
        queue.removeAll { $0 == batch.id }
        queues[batch.connectorID] = queue.isEmpty ? nil : queue
        guard wasHead, let next = queue.first else { return }
        let now = ContinuousClock.now
        for index in entries.indices where entries[index].batch.id == next && entries[index].due > now {
            entries[index].due = now
            entries[index].batch.backoff = Self.headFirstLook
        }
        waiter?.resume()
        waiter = nil
    }

    private func lookDelay(_ batch: TrackedBatch) -> Duration {
        queues[batch.connectorID]?.first == batch.id ? min(batch.backoff, Self.headLongestWait) : Self.queuedLook
    }

    var count: Int { entries.count }

    /// Waits until at least one transfer is due and returns all that are; nil once closed.
    func nextDue() async -> [TrackedBatch]? {
        while !closed {
            let now = ContinuousClock.now
            let due = entries.filter { $0.due <= now }
            if !due.isEmpty {
                entries.removeAll { $0.due <= now }
                return due.map(\.batch)
            }
            if let earliest = entries.map(\.due).min() {
                // At most 100 ms: `finished` may bring the next head's look forward to now, and a
                // sleeping actor method cannot be woken early.
                try? await Task.sleep(until: min(earliest, now + .milliseconds(100)), clock: .continuous)
            } else {
                await withCheckedContinuation { waiter = $0 }
            }
        }
        return nil
    }

    func close() {
        closed = true
        waiter?.resume()
        waiter = nil
    }
}
