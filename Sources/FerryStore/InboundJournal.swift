import Foundation

/// Where a remote file is on its way in. Each value is committed before the next external action, so a
/// restart resumes every file from the step it had reached.
public enum InboundState: String, Sendable, CaseIterable {
    /// Selected from a listing; not yet asked for.
    case listed
    /// In a batch whose StartFileTransfer may or may not have reached AWS.
    case submitting
    /// StartFileTransfer answered with a TransferId; being tracked.
    case retrieving
    /// Retrieved into `local_directory_path`; not yet downloaded.
    case inS3 = "in_s3"
    /// A temporary file exists in `download_to`; the planned final name is journaled.
    case downloading
    /// On disk under its final name (or no download was asked for); after_retrieve not yet done.
    case downloaded
    /// after_retrieve done: the end of a successful journey.
    case done
    /// The last retrieval or download failed; retried while the file is still listed.
    case failed
    /// The remote name is hostile (path separators, `..`, control characters): never written.
    case refused
}

/// One version of one remote file, as the journal knows it.
public struct InboundFile: Sendable, Equatable {
    public var id: Int64
    public var rule: String
    /// The full remote path as listed (for refused names, a printable escape of it).
    public var remotePath: String
    public var size: Int64?
    /// `modifiedTimestamp` exactly as the listing gave it.
    public var modified: String?
    public var state: InboundState
    public var bucket: String?
    public var key: String?
    /// The temporary file in `download_to` while `downloading`.
    public var tempPath: String?
    /// The planned (while `downloading`) or actual (once `downloaded`) path in `download_to`.
    public var localPath: String?
    public var batchID: Int64?
    public var transferID: String?
    public var attempts: Int
    public var lastError: String?
    public var nextAttemptAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
    /// The temporary file's inode, journaled with the plan: link() and rename() keep it, so a final file
    /// with this inode is ours and proves the move into place happened.
    public var tempInode: UInt64?
    /// How many times after_retrieve (StartRemoteDelete/StartRemoteMove) was called for this version;
    /// more than one is a repeat after an unknown outcome.
    public var afterRetrieveAttempts: Int = 0
    /// The S3 object's ETag when this version was placed: tells a later version's in-doubt retrieval
    /// that the object still holds this one's bytes, not its own.
    public var eTag: String?
    /// The connector id its retrieval was started through (nil before schema 6 or before a retrieval).
    public var connectorID: String?

    /// The file name: the last component of `remotePath`.
    public var name: String {
        remotePath.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? remotePath
    }
}

/// A remote file version as a listing describes it: the inbound dedupe key, less the rule.
public struct RemoteVersion: Sendable, Hashable {
    public var remotePath: String
    public var size: Int64?
    public var modified: String?

    public init(remotePath: String, size: Int64?, modified: String?) {
        self.remotePath = remotePath
        self.size = size
        self.modified = modified
    }
}

/// What the journal remembers of a rule's polls, for the scheduler, `ferry status` and the two-poll rule.
public struct InboundPollRecord: Sendable, Equatable {
    public var rule: String
    public var startedAt: Date?
    public var finishedAt: Date?
    /// A one-line summary of the last finished poll ("ok: 3 new, 12 known", "error").
    public var result: String?
    /// The last poll's error, nil when it succeeded.
    public var error: String?
    public var nextAt: Date?
    /// The listing object of a poll that has not cleaned up after itself (`bucket/key`), if any.
    public var pendingListing: String?
}

/// The inbound half of the journal: remote file versions through their states, and per-rule poll records.
///
/// Dedupe is on (rule, remote path, size, modifiedTimestamp). A missing size or timestamp is stored as
/// -1 or "" rather than NULL because SQLite's UNIQUE treats NULLs as all distinct, which would let the
/// same timestamp-less file be journaled once per poll.
extension Journal {
    static let inboundColumns = """
        id, rule, remote_path, size, modified, state, bucket, s3_key, temp_path, local_path, batch_id, transfer_id,
        attempts, last_error, next_attempt_at, created_at, updated_at, temp_inode, after_retrieve_attempts, etag, connector_id
        """

    static func decodeInbound(_ row: Row) -> InboundFile {
        let size = row.int(3)
        let modified = row.text(4) ?? ""
        return InboundFile(
            id: row.int(0), rule: row.text(1) ?? "", remotePath: row.text(2) ?? "",
            size: size < 0 ? nil : size, modified: modified.isEmpty ? nil : modified,
            state: InboundState(rawValue: row.text(5) ?? "") ?? .failed,
            bucket: row.text(6), key: row.text(7), tempPath: row.text(8), localPath: row.text(9),
            batchID: row.optionalInt(10), transferID: row.text(11), attempts: Int(row.int(12)), lastError: row.text(13),
            nextAttemptAt: row.optionalDouble(14).map(Date.init(timeIntervalSince1970:)),
            createdAt: Date(timeIntervalSince1970: row.double(15)), updatedAt: Date(timeIntervalSince1970: row.double(16)),
            tempInode: row.optionalInt(17).map { UInt64(bitPattern: $0) }, afterRetrieveAttempts: Int(row.int(18)), eTag: row.text(19),
            connectorID: row.text(20))
    }

    private static func key(_ rule: String, _ version: RemoteVersion) -> [SQLValue] {
        [.text(rule), .text(version.remotePath), .integer(version.size ?? -1), .text(version.modified ?? "")]
    }

    // MARK: Listing

    /// Journals the selected versions of one poll in one transaction and returns the files this poll should
    /// retrieve: versions never seen before, versions still `listed` (a poll interrupted before it asked
    /// for them), and `failed` ones with fewer than `maxAttempts` attempts. Versions already retrieved are
    /// left out: that is the dedupe which makes each file arrive once.
    public func recordListed(rule: String, _ versions: [RemoteVersion], maxAttempts: Int) throws -> [InboundFile] {
        guard !versions.isEmpty else { return [] }
        return try locked {
            try connection.transaction {
                let time = timestamp
                let insert = try connection.statement("""
                    INSERT OR IGNORE INTO inbound_files (rule, remote_path, size, modified, state, created_at, updated_at)
                    VALUES (?, ?, ?, ?, 'listed', ?, ?)
                    """)
                let select = try connection.statement("""
                    SELECT \(Self.inboundColumns) FROM inbound_files WHERE rule = ? AND remote_path = ? AND size = ? AND modified = ?
                    """)
                var wanted: [InboundFile] = []
                for version in versions {
                    try insert.run(Self.key(rule, version) + [.real(time), .real(time)])
                    guard let file = try select.query(Self.key(rule, version), Self.decodeInbound).first else { continue }
                    switch file.state {
                    case .listed: wanted.append(file)
                    case .failed where file.attempts < maxAttempts: wanted.append(file)
                    default: break
                    }
                }
                return wanted
            }
        }
    }

    /// Whether this exact version was journaled for `rule` in any state.
    public func isKnown(rule: String, _ version: RemoteVersion) throws -> Bool {
        try locked {
            try !connection.statement("SELECT 1 FROM inbound_files WHERE rule = ? AND remote_path = ? AND size = ? AND modified = ?")
                .query(Self.key(rule, version)) { $0.int(0) }.isEmpty
        }
    }

    /// Journals a hostile remote name as `refused`; returns true the first time this version is refused,
    /// so it is logged and counted once rather than on every poll.
    public func recordRefused(rule: String, _ version: RemoteVersion, reason: String) throws -> Bool {
        try locked {
            let time = timestamp
            try connection.statement("""
                INSERT OR IGNORE INTO inbound_files (rule, remote_path, size, modified, state, last_error, created_at, updated_at)
                VALUES (?, ?, ?, ?, 'refused', ?, ?, ?)
                """).run(Self.key(rule, version) + [.text(reason), .real(time), .real(time)])
            return connection.changes == 1
        }
    }

    /// Forgets every refusal, so that the next listing judges those names under the rules now in force
    /// (a reload may have fixed what made them refused); one still hostile is refused, and logged, again.
    public func forgetRefusals() throws {
        try locked {
            try connection.statement("DELETE FROM inbound_files WHERE state = 'refused'").run()
        }
    }

    // MARK: Retrieval

    /// Journals a retrieval batch as `submitting` before StartFileTransfer is called, with the S3 object
    /// each file will become; returns the batch id.
    public func beginRetrieval(_ files: [(id: Int64, bucket: String, key: String)]) throws -> Int64 {
        try locked {
            try connection.transaction {
                let time = timestamp
                // A sequence in `counters` rather than max(batch_id)+1: an abandoned batch clears its
                // batch_id, and reusing its id would merge two batches' files when tracked.
                try connection.statement("""
                    INSERT INTO counters(name, value) VALUES ('inbound_batch_sequence', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1
                    """).run()
                let batchID = (try connection.statement("SELECT value FROM counters WHERE name = 'inbound_batch_sequence'").query { $0.int(0) }.first) ?? 1
                let update = try connection.statement("""
                    UPDATE inbound_files SET state = 'submitting', batch_id = ?, transfer_id = NULL, bucket = ?, s3_key = ?, updated_at = ?
                    WHERE id = ?
                    """)
                for file in files {
                    try update.run([.integer(batchID), .text(file.bucket), .text(file.key), .real(time), .integer(file.id)])
                }
                return batchID
            }
        }
    }

    /// Records that the batch's StartFileTransfer has an unknown outcome (lost answer, timeout, 5xx): its
    /// files stay `submitting`, so the next poll checks S3 before it asks the partner again.
    public func markRetrievalInDoubt(batch batchID: Int64, error: String) throws {
        try locked {
            try connection.statement("""
                UPDATE inbound_files SET last_error = ? WHERE batch_id = ? AND state = 'submitting'
                """).run([.text("in doubt: \(error)"), .integer(batchID)])
        }
    }

    /// Records that a version whose retrieval was in doubt is already in S3 (its object was found): it is
    /// `in_s3` without a second StartFileTransfer.
    public func markRetrievedWithoutAnswer(_ id: Int64) throws {
        try locked {
            try connection.statement("UPDATE inbound_files SET state = 'in_s3', last_error = NULL, updated_at = ? WHERE id = ? AND state = 'submitting'")
                .run([.real(timestamp), .integer(id)])
        }
    }

    /// The version of another row (any rule) whose bytes are, or are about to be, the S3 object
    /// `bucket/key` and are not yet placed; nil if there is none. A retrieval of the same name would
    /// replace those bytes, so it waits.
    public func unplacedVersion(bucket: String, key: String, excluding id: Int64) throws -> InboundFile? {
        try locked {
            try connection.statement("""
                SELECT \(Self.inboundColumns) FROM inbound_files WHERE bucket = ? AND s3_key = ? AND id <> ?
                AND state IN ('submitting', 'retrieving', 'in_s3', 'downloading') ORDER BY id LIMIT 1
                """).query([.text(bucket), .text(key), .integer(id)], Self.decodeInbound).first
        }
    }

    /// The ETags the S3 object `bucket/key` had when other versions (any rule) were placed from it, and
    /// whether some placed version's ETag is unknown (placed before ETags were journaled).
    public func placedETags(bucket: String, key: String, excluding id: Int64) throws -> (eTags: Set<String>, someUnknown: Bool) {
        let rows = try locked {
            try connection.statement("""
                SELECT etag FROM inbound_files WHERE bucket = ? AND s3_key = ? AND id <> ? AND state IN ('downloaded', 'done')
                """).query([.text(bucket), .text(key), .integer(id)]) { $0.text(0) }
        }
        return (Set(rows.compactMap { $0 }), rows.contains { $0 == nil })
    }

    /// Where another version of the same S3 object (any rule) was placed with exactly these bytes (same
    /// size and ETag), if one was: the local path its row journaled. A retrieval reads the partner's file
    /// when it runs, not when it was listed, so a version replaced between its listing and its retrieval
    /// (same size) is placed with the next version's bytes; when that next version is retrieved in turn,
    /// this finds its bytes already placed.
    /// Only the last placement at a local path counts: with on_conflict overwrite, a later version placed
    /// at the same path replaced those bytes, and the partner sending them again must place them again.
    public func placedCopy(bucket: String, key: String, size: Int64, eTag: String, excluding id: Int64) throws -> String? {
        try locked {
            try connection.statement("""
                SELECT f.local_path FROM inbound_files f WHERE f.bucket = ? AND f.s3_key = ? AND f.id <> ? AND f.size = ? AND f.etag = ?
                AND f.state IN ('downloaded', 'done') AND f.local_path IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM inbound_files o WHERE o.local_path = f.local_path AND o.id > f.id AND o.id <> ?
                                AND o.state IN ('downloaded', 'done') AND (o.etag IS NULL OR o.etag <> f.etag))
                ORDER BY f.id DESC LIMIT 1
                """).query([.text(bucket), .text(key), .integer(id), .integer(size), .text(eTag), .integer(id)]) { $0.text(0) }.first ?? nil
        }
    }

    /// Records the TransferId StartFileTransfer returned for a batch, and the connector id it was started through.
    public func markRetrieving(batch batchID: Int64, transferID: String, connectorID: String? = nil) throws {
        try locked {
            try connection.statement("""
                UPDATE inbound_files SET state = 'retrieving', transfer_id = ?, connector_id = ?, updated_at = ?
                WHERE batch_id = ? AND state = 'submitting'
                """).run([.text(transferID), connectorID.map { .text($0) } ?? .null, .real(timestamp), .integer(batchID)])
        }
    }

    /// Records that StartFileTransfer definitely did not start the batch; its files go back to `listed`.
    public func abandonRetrieval(batch batchID: Int64, error: String) throws {
        try locked {
            try connection.statement("""
                UPDATE inbound_files SET state = 'listed', batch_id = NULL, last_error = ?, updated_at = ? WHERE batch_id = ? AND state = 'submitting'
                """).run([.text(error), .real(timestamp), .integer(batchID)])
        }
    }

    /// Records that AWS rejected the batch's StartFileTransfer outright (a validation error, say): its files
    /// are `failed` with one more attempt counted, so a request that can never succeed stops being made.
    public func rejectRetrieval(batch batchID: Int64, error: String) throws {
        try locked {
            try connection.statement("""
                UPDATE inbound_files SET state = 'failed', attempts = attempts + 1, batch_id = NULL, last_error = ?, updated_at = ?
                WHERE batch_id = ? AND state = 'submitting'
                """).run([.text(error), .real(timestamp), .integer(batchID)])
        }
    }

    /// Records the outcome of tracked retrievals in one transaction: completed files are `in_s3`, failed
    /// ones `failed` with one more attempt counted.
    public func recordRetrievalOutcomes(_ outcomes: [Int64: FileOutcome]) throws {
        guard !outcomes.isEmpty else { return }
        try locked {
            try connection.transaction {
                let time = timestamp
                let completed = try connection.statement("UPDATE inbound_files SET state = 'in_s3', last_error = NULL, updated_at = ? WHERE id = ? AND state = 'retrieving'")
                let failed = try connection.statement("""
                    UPDATE inbound_files SET state = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ? AND state = 'retrieving'
                    """)
                for (id, outcome) in outcomes {
                    switch outcome {
                    case .completed: try completed.run([.real(time), .integer(id)])
                    case .failed(let code, let message): try failed.run([.text("\(code): \(message)"), .real(time), .integer(id)])
                    }
                }
            }
        }
    }

    // MARK: Download and after_retrieve

    /// Journals the temporary file (already created) and the final name planned for it, before any byte
    /// is written, so a restart knows which temporary file is ours and where it was going.
    public func planDownload(_ id: Int64, tempPath: String, finalPath: String, tempInode: UInt64? = nil) throws {
        try setState(id, "downloading", extra: "temp_path = ?, local_path = ?, temp_inode = coalesce(?, temp_inode)",
                     [.text(tempPath), .text(finalPath), tempInode.map { .integer(Int64(bitPattern: $0)) } ?? .null])
    }

    /// Records that the file is on disk at `localPath` (nil: no download was asked for, or it was skipped).
    public func markDownloaded(_ id: Int64, localPath: String?, note: String? = nil, eTag: String? = nil) throws {
        try setState(id, "downloaded", extra: "temp_path = NULL, temp_inode = NULL, local_path = ?, last_error = ?, etag = coalesce(?, etag)",
                     [localPath.map(SQLValue.text) ?? .null, note.map(SQLValue.text) ?? .null, eTag.map(SQLValue.text) ?? .null])
    }

    /// Takes back the count of an after_retrieve call that definitely never reached AWS (throttled,
    /// refused before any work): only calls the partner may have acted on count.
    public func forgetAfterRetrieveAttempt(_ id: Int64) throws {
        try locked {
            try connection.statement("""
                UPDATE inbound_files SET after_retrieve_attempts = max(after_retrieve_attempts - 1, 0), updated_at = ? WHERE id = ?
                """).run([.real(timestamp), .integer(id)])
        }
    }

    /// Records that after_retrieve was done: the file's journey is over.
    public func markInboundDone(_ id: Int64, note: String? = nil) throws {
        try setState(id, "done", extra: "temp_path = NULL, last_error = coalesce(?, last_error)", [note.map(SQLValue.text) ?? .null])
    }

    /// Counts an after_retrieve call about to be made (journaled before the call, so that a call whose
    /// answer is lost is known to have been made); returns how many were made before this one.
    public func beginAfterRetrieve(_ id: Int64) throws -> Int {
        try locked {
            try connection.transaction {
                let before = try connection.statement("SELECT after_retrieve_attempts FROM inbound_files WHERE id = ?")
                    .query([.integer(id)]) { $0.int(0) }.first ?? 0
                try connection.statement("UPDATE inbound_files SET after_retrieve_attempts = after_retrieve_attempts + 1, updated_at = ? WHERE id = ?")
                    .run([.real(timestamp), .integer(id)])
                return Int(before)
            }
        }
    }

    /// Records the ETag of the S3 object a version is being placed from.
    public func setInboundETag(_ id: Int64, _ eTag: String) throws {
        try locked {
            try connection.statement("UPDATE inbound_files SET etag = ? WHERE id = ?").run([.text(eTag), .integer(id)])
        }
    }

    /// Notes why a version is waiting (after_retrieve in doubt, an earlier version unplaced) without
    /// changing its state.
    public func noteInbound(_ id: Int64, _ note: String) throws {
        try locked {
            try connection.statement("UPDATE inbound_files SET last_error = ? WHERE id = ?").run([.text(note), .integer(id)])
        }
    }

    /// Records a failed step; the file is retried on a later poll while it is still listed and has attempts left.
    public func markInboundFailed(_ id: Int64, error: String) throws {
        try setState(id, "failed", extra: "attempts = attempts + 1, last_error = ?, temp_path = NULL", [.text(error)])
    }

    /// Records a failed download: the file stays `in_s3`, retried on every poll without fetching it from
    /// the partner again. It never becomes `failed`: its S3 object may be the only copy of this version
    /// left (the partner may have replaced it), so it is never given up on. `attempts` counts the failures
    /// so that logs can quieten after `maxAttempts`.
    public func recordDownloadFailure(_ id: Int64, error: String, maxAttempts: Int) throws {
        try locked {
            try connection.statement("""
                UPDATE inbound_files SET state = 'in_s3', attempts = attempts + 1, last_error = ?, temp_path = NULL, temp_inode = NULL,
                    local_path = NULL, updated_at = ? WHERE id = ?
                """).run([.text(error), .real(timestamp), .integer(id)])
        }
    }

    /// Records that the object in S3 does not hold this version's bytes (its size differs from the
    /// listing's): the version is `failed` with one more attempt, so it is retrieved again while listed.
    public func recordWrongObject(_ id: Int64, error: String) throws {
        try setState(id, "failed", extra: "attempts = attempts + 1, last_error = ?, temp_path = NULL, temp_inode = NULL, local_path = NULL",
                     [.text(error)])
    }

    private func setState(_ id: Int64, _ state: String, extra: String, _ values: [SQLValue]) throws {
        try locked {
            let assignments = extra.isEmpty ? "" : ", " + extra
            try connection.statement("UPDATE inbound_files SET state = ?, updated_at = ?\(assignments) WHERE id = ?")
                .run([.text(state), .real(timestamp)] + values + [.integer(id)])
        }
    }

    // MARK: Queries

    /// Files in any of `states`, optionally of one rule, oldest first.
    public func inboundFiles(in states: [InboundState], rule: String? = nil) throws -> [InboundFile] {
        try rows(of: "inbound_files", columns: Self.inboundColumns, states: states.map(\.rawValue), rule: rule, Self.decodeInbound)
    }

    /// One inbound file by id.
    public func inboundFile(_ id: Int64) throws -> InboundFile? {
        try row(of: "inbound_files", columns: Self.inboundColumns, id: id, Self.decodeInbound)
    }

    /// Per rule, how many remote file versions are in each state.
    public func inboundCounts() throws -> [String: [InboundState: Int]] {
        try countsByState(of: "inbound_files")
    }

    // MARK: Polls

    /// Records that a poll of `rule` started (the scheduler's anchor for missed ticks after a restart).
    public func recordPollStarted(rule: String, at date: Date) throws {
        try locked {
            try connection.statement("""
                INSERT INTO inbound_polls (rule, started_at) VALUES (?, ?) ON CONFLICT(rule) DO UPDATE SET started_at = excluded.started_at
                """).run([.text(rule), .real(date.timeIntervalSince1970)])
        }
    }

    /// Records how a poll ended and, if known, when the next one is due (nil keeps what the scheduler set).
    public func recordPollFinished(rule: String, at date: Date, result: String, error: String?, nextAt: Date?) throws {
        try locked {
            try connection.statement("""
                INSERT INTO inbound_polls (rule, finished_at, result, error, next_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(rule) DO UPDATE SET finished_at = excluded.finished_at, result = excluded.result,
                    error = excluded.error, next_at = coalesce(excluded.next_at, next_at)
                """).run([.text(rule), .real(date.timeIntervalSince1970), .text(result), error.map(SQLValue.text) ?? .null,
                          nextAt.map { .real($0.timeIntervalSince1970) } ?? .null])
        }
    }

    /// Records when the next poll of `rule` is due, for `ferry status`.
    public func setNextPoll(rule: String, at date: Date) throws {
        try locked {
            try connection.statement("""
                INSERT INTO inbound_polls (rule, next_at) VALUES (?, ?) ON CONFLICT(rule) DO UPDATE SET next_at = excluded.next_at
                """).run([.text(rule), .real(date.timeIntervalSince1970)])
        }
    }

    /// Remembers (or, with nil, forgets) the listing object a poll is waiting for, so that one left behind
    /// by a crash is deleted on the next poll.
    public func setPendingListing(rule: String, _ location: String?) throws {
        try locked {
            try connection.statement("""
                INSERT INTO inbound_polls (rule, pending_listing) VALUES (?, ?)
                ON CONFLICT(rule) DO UPDATE SET pending_listing = excluded.pending_listing
                """).run([.text(rule), location.map(SQLValue.text) ?? .null])
        }
    }

    /// The sizes of files without a timestamp as the last poll saw them (path → size), for the rule that
    /// such a file must be seen twice with the same size.
    public func unstableSizes(rule: String) throws -> [String: Int64] {
        let text = try locked {
            try connection.statement("SELECT unstable_sizes FROM inbound_polls WHERE rule = ?").query([.text(rule)]) { $0.text(0) }.first ?? nil
        }
        guard let data = text?.data(using: .utf8) else { return [:] }
        return (try? JSONDecoder().decode([String: Int64].self, from: data)) ?? [:]
    }

    /// Replaces the remembered sizes of timestamp-less files for `rule`.
    public func setUnstableSizes(rule: String, _ sizes: [String: Int64]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let text = String(decoding: try encoder.encode(sizes), as: UTF8.self)
        try locked {
            try connection.statement("""
                INSERT INTO inbound_polls (rule, unstable_sizes) VALUES (?, ?) ON CONFLICT(rule) DO UPDATE SET unstable_sizes = excluded.unstable_sizes
                """).run([.text(rule), .text(text)])
        }
    }

    static let pollColumns = "rule, started_at, finished_at, result, error, next_at, pending_listing"

    static func decodePoll(_ row: Row) -> InboundPollRecord {
        InboundPollRecord(rule: row.text(0) ?? "", startedAt: row.optionalDouble(1).map(Date.init(timeIntervalSince1970:)),
                          finishedAt: row.optionalDouble(2).map(Date.init(timeIntervalSince1970:)), result: row.text(3),
                          error: row.text(4), nextAt: row.optionalDouble(5).map(Date.init(timeIntervalSince1970:)),
                          pendingListing: row.text(6))
    }

    /// What the journal remembers of `rule`'s polls, nil if it was never polled.
    public func pollRecord(rule: String) throws -> InboundPollRecord? {
        try locked {
            try connection.statement("SELECT \(Self.pollColumns) FROM inbound_polls WHERE rule = ?").query([.text(rule)], Self.decodePoll).first
        }
    }

    /// Per rule, remote files whose journey ended (`done`) since `since`.
    public func inboundDone(since: Date) throws -> [String: Int] {
        try countsReaching(InboundState.done.rawValue, in: "inbound_files", since: since)
    }

    /// Every rule's poll record, by rule name (for `ferry status`: last poll, its error, the next one).
    public func pollRecords() throws -> [InboundPollRecord] {
        try locked {
            try connection.statement("SELECT \(Self.pollColumns) FROM inbound_polls ORDER BY rule").query([], Self.decodePoll)
        }
    }
}
