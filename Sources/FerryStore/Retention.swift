import FerrySystem
import Foundation

/// A finished outbound row old enough to be pruned, with the version it describes, so the pruner can
/// check (outside the journal lock) whether that exact version is still on disk.
public struct OutboundPruneCandidate: Sendable, Equatable {
    public var id: Int64
    public var path: String
    /// The version the row describes.
    public var version: FileVersion
    public var state: OutboundState
    /// When the row reached its finished state (its cursor position in the finished index).
    public var finishedAt: Double
}

/// Where a pruning walk through one finished state has got to: (finished time, id) of the last row seen.
public struct PruneCursor: Sendable, Equatable {
    public var finishedAt: Double
    public var id: Int64

    public init(finishedAt: Double, id: Int64) {
        self.finishedAt = finishedAt
        self.id = id
    }

    /// The start of the walk.
    public static let start = PruneCursor(finishedAt: -.infinity, id: 0)
}

/// What one small pruning transaction did, and how long it held the journal.
public struct PruneStep: Sendable, Equatable {
    /// File rows deleted.
    public var files: Int
    /// Batch rows deleted because none of their files is left.
    public var batches: Int
    /// How long the journal lock (and SQLite's write lock) was held.
    public var lockHeld: Duration
}

/// Retention: deleting finished rows in small transactions and returning the freed pages.
///
/// Every method here holds the journal lock for one short transaction only; the caller (FerryEngine's
/// `JournalPruner`) loops, pausing between steps so that the pipeline's writes are never kept waiting
/// for more than one step.
extension Journal {
    /// Up to `limit` rows in the finished outbound `state` that finished before `cutoff`, after `cursor`,
    /// in (finished time, id) order: a range scan of the partial index, whatever the journal's size.
    public func outboundPruneCandidates(state: OutboundState, finishedBefore cutoff: Date, after cursor: PruneCursor,
                                        limit: Int) throws -> [OutboundPruneCandidate] {
        try locked {
            try connection.statement("""
                SELECT id, path, device, inode, size, mtime_ns, state, updated_at FROM outbound_files
                WHERE state IN \(Self.finishedOutboundSQL) AND state = ? AND updated_at < ? AND (updated_at, id) > (?, ?)
                ORDER BY updated_at, id LIMIT ?
                """).query([.text(state.rawValue), .real(cutoff.timeIntervalSince1970), .real(cursor.finishedAt), .integer(cursor.id),
                            .integer(Int64(limit))]) { row in
                OutboundPruneCandidate(id: row.int(0), path: row.text(1) ?? "", version: row.version(at: 2),
                                       state: OutboundState(rawValue: row.text(6) ?? "") ?? .dropped, finishedAt: row.double(7))
            }
        }
    }

    /// Reads every page `pruneOutbound(ids)` will change — each row, its entry in every index of
    /// `outbound_files`, its batch and the batch's index entry — on the side connection, without the
    /// journal lock, so that the step that holds the lock finds them in the page cache. On a cold
    /// million-row journal each deleted row otherwise read its index pages from disk one by one while
    /// holding the journal (bench/journal: a step of 125 rows held it 67 ms). Returns the rows read.
    @discardableResult
    public func readAheadOutboundPrune(_ ids: [Int64]) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try withSideConnection { side in
            let row = try side.statement("""
                SELECT rule, path, device, inode, size, mtime_ns, state, updated_at, batch_id FROM outbound_files WHERE id = ?
                """)
            // Each probe walks one index down to the row's entry (INDEXED BY: the index itself, not the
            // table). A partial index is usable only where the query implies its condition.
            let version = try side.statement("""
                SELECT 1 FROM outbound_files INDEXED BY outbound_files_version
                WHERE rule = ? AND path = ? AND device = ? AND inode = ? AND size = ? AND mtime_ns = ? AND state NOT IN ('dropped', 'retried')
                """)
            let state = try side.statement("SELECT 1 FROM outbound_files INDEXED BY outbound_files_state WHERE state = ? AND rule = ? AND rowid = ?")
            let identity = try side.statement("SELECT 1 FROM outbound_files INDEXED BY outbound_files_identity WHERE path = ? AND inode = ?")
            let finished = try side.statement("""
                SELECT 1 FROM outbound_files INDEXED BY outbound_files_finished
                WHERE state IN \(Self.finishedOutboundSQL) AND state = ? AND updated_at = ?
                """)
            let name = try side.statement("""
                SELECT 1 FROM outbound_files INDEXED BY outbound_files_name WHERE \(Self.baseNameSQL("path")) = \(Self.baseNameSQL("?"))
                """)
            let batchFiles = try side.statement("SELECT 1 FROM outbound_files INDEXED BY outbound_files_batch WHERE batch_id = ? LIMIT 1")
            let batch = try side.statement("SELECT state FROM outbound_batches WHERE id = ?")
            let batchState = try side.statement("SELECT 1 FROM outbound_batches INDEXED BY outbound_batches_state WHERE state = ? AND rowid = ?")
            var read = 0
            // Each SELECT reads on its own (no transaction: BEGIN IMMEDIATE would take the write lock).
            for id in ids {
                let values = try row.query([.integer(id)]) { r -> [SQLValue] in
                    [.text(r.text(0) ?? ""), .text(r.text(1) ?? ""), .integer(r.int(2)), .integer(r.int(3)), .integer(r.int(4)),
                     .integer(r.int(5)), .text(r.text(6) ?? ""), .real(r.double(7)), r.optionalInt(8).map { .integer($0) } ?? .null]
                }.first
                guard let values else { continue }
                read += 1
                _ = try version.query(Array(values[0...5])) { _ in () }
                _ = try state.query([values[6], values[0], .integer(id)]) { _ in () }
                _ = try identity.query([values[1], values[3]]) { _ in () }
                _ = try finished.query([values[6], values[7]]) { _ in () }
                _ = try name.query([values[1]]) { _ in () }
                if case .integer(let batchID) = values[8] {
                    _ = try batchFiles.query([.integer(batchID)]) { _ in () }
                    if let state = try batch.query([.integer(batchID)], { $0.text(0) }).first ?? nil {
                        _ = try batchState.query([.text(state), .integer(batchID)]) { _ in () }
                    }
                }
            }
            return read
        }
    }

    /// Deletes the outbound rows `ids` in one transaction — each only if it is still finished and finished
    /// before `cutoff` (a row put back meanwhile stays) — and the batches that no longer have any file.
    /// The newest row stays, whatever its age: SQLite gives a new row the largest id plus one, so with the
    /// table emptied ids would start again at 1, and the outbound backlog (which reads rows by id above a
    /// cursor) would take new files for ones it had handed on (the short soak: a wave after retention had
    /// pruned every row was never uploaded). Ids only ever grow.
    public func pruneOutbound(_ ids: [Int64], finishedBefore cutoff: Date) throws -> PruneStep {
        guard !ids.isEmpty else { return PruneStep(files: 0, batches: 0, lockHeld: .zero) }
        return try locked {
            let started = ContinuousClock.now
            let (files, batches) = try connection.transaction(durable: false, checkpoint: false) { () throws -> (Int, Int) in
                let batchOf = try connection.statement("SELECT batch_id FROM outbound_files WHERE id = ?")
                let delete = try connection.statement("""
                    DELETE FROM outbound_files WHERE id = ? AND state IN \(Self.finishedOutboundSQL) AND updated_at < ?
                    AND id < (SELECT max(id) FROM outbound_files)
                    """)
                var files = 0
                var batchIDs = Set<Int64>()
                for id in ids {
                    let batch = try batchOf.query([.integer(id)]) { $0.optionalInt(0) }.first ?? nil
                    try delete.run([.integer(id), .real(cutoff.timeIntervalSince1970)])
                    if connection.changes == 1 {
                        files += 1
                        if let batch { batchIDs.insert(batch) }
                    }
                }
                let deleteBatch = try connection.statement("""
                    DELETE FROM outbound_batches WHERE id = ? AND state = 'finished'
                    AND NOT EXISTS (SELECT 1 FROM outbound_files WHERE batch_id = ?)
                    """)
                var batches = 0
                for batch in batchIDs {
                    try deleteBatch.run([.integer(batch), .integer(batch)])
                    batches += connection.changes
                }
                return (files, batches)
            }
            return PruneStep(files: files, batches: batches, lockHeld: ContinuousClock.now - started)
        }
    }

    /// Deletes up to `limit` finished batches without files that ended before `cutoff` (abandoned
    /// batches, whose files went back to `staged` and were sent in another), walking batch ids upward from
    /// `afterID`. Returns the step and the id to continue from, nil when the walk reached batches that are
    /// too young.
    public func pruneEmptyBatches(finishedBefore cutoff: Date, afterID: Int64, limit: Int) throws -> (PruneStep, next: Int64?) {
        try locked {
            let started = ContinuousClock.now
            let (deleted, next) = try connection.transaction(durable: false, checkpoint: false) { () throws -> (Int, Int64?) in
                let rows = try connection.statement("""
                    SELECT id, state, updated_at, created_at FROM outbound_batches WHERE id > ? ORDER BY id LIMIT ?
                    """).query([.integer(afterID), .integer(Int64(limit))]) { ($0.int(0), $0.text(1) ?? "", $0.double(2), $0.double(3)) }
                let delete = try connection.statement("""
                    DELETE FROM outbound_batches WHERE id = ? AND NOT EXISTS (SELECT 1 FROM outbound_files WHERE batch_id = ?)
                    """)
                var deleted = 0
                for (id, state, updated, _) in rows where state == BatchState.finished.rawValue && updated < cutoff.timeIntervalSince1970 {
                    try delete.run([.integer(id), .integer(id)])
                    deleted += connection.changes
                }
                // Ids grow with time: once a batch was created after the cutoff, none beyond it can be old.
                let reachedYoung = rows.count < limit || rows.contains { $0.3 >= cutoff.timeIntervalSince1970 }
                return (deleted, reachedYoung ? nil : rows.last?.0)
            }
            return (PruneStep(files: 0, batches: deleted, lockHeld: ContinuousClock.now - started), next)
        }
    }

    /// Deletes, in one transaction, up to `limit` inbound `done` rows that finished before `cutoff`, after
    /// `cursor`. A row of a rule in `keepingRules` (the partner keeps what was retrieved, so the row is
    /// what stops it being retrieved again) is kept while it is the newest row of its remote path: that
    /// version may still be listed. Returns the step and where the walk has got to (nil at its end).
    public func pruneInbound(finishedBefore cutoff: Date, keepingRules: Set<String>, after cursor: PruneCursor,
                             limit: Int) throws -> (PruneStep, next: PruneCursor?) {
        try locked {
            let started = ContinuousClock.now
            let (deleted, next) = try connection.transaction(durable: false, checkpoint: false) { () throws -> (Int, PruneCursor?) in
                let rows = try connection.statement("""
                    SELECT id, rule, remote_path, updated_at FROM inbound_files
                    WHERE state IN \(Self.finishedInboundSQL) AND state = 'done' AND updated_at < ? AND (updated_at, id) > (?, ?)
                    ORDER BY updated_at, id LIMIT ?
                    """).query([.real(cutoff.timeIntervalSince1970), .real(cursor.finishedAt), .integer(cursor.id), .integer(Int64(limit))]) {
                    (id: $0.int(0), rule: $0.text(1) ?? "", remotePath: $0.text(2) ?? "", finishedAt: $0.double(3))
                }
                let newer = try connection.statement("SELECT 1 FROM inbound_files WHERE rule = ? AND remote_path = ? AND id > ? LIMIT 1")
                let delete = try connection.statement("DELETE FROM inbound_files WHERE id = ? AND state = 'done'")
                var deleted = 0
                for row in rows {
                    if keepingRules.contains(row.rule),
                       try newer.query([.text(row.rule), .text(row.remotePath), .integer(row.id)], { $0.int(0) }).isEmpty {
                        continue
                    }
                    try delete.run([.integer(row.id)])
                    deleted += connection.changes
                }
                let next = rows.count < limit ? nil : rows.last.map { PruneCursor(finishedAt: $0.finishedAt, id: $0.id) }
                return (deleted, next)
            }
            return (PruneStep(files: deleted, batches: 0, lockHeld: ContinuousClock.now - started), next)
        }
    }

    /// Returns up to `pages` free pages to the file system (incremental vacuum); returns how many pages
    /// are still free and how long the lock was held. A no-op on a journal without auto-vacuum.
    public func returnFreePages(_ pages: Int) throws -> (remaining: Int, lockHeld: Duration) {
        try locked {
            let started = ContinuousClock.now
            // Like the deletes, safe to lose in a power cut: the pages are simply still free afterwards.
            try connection.transaction(durable: false, checkpoint: false) {
                try connection.execute("PRAGMA incremental_vacuum(\(max(1, pages)))")
            }
            let free = try connection.statement("PRAGMA freelist_count").query { Int($0.int(0)) }.first ?? 0
            return (free, ContinuousClock.now - started)
        }
    }

    /// Rows in the journal's file tables and the file's size in bytes (pages × page size), for tests,
    /// the benchmark and the pruner's log line.
    public func storageFigures() throws -> (outboundRows: Int, inboundRows: Int, batches: Int, bytes: Int64, freePages: Int) {
        try locked {
            let count = { (table: String) throws -> Int in
                Int(try self.connection.statement("SELECT count(*) FROM \(table)").query { $0.int(0) }.first ?? 0)
            }
            let pages = try connection.statement("PRAGMA page_count").query { $0.int(0) }.first ?? 0
            let size = try connection.statement("PRAGMA page_size").query { $0.int(0) }.first ?? 0
            let free = try connection.statement("PRAGMA freelist_count").query { Int($0.int(0)) }.first ?? 0
            return (try count("outbound_files"), try count("inbound_files"), try count("outbound_batches"), pages * size, free)
        }
    }

    /// Pages in the journal's free list.
    public func freePages() throws -> Int {
        try locked { Int(try connection.statement("PRAGMA freelist_count").query { $0.int(0) }.first ?? 0) }
    }

    /// The rules that have inbound rows, from the per-state counts (a few rows, whatever the journal's size).
    public func inboundRuleNames() throws -> [String] {
        try locked {
            try connection.statement("SELECT DISTINCT rule FROM state_counts WHERE direction = 'inbound' AND n > 0").query { $0.text(0) ?? "" }
        }
    }

    /// Whether the journal returns freed pages to the file system (`PRAGMA auto_vacuum` is incremental).
    public var returnsFreePages: Bool {
        (try? locked { try connection.statement("PRAGMA auto_vacuum").query { $0.int(0) }.first }) == 2
    }
}
