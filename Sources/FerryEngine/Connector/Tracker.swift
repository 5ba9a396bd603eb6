import Foundation

/// A transfer a connector service follows with ListFileTransferResults.
struct TrackedTransfer: Sendable {
    /// The order the connector service saw it submitted in: the connector works through its queue in
    /// this order (a transfer found started after a restart comes before those started since).
    var id: Int64
    /// The connector id it was sent with: tracking asks about it there, even after a reload changed the
    /// connector's id.
    var connectorID: String
    var transferID: String
    /// When StartFileTransfer was called: AWS keeps results for 7 days, after which the outcome is lost.
    var submittedAt: Date
    /// The wait before the next look: from 250 ms doubling to 2 s for the head (back to 250 ms while
    /// each look finds more of its files finished), and after an error doubling up to 30 s.
    var backoff: Duration
    /// How many of its files the last look found finished (COMPLETED or FAILED).
    var settledFiles = 0

    func backedOff() -> TrackedTransfer {
        var next = self
        next.backoff = min(backoff * 2, .seconds(30))
        return next
    }
}

/// Submitted transfers ordered by when to look at them next: one sleeping loop, not one timer each.
///
/// A connector works through its queue in order, so the transfer submitted first is the one that
/// finishes next. Only that one (per connector id: the *head*) is looked at often, from 250 ms after it
/// became the head, doubling to at most 2 s while it makes no progress; when it finishes, the next one
/// becomes the head and is looked at at once (it has usually finished too), with the three behind it. The others are looked at every 30 s, in case the
/// queue's order is not what it seems (a huge file at the head, another client's transfers). This
/// spends about one ListFileTransferResults per transfer instead of one per backoff step, and frees
/// each in-flight slot as soon as its transfer is done, so the connector's queue never runs dry.
actor Tracker {
    static let headFirstLook: Duration = .milliseconds(250)
    static let headLongestWait: Duration = .seconds(2)
    static let queuedLook: Duration = .seconds(30)
    /// Transfers behind a new head that are looked at with it (see `finished`).
    static let lookahead = 3

    private var entries: [(due: ContinuousClock.Instant, batch: TrackedTransfer)] = []
    /// Unfinished batch ids per connector id, oldest first.
    private var queues: [String: [Int64]] = [:]
    /// Wakes a loop waiting with nothing to look at; its iteration ends when the waiting task is
    /// cancelled, so a stop never waits for a transfer to be added.
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private var closed = false

    init() {
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Looks at `batch` at `due`, whatever its place (used after errors, with their own backoff).
    func add(_ batch: TrackedTransfer, due: ContinuousClock.Instant) {
        guard !closed else { return }
        entries.append((due, batch))
        wake.yield()
    }

    /// A transfer just submitted (or found submitted at start): joins its connector's queue.
    func submitted(_ batch: TrackedTransfer) {
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

    /// Looked at and not finished, with `settledFiles` of its files finished: looked at again, soon if
    /// it is its connector's head. A head that finished more files since the last look is being worked
    /// on and will be done soon: it keeps the first wait (250 ms) instead of doubling, so that its end is
    /// seen within that; one that made no progress (a large file, a connector busy with other clients'
    /// transfers) is looked at less and less often, up to every 2 s.
    func notFinished(_ batch: TrackedTransfer, settledFiles: Int? = nil) {
        var next = batch
        let progressed = settledFiles.map { $0 > batch.settledFiles } ?? false
        if progressed, let settledFiles {
            next.settledFiles = settledFiles
            next.backoff = Self.headFirstLook
        } else {
            next.backoff = min(batch.backoff * 2, Self.headLongestWait)
        }
        // This wait is the current one (the doubled one is for the look after), or the first after progress.
        add(next, due: .now + lookDelay(progressed ? next : batch))
    }

    /// Finished (or given up on): leaves the queue, and the transfers behind it are looked at now: the
    /// new head and the `lookahead` after it, together. The connector works through its queue in order
    /// and on several connections, so when the head is done those behind it often are too; looked at one
    /// after another, each look waiting for the last one's recording and after_send, ferry fell behind
    /// the connector (bench/connector: the last six transfers seen 1.5 s after they were delivered).
    /// One that is not finished goes back to waiting its turn (30 s, or at once when it becomes the head).
    func finished(_ batch: TrackedTransfer) {
        guard var queue = queues[batch.connectorID] else { return }
        let wasHead = queue.first == batch.id
        queue.removeAll { $0 == batch.id }
        queues[batch.connectorID] = queue.isEmpty ? nil : queue
        guard wasHead, !queue.isEmpty else { return }
        let now = ContinuousClock.now
        let next = Set(queue.prefix(1 + Self.lookahead))
        for index in entries.indices where next.contains(entries[index].batch.id) && entries[index].due > now {
            entries[index].due = now
            entries[index].batch.backoff = Self.headFirstLook
        }
        wake.yield()
    }

    private func lookDelay(_ batch: TrackedTransfer) -> Duration {
        queues[batch.connectorID]?.first == batch.id ? min(batch.backoff, Self.headLongestWait) : Self.queuedLook
    }

    var count: Int { entries.count }

    /// Waits until at least one transfer is due and returns all that are; empty if none fell due by
    /// `deadline`; nil once closed or cancelled.
    func nextDue(notAfter deadline: ContinuousClock.Instant? = nil) async -> [TrackedTransfer]? {
        while !closed && !Task.isCancelled {
            let now = ContinuousClock.now
            let due = entries.filter { $0.due <= now }
            if !due.isEmpty {
                entries.removeAll { $0.due <= now }
                return due.map(\.batch)
            }
            if let deadline, now >= deadline { return [] }
            if let earliest = entries.map(\.due).min() {
                // At most 100 ms: `finished` may bring the next head's look forward to now, and a
                // sleeping actor method cannot be woken early.
                try? await Task.sleep(until: min(earliest, now + .milliseconds(100), deadline ?? earliest), clock: .continuous)
            } else if let deadline {
                try? await Task.sleep(until: deadline, clock: .continuous)
            } else {
                var iterator = wakeups.makeAsyncIterator()
                if await iterator.next() == nil, !closed {
                    // The stream ended with a cancelled waiter (AsyncStream finishes then): a later
                    // loop polls instead of waiting for a wake-up that can no longer come.
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }
        return nil
    }

    func close() {
        closed = true
        wake.finish()
    }
}
