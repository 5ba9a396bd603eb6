import Foundation
import FerryConfig
import FerryStore
import FerrySystem

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
    /// The grouped files' places in their rule's window, passed on with the batch.
    private var tickets: [GroupKey: [Int64: BacklogTicket]] = [:]
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

    /// Groups `file`; `ticket`, its place in its rule's window, goes with it into its batch.
    func add(_ file: OutboundFile, ticket: BacklogTicket? = nil) async {
        guard !closed, let rule = rule(file.rule), !queued.contains(file.id) else { return }
        queued.insert(file.id)
        let key = GroupKey(rule: file.rule, remoteDirectory: file.remoteDirectory)
        // Two versions of one name in one transfer would race for one remote name: the second waits
        // for the next batch, so the partner receives them in order, each whole.
        if groups[key]?.contains(where: { Array($0.relativePath.utf8) == Array(file.relativePath.utf8) }) == true {
            await flush(key)
        }
        groups[key, default: []].append(file)
        if let ticket { tickets[key, default: [:]][file.id] = ticket }
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
        let held = tickets.removeValue(forKey: key) ?? [:]
        guard let files = groups.removeValue(forKey: key), !files.isEmpty else { return }
        generation[key, default: 0] += 1
        for file in files { queued.remove(file.id) }
        queued.releaseBurstStorage()
        guard let connector = rule(key.rule)?.connector else { return }
        await queue(connector)?.push(PendingBatch(rule: key.rule, connector: connector, remoteDirectory: key.remoteDirectory,
                                                   files: files, tickets: held, existingBatchID: nil))
    }

    func close() {
        closed = true
        groups.removeAll()
        tickets.removeAll()
    }
}

/// A submitted batch, as outbound follows it through its connector service's tracking.
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
         sentFileIDs: [Int64]? = nil, submittedAt: Date) {
        self.id = id
        self.rule = rule
        self.connector = connector
        self.connectorID = connectorID
        self.transferID = transferID
        self.fileIDs = fileIDs
        self.sentFileIDs = sentFileIDs ?? fileIDs
        self.submittedAt = submittedAt
    }
    /// When StartFileTransfer was called: AWS keeps results for 7 days, after which the outcome is lost.
    var submittedAt: Date
}
