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
    private var groups: [GroupKey: [OutboundFile]] = [:]
    private var generation: [GroupKey: Int] = [:]
    private var queued: Set<Int64> = []
    private var closed = false

    /// `rule` looks up a rule by name and `queue` a connector's submit queue, both as currently configured.
    init(rule: @escaping @Sendable (String) -> OutboundRule?, queue: @escaping @Sendable (String) -> AsyncQueue<PendingBatch>?) {
        self.rule = rule
        self.queue = queue
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
            let wait = rule.batchMaxWait
            Task {
                try? await Task.sleep(for: wait)
                await self.flushIfStill(key, generation: current)
            }
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
    var fileIDs: [Int64]
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
actor Tracker {
    private var entries: [(due: ContinuousClock.Instant, batch: TrackedBatch)] = []
    private var waiter: CheckedContinuation<Void, Never>?
    private var closed = false

    func add(_ batch: TrackedBatch, due: ContinuousClock.Instant) {
        guard !closed else { return }
        entries.append((due, batch))
        waiter?.resume()
        waiter = nil
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
                try? await Task.sleep(until: min(earliest, now + .seconds(1)), clock: .continuous)
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
