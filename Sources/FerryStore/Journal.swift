import FerrySystem
import Foundation
import Logging

/// Where an outbound file is in its journey. Each value is committed before the next external action.
public enum OutboundState: String, Sendable, CaseIterable {
    /// Complete on disk, not yet uploaded.
    case detected
    /// Uploaded to S3 staging; waiting for a batch.
    case staged
    /// In a batch whose StartFileTransfer may or may not have reached AWS.
    case submitting
    /// StartFileTransfer answered with a TransferId; being tracked.
    case submitted
    /// The partner has it; after_send not yet done.
    case completed
    /// after_send done: the end of a successful journey. (Journals before schema 5 called it `disposed`.)
    case done
    /// The last transfer failed; waiting for its retry.
    case failed
    /// Out of retries, or its outcome can no longer be learned; moved to `.ferry/failed/` with a reason file.
    case quarantined
    /// StartFileTransfer's outcome is unknown and the connector says `on_in_doubt: hold`: moved to
    /// `.ferry/in-doubt/` with a reason file until an operator decides (`ferry retry` resends it).
    case inDoubt = "in_doubt"
    /// Changed or vanished before upload; the watcher reports the new version if there is one.
    case dropped
    /// Quarantined, then put back by `ferry retry`: history; the file is journaled afresh when found again.
    case retried
}

/// One version of one local file, as the journal knows it.
public struct OutboundFile: Sendable, Equatable {
    public var id: Int64
    public var rule: String
    public var path: String
    public var relativePath: String
    /// The version of the file this row is about: columns device, inode, size, mtime_ns.
    public var version: FileVersion
    public var state: OutboundState
    public var remoteDirectory: String?
    public var bucket: String?
    public var key: String?
    /// The CRC-32C S3 verified on upload (`x-amz-checksum-crc32c`, base64; `PutObjectResult.checksumCRC32C`),
    /// never the ETag. Rows journaled by builds before d1936da may still hold the ETag (a quoted hex string).
    public var checksum: String?
    public var batchID: Int64?
    public var transferID: String?
    public var attempts: Int
    public var lastError: String?
    public var nextAttemptAt: Date?
    public var createdAt: Date
    public var updatedAt: Date
    /// The inode of the ready marker seen when this version was complete (rules with `ready_marker`).
    public var markerInode: UInt64? = nil

    /// The version's size in bytes.
    public var size: Int64 { version.size }

    public init(id: Int64, rule: String, path: String, relativePath: String, version: FileVersion, state: OutboundState, remoteDirectory: String?, bucket: String?, key: String?,
                checksum: String?, batchID: Int64?, transferID: String?, attempts: Int, lastError: String?, nextAttemptAt: Date?,
                createdAt: Date, updatedAt: Date, markerInode: UInt64? = nil) {
        self.id = id
        self.rule = rule
        self.path = path
        self.relativePath = relativePath
        self.version = version
        self.state = state
        self.remoteDirectory = remoteDirectory
        self.bucket = bucket
        self.key = key
        self.checksum = checksum
        self.batchID = batchID
        self.transferID = transferID
        self.attempts = attempts
        self.lastError = lastError
        self.nextAttemptAt = nextAttemptAt
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.markerInode = markerInode
    }
}

/// A file the engine has just seen complete, before the journal gives it an id.
public struct NewOutboundFile: Sendable, Equatable {
    public var rule: String
    public var path: String
    public var relativePath: String
    /// The version that completed.
    public var version: FileVersion
    public var remoteDirectory: String?
    /// The rule archives or deletes what it sent, so a `done` row of this very version means the file was
    /// put back (e.g. moved back from the archive): that row becomes history and the file a new arrival.
    public var supersedesDone: Bool
    /// The inode of the ready marker seen with this version, if the rule uses one.
    public var markerInode: UInt64?
    /// When the file was last seen at its path as this version (a look just before journaling). A `done`
    /// row that became done after that is the send of this very file, sent and archived while its report
    /// was on its way (a start-up scan reporting files the recovered batches were sending): not a file put
    /// back, so it is not retired and nothing is journaled. Nil: any `done` row is superseded.
    public var observedAt: Date?

    public init(rule: String, path: String, relativePath: String, version: FileVersion, remoteDirectory: String?, supersedesDone: Bool = false,
                markerInode: UInt64? = nil, observedAt: Date? = nil) {
        self.supersedesDone = supersedesDone
        self.observedAt = observedAt
        self.markerInode = markerInode
        self.rule = rule
        self.path = path
        self.relativePath = relativePath
        self.version = version
        self.remoteDirectory = remoteDirectory
    }
}

/// Where a batch is: `submitting` until StartFileTransfer answers, `submitted` while tracked, then `finished`.
public enum BatchState: String, Sendable {
    case submitting, submitted, finished
}

/// Up to ten files sent with one StartFileTransfer.
public struct OutboundBatch: Sendable, Equatable {
    public var id: Int64
    public var rule: String
    public var connector: String
    public var connectorID: String
    public var remoteDirectory: String?
    public var state: BatchState
    public var transferID: String?
    /// The batch's files still in flight (submitting or submitted).
    public var fileIDs: [Int64]
    public var createdAt: Date
    /// Every file the batch sent, including those whose outcome is already recorded: the transfer's
    /// results still list them after a restart between two looks.
    public var sentFileIDs: [Int64] = []
}

/// The outcome of one file of a tracked transfer.
public enum FileOutcome: Sendable, Equatable {
    case completed
    case failed(code: String, message: String)
}

/// The SQLite journal at `<state_dir>/journal.db`: every file's and transfer's state, crash-safe.
///
/// WAL mode with `synchronous=FULL`: a commit is on disk before it returns, so even a power cut cannot
/// forget that a batch is being submitted or was submitted (forgetting would send it twice). A `kill -9`
/// alone would be safe with NORMAL; a power cut would not.
///
/// Changes that are safe to lose in a power cut commit without waiting for the disk (`durable: false`,
/// NORMAL for that commit): detected, staged, completed, failed, done, dropped, quarantined and
/// requeued. Losing one puts the file back in its previous state, and the pipeline repeats the step
/// harmlessly: a detected file is found again by the start-up scan, a staged one is uploaded again to
/// the same key, a completed batch is tracked again by its TransferId and its after_send finds the file
/// already handled. Only `submitting`, `submitted` and abandoned batches decide whether a partner gets a
/// file twice, and those stay durable — which also makes every earlier commit durable, since WAL
/// commits reach the disk in order. An fsync costs more CPU than the rest of a small file's journey.
public final class Journal: @unchecked Sendable {
    /// The journal file.
    public let path: String
    private let lock = NSLock()
    /// Who holds `lock` since when, and the liveness hook; its own lock, so that reading it never waits
    /// for a stuck journal.
    private let activity = ActivityState()
    let connection: SQLiteConnection
    /// Uploads recorded by `markStagedSoon` and not yet written. Its own lock, never held across SQLite
    /// work: `markStagedSoon` runs in upload completions on FerryAWS's HTTP thread, and waiting there
    /// for `lock` (held through a transaction's fsync) would stall every request of the process.
    /// Entries are appended under `pendingLock` alone and removed only with `lock` held as well, so a
    /// writer that snapshots them under `lock` removes exactly the ones it wrote.
    private let pendingLock = NSLock()
    private var pendingStagedStorage: [StagedCopy] = []
    private let logger: Logger
    private let now: @Sendable () -> Date
    /// A second connection, opened at first use, for checkpoints run beside `lock` (`checkpointBeside`).
    private let sideLock = NSLock()
    private var sideConnection: SQLiteConnection?

    /// The schema this build writes; older journals are migrated forward on open.
    public static let schemaVersion = 6

    /// Opens (creating if needed) the journal in `directory`, checks its integrity and migrates it.
    public init(directory: String, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o750])
        } catch {
            throw JournalError(code: -1, message: "cannot create state_dir \(directory): \(error.localizedDescription) — create it and make it writable by the user ferry runs as")
        }
        path = directory.hasSuffix("/") ? directory + "journal.db" : directory + "/journal.db"
        self.logger = logger
        self.now = now
        connection = try SQLiteConnection(path: path, readOnly: false)
        // Pruning frees pages; only incremental auto-vacuum gives them back to the file system without a
        // full VACUUM. It can only be switched on before the database is first written — before the
        // switch to WAL, which writes the header (older journals get a one-time VACUUM in `migrate()`).
        if try connection.statement("SELECT count(*) FROM sqlite_master").query([], { $0.int(0) }).first == 0 {
            try connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        }
        try connection.execute("PRAGMA journal_mode=WAL")
        try connection.execute("PRAGMA synchronous=FULL")
        try connection.execute("PRAGMA foreign_keys=ON")
        let check = try connection.statement("PRAGMA quick_check").query { $0.text(0) ?? "" }
        guard check == ["ok"] else {
            throw JournalError(code: -1, message: "the journal \(path) is damaged (\(check.prefix(3).joined(separator: "; "))) — stop ferry, move the file aside and start again; files already sent may then be sent again")
        }
        try migrate()
    }

    /// Opens an existing journal read-only, for `ferry status` while the daemon runs.
    public init(readOnlyAt path: String, logger: Logger) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw JournalError(code: -1, message: "no journal at \(path) — has ferry run with this state_dir yet?")
        }
        self.path = path
        self.logger = logger
        self.now = { Date() }
        connection = try SQLiteConnection(path: path, readOnly: true)
    }

    private func migrate() throws {
        try connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        let current = try connection.statement("SELECT max(version) FROM schema_version").query { $0.optionalInt(0) }.first ?? nil
        let from = Int(current ?? 0)
        if from > Self.schemaVersion {
            throw JournalError(code: -1, message: "the journal \(path) has schema \(from), newer than this ferry understands (\(Self.schemaVersion)) — run the newer ferry, or restore its journal backup")
        }
        for version in (from + 1)..<(Self.schemaVersion + 1) {
            try connection.transaction {
                for statement in Self.migrations[version - 1] { try connection.execute(statement) }
                try connection.statement("INSERT INTO schema_version(version) VALUES (?)").run([.integer(Int64(version))])
            }
            logger.info("journal migrated", metadata: ["journal.path": "\(path)", "journal.schema": "\(version)"])
        }
        if from < 3 { enableIncrementalVacuum() }
    }

    /// A journal created before schema 3 has no auto-vacuum, so pruned pages would stay in the file. One
    /// VACUUM (at start, before anything runs; it needs free space about the journal's size and takes
    /// roughly a second per 100 MB) switches it on. If it fails, ferry runs on: SQLite reuses the freed
    /// pages, the file just does not shrink.
    private func enableIncrementalVacuum() {
        guard (try? connection.statement("PRAGMA auto_vacuum").query([], { $0.int(0) }).first) != 2 else { return }
        let started = ContinuousClock.now
        do {
            try connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
            try connection.execute("VACUUM")
            logger.info("journal switched to incremental vacuum", metadata: ["journal.path": "\(path)",
                                                                            "journal.vacuum_duration": "\(ContinuousClock.now - started)"])
        } catch {
            logger.warning("cannot vacuum the journal; pruned space is reused but the file does not shrink",
                           metadata: ["journal.path": "\(path)", "error": "\(error)"])
        }
    }

    /// Forward migrations; index i brings the schema from version i to i+1. Never edit a released one.
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE outbound_files (
                id INTEGER PRIMARY KEY,
                rule TEXT NOT NULL, path TEXT NOT NULL, relative_path TEXT NOT NULL,
                device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                state TEXT NOT NULL, remote_dir TEXT,
                bucket TEXT, s3_key TEXT, checksum TEXT,
                batch_id INTEGER, transfer_id TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_attempt_at REAL,
                quarantine_path TEXT,
                created_at REAL NOT NULL, updated_at REAL NOT NULL
            )
            """,
            // One live row per version; dropped and retried rows are history, so the same version can come back.
            """
            CREATE UNIQUE INDEX outbound_files_version ON outbound_files(rule, path, device, inode, size, mtime_ns)
            WHERE state NOT IN ('dropped', 'retried')
            """,
            "CREATE INDEX outbound_files_state ON outbound_files(state, rule)",
            """
            CREATE TABLE outbound_batches (
                id INTEGER PRIMARY KEY,
                rule TEXT NOT NULL, connector TEXT NOT NULL, connector_id TEXT NOT NULL, remote_dir TEXT,
                state TEXT NOT NULL, transfer_id TEXT,
                created_at REAL NOT NULL, updated_at REAL NOT NULL
            )
            """,
            "CREATE INDEX outbound_batches_state ON outbound_batches(state)",
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            """
            CREATE TABLE inbound_files (
                id INTEGER PRIMARY KEY,
                rule TEXT NOT NULL, remote_path TEXT NOT NULL,
                size INTEGER NOT NULL DEFAULT -1, modified TEXT NOT NULL DEFAULT '',
                state TEXT NOT NULL, bucket TEXT, s3_key TEXT, temp_path TEXT, local_path TEXT,
                batch_id INTEGER, transfer_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                next_attempt_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
                UNIQUE (rule, remote_path, size, modified)
            )
            """,
            "CREATE INDEX inbound_files_state ON inbound_files(state, rule)",
            "CREATE INDEX inbound_files_batch ON inbound_files(batch_id)",
            """
            CREATE TABLE inbound_polls (
                rule TEXT PRIMARY KEY, started_at REAL, finished_at REAL, result TEXT, error TEXT,
                next_at REAL, unstable_sizes TEXT, pending_listing TEXT
            )
            """,
        ],
        // 2: a file's identity no longer includes the rule (renaming a rule must not resend its folder),
        // so versions are looked up by path and inode.
        [
            "CREATE INDEX outbound_files_identity ON outbound_files(path, inode)",
            // The ready marker seen with the version: after_send removes that marker and no later one.
            "ALTER TABLE outbound_files ADD COLUMN marker_inode INTEGER",
        ],
        // 3: retention and history. Finished rows are found by age through partial indexes (only rows that
        // reached a finished state are in them, so the pipeline's many updates of live rows do not pay for
        // them); per-state counts are kept by triggers so that status costs the same on a year of history
        // as on a day; the history's times and after_send result get columns of their own.
        [
            "CREATE INDEX outbound_files_finished ON outbound_files(state, updated_at) WHERE state IN ('disposed', 'dropped', 'retried')",
            "CREATE INDEX inbound_files_finished ON inbound_files(state, updated_at) WHERE state IN \(finishedInboundSQL)",
            // Pruning a file asks whether its batch still has files; history joins a file to its batch.
            "CREATE INDEX outbound_files_batch ON outbound_files(batch_id) WHERE batch_id IS NOT NULL",
            // `ferry history invoice-4711.edi`: the name is never updated, so these cost one entry per insert.
            "CREATE INDEX outbound_files_name ON outbound_files(\(baseNameSQL("path")))",
            "CREATE INDEX inbound_files_name ON inbound_files(\(baseNameSQL("remote_path")))",
            "ALTER TABLE outbound_files ADD COLUMN submitted_at REAL",
            "ALTER TABLE outbound_files ADD COLUMN completed_at REAL",
            "ALTER TABLE outbound_files ADD COLUMN after_send TEXT",
            "ALTER TABLE outbound_files ADD COLUMN archive_path TEXT",
            "ALTER TABLE outbound_files ADD COLUMN possible_duplicates INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE state_counts (
                direction TEXT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
                PRIMARY KEY (direction, rule, state)
            ) WITHOUT ROWID
            """,
            "INSERT INTO state_counts SELECT 'outbound', rule, state, count(*) FROM outbound_files GROUP BY rule, state",
            "INSERT INTO state_counts SELECT 'inbound', rule, state, count(*) FROM inbound_files GROUP BY rule, state",
        ] + ["outbound", "inbound"].flatMap(countTriggers),
        // 4: inbound placement is proved by the temporary file's inode, not by its absence; after_retrieve
        // calls are counted so that a repeat after an unknown outcome shows; the S3 object of a version
        // is looked up to hold back the next version of the name; timestamps are keyed by instant.
        [
            "ALTER TABLE inbound_files ADD COLUMN temp_inode INTEGER",
            "ALTER TABLE inbound_files ADD COLUMN after_retrieve_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE inbound_files ADD COLUMN etag TEXT",
            "CREATE INDEX inbound_files_object ON inbound_files(bucket, s3_key)",
            // Same instant, one text: ISO 8601 in UTC with milliseconds, as InboundSelection writes it. OR
            // IGNORE: two rows of one version written in two formats keep the first.
            """
            UPDATE OR IGNORE inbound_files SET modified = strftime('%Y-%m-%dT%H:%M:%fZ', modified)
            WHERE modified GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][T ][0-9][0-9]:[0-9][0-9]*'
            AND strftime('%Y-%m-%dT%H:%M:%fZ', modified) IS NOT NULL
            """,
            """
            UPDATE OR IGNORE inbound_files SET modified = strftime('%Y-%m-%dT%H:%M:%fZ', CAST(modified AS REAL), 'unixepoch')
            WHERE modified <> '' AND modified NOT GLOB '*[^0-9.]*' AND CAST(modified AS REAL) > 0
            """,
        ],
        // 5: the outbound end state is called `done`, as DESIGN.md and the inbound direction call it (it
        // was `disposed`). The partial index of finished rows names the states, so it is made again; the
        // count triggers move each row's count from one state to the other.
        [
            "DROP INDEX outbound_files_finished",
            "UPDATE outbound_files SET state = 'done' WHERE state = 'disposed'",
            "CREATE INDEX outbound_files_finished ON outbound_files(state, updated_at) WHERE state IN ('done', 'dropped', 'retried')",
        ],
        // 6: a retrieval remembers the connector id it was started through, so that after a restart it is
        // tracked there even when a reload or the rules file has since named another (outbound batches
        // have had `connector_id` from the start).
        [
            "ALTER TABLE inbound_files ADD COLUMN connector_id TEXT",
        ],
    ]

    /// The outbound states whose rows retention prunes, as an SQL list; written literally in queries so
    /// SQLite sees they match the partial index `outbound_files_finished`.
    static let finishedOutboundSQL = "('done', 'dropped', 'retried')"
    /// The inbound states whose rows retention prunes.
    static let finishedInboundSQL = "('done')"

    /// The last path component of `column` in SQL (rtrim strips every character but `/` from the right).
    static func baseNameSQL(_ column: String) -> String {
        "substr(\(column), length(rtrim(\(column), replace(\(column), '/', ''))) + 1)"
    }

    /// Triggers that keep `state_counts` equal to `SELECT rule, state, count(*) … GROUP BY rule, state`.
    static func countTriggers(_ direction: String) -> [String] {
        let table = "\(direction)_files"
        let add = "INSERT INTO state_counts VALUES ('\(direction)', new.rule, new.state, 1) ON CONFLICT DO UPDATE SET n = n + 1;"
        let remove = "UPDATE state_counts SET n = n - 1 WHERE direction = '\(direction)' AND rule = old.rule AND state = old.state;"
        return [
            "CREATE TRIGGER \(table)_count_insert AFTER INSERT ON \(table) BEGIN \(add) END",
            """
            CREATE TRIGGER \(table)_count_update AFTER UPDATE OF state, rule ON \(table)
            WHEN old.state IS NOT new.state OR old.rule IS NOT new.rule BEGIN \(remove) \(add) END
            """,
            "CREATE TRIGGER \(table)_count_delete AFTER DELETE ON \(table) BEGIN \(remove) END",
        ]
    }

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        let observer = activity.withLock { $0.observer }
        let token = observer?.began()
        defer { if let token { observer?.ended(token) } }
        lock.lock()
        let since = ContinuousClock.now
        activity.withLock { $0.heldSince = since }
        defer {
            activity.withLock { $0.heldSince = nil }
            lock.unlock()
            observer?.held(ContinuousClock.now - since)
        }
        return try body()
    }

    /// Checkpoints the write-ahead log on a second connection, without the journal lock: a PASSIVE
    /// checkpoint neither waits for nor blocks the pipeline's commits. For housekeeping whose own commits
    /// skip SQLite's auto-checkpoint (pruning), so that its steps hold the journal only for their deletes
    /// while the log still stays bounded: once all of it is in the database, the next commit starts the
    /// log again from its beginning. Returns the log's frames and how many of them are checkpointed.
    @discardableResult
    public func checkpointBeside() throws -> (logFrames: Int, checkpointed: Int) {
        try withSideConnection { try $0.checkpointPassive() }
    }

    /// Runs `body` on the journal's second connection (opened on first use), beside the journal lock:
    /// for housekeeping that must not make the pipeline wait (checkpoints, reading pages ahead).
    func withSideConnection<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try sideLock.withLock {
            let side: SQLiteConnection
            if let open = sideConnection {
                side = open
            } else {
                side = try SQLiteConnection(path: path, readOnly: false)
                // A connection learns that the database is in WAL mode when it first reads it; until then
                // a checkpoint does nothing.
                try side.execute("PRAGMA journal_mode=WAL")
                sideConnection = side
            }
            return try body(side)
        }
    }

    /// Installs the observer told of every wait for and use of the journal (before the journal is used
    /// by more than one task).
    public func observeActivity(_ observer: any JournalActivityObserver) {
        activity.withLock { $0.observer = observer }
    }

    /// Since when the current holder of the journal has held it, or nil when nobody does: a statement
    /// that does not return (its file system frozen) shows here, however the caller came to run it.
    public var heldSince: ContinuousClock.Instant? { activity.withLock { $0.heldSince } }

    var timestamp: Double { now().timeIntervalSince1970 }

    static let fileColumns = """
        id, rule, path, relative_path, device, inode, size, mtime_ns, state, remote_dir, bucket, s3_key, checksum,
        batch_id, transfer_id, attempts, last_error, next_attempt_at, created_at, updated_at, marker_inode
        """

    static func decodeFile(_ row: Row) -> OutboundFile {
        OutboundFile(
            id: row.int(0), rule: row.text(1) ?? "", path: row.text(2) ?? "", relativePath: row.text(3) ?? "",
            version: row.version(at: 4), state: OutboundState(rawValue: row.text(8) ?? "") ?? .dropped,
            remoteDirectory: row.text(9), bucket: row.text(10), key: row.text(11), checksum: row.text(12),
            batchID: row.optionalInt(13), transferID: row.text(14), attempts: Int(row.int(15)),
            lastError: row.text(16), nextAttemptAt: row.optionalDouble(17).map(Date.init(timeIntervalSince1970:)),
            createdAt: Date(timeIntervalSince1970: row.double(18)), updatedAt: Date(timeIntervalSince1970: row.double(19)),
            markerInode: row.optionalInt(20).map { UInt64(bitPattern: $0) })
    }

    // MARK: Outbound files

    /// Journals newly complete files in one transaction; returns only those not already journaled as the
    /// same version (so restarts and rescans never queue a file twice).
    public func recordDetected(_ files: [NewOutboundFile]) throws -> [OutboundFile] {
        guard !files.isEmpty else { return [] }
        return try locked {
            try connection.transaction(durable: false) {
                let insert = try connection.statement("""
                    INSERT OR IGNORE INTO outbound_files
                    (rule, path, relative_path, device, inode, size, mtime_ns, state, remote_dir, created_at, updated_at, marker_inode)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 'detected', ?, ?, ?, ?)
                    """)
                let retire = try connection.statement("""
                    UPDATE outbound_files SET state = 'retried', updated_at = ? WHERE rule = ? AND path = ? AND device = ? AND inode = ?
                    AND size = ? AND mtime_ns = ? AND state = 'done' AND updated_at < ?
                    """)
                var inserted: [OutboundFile] = []
                let time = timestamp
                let date = Date(timeIntervalSince1970: time)
                for file in files {
                    if file.supersedesDone {
                        try retire.run([.real(time), .text(file.rule), .text(file.path)] + file.version.columns
                                       + [.real(file.observedAt?.timeIntervalSince1970 ?? .infinity)])
                    }
                    try insert.run([.text(file.rule), .text(file.path), .text(file.relativePath)] + file.version.columns
                                   + [file.remoteDirectory.map(SQLValue.text) ?? .null, .real(time), .real(time),
                                      file.markerInode.map { .integer(Int64(bitPattern: $0)) } ?? .null])
                    // The new row is exactly what was inserted (every other column starts empty): no need to read it back.
                    if connection.changes == 1 {
                        inserted.append(OutboundFile(
                            id: connection.lastInsertRowID, rule: file.rule, path: file.path, relativePath: file.relativePath,
                            version: file.version, state: .detected, remoteDirectory: file.remoteDirectory, bucket: nil, key: nil, checksum: nil,
                            batchID: nil, transferID: nil, attempts: 0, lastError: nil, nextAttemptAt: nil,
                            createdAt: date, updatedAt: date, markerInode: file.markerInode))
                    }
                }
                return inserted
            }
        }
    }

    /// Whether this exact version of the file (path, device, inode, size, mtime) is already journaled, by
    /// any rule: a file's identity does not include the rule's name, so renaming or reordering rules sends
    /// nothing again. Dropped and retried rows are history. A `done` row counts only when
    /// `doneCounts` is true — the rule keeps sent files in place (`after_send: keep`); where sent files
    /// are archived or deleted, the same version appearing again was put back by someone (e.g. moved back
    /// from the archive) and is a new arrival.
    public func isKnown(path: String, version: FileVersion, doneCounts: Bool = true) throws -> Bool {
        try locked {
            try connection.statement("""
                SELECT count(*) FROM outbound_files WHERE path = ? AND device = ? AND inode = ?
                AND size = ? AND mtime_ns = ? AND state NOT IN ('dropped', 'retried')
                AND (? OR state != 'done')
                """).query([.text(path)] + version.columns + [.integer(doneCounts ? 1 : 0)]) { $0.int(0) }.first ?? 0 > 0
        }
    }

    /// Where one file's bytes were stored in S3 staging.
    public struct StagedCopy: Sendable, Equatable {
        public var id: Int64
        public var bucket: String
        public var key: String
        /// The upload's CRC-32C as S3 verified it (base64), never the ETag.
        public var checksum: String

        public init(id: Int64, bucket: String, key: String, checksum: String) {
            self.id = id
            self.bucket = bucket
            self.key = key
            self.checksum = checksum
        }
    }

    /// Records that a file's bytes are in S3 staging.
    public func markStaged(_ id: Int64, bucket: String, key: String, checksum: String) throws {
        try markStaged([StagedCopy(id: id, bucket: bucket, key: key, checksum: checksum)])
    }

    /// Records several uploads in one transaction.
    public func markStaged(_ copies: [StagedCopy]) throws {
        guard !copies.isEmpty else { return }
        try locked {
            try connection.transaction(durable: false) { try writeStaged(copies) }
        }
    }

    /// Records an upload without a transaction of its own: it is written by the next `createBatch` (in
    /// that batch's transaction, so a batch never names a file whose upload is not journaled) or by
    /// `flushStaged()`, whichever comes first. Until then the journal still says `detected`, so a crash
    /// in between costs one upload again, never a send. Returns true when it is the first one waiting
    /// (the caller then arranges a flush).
    @discardableResult
    public func markStagedSoon(_ copy: StagedCopy) -> Bool {
        pendingLock.lock()
        defer { pendingLock.unlock() }
        pendingStagedStorage.append(copy)
        return pendingStagedStorage.count == 1
    }

    /// The uploads waiting in memory, as of now (callers hold `lock`).
    private var pendingStaged: [StagedCopy] {
        pendingLock.lock()
        defer { pendingLock.unlock() }
        return pendingStagedStorage
    }

    /// Forgets the first `count` waiting uploads, once a committed transaction wrote them (callers hold
    /// `lock`; uploads recorded meanwhile were appended after them and stay).
    private func forgetPendingStaged(_ count: Int) {
        pendingLock.lock()
        defer { pendingLock.unlock() }
        pendingStagedStorage.removeFirst(min(count, pendingStagedStorage.count))
    }

    /// Writes the uploads `markStagedSoon` recorded, in one transaction.
    public func flushStaged() throws {
        try locked {
            let pending = pendingStaged
            guard !pending.isEmpty else { return }
            try connection.transaction(durable: false) { try writeStaged(pending) }
            forgetPendingStaged(pending.count)
        }
    }

    private func writeStaged(_ copies: [StagedCopy]) throws {
        let update = try connection.statement("""
            UPDATE outbound_files SET state = 'staged', bucket = ?, s3_key = ?, checksum = ?, updated_at = ? WHERE id = ?
            AND state = 'detected'
            """)
        let time = timestamp
        for copy in copies {
            try update.run([.text(copy.bucket), .text(copy.key), .text(copy.checksum), .real(time), .integer(copy.id)])
        }
    }

    /// Records that a file changed or vanished before it could be uploaded.
    public func markDropped(_ id: Int64, reason: String) throws {
        try setState([id], .dropped, error: reason)
    }

    /// Records after_send as done.
    public func markDone(_ ids: [Int64]) throws {
        try setState(ids, .done, error: nil)
    }

    /// What after_send did with one sent file, for `ferry history`.
    public struct AfterSendRecord: Sendable, Equatable {
        public var id: Int64
        /// `archived`, `deleted` or `kept` (the rule's after_send as carried out).
        public var result: String
        /// Where an archived file now is.
        public var archivePath: String?

        public init(id: Int64, result: String, archivePath: String? = nil) {
            self.id = id
            self.result = result
            self.archivePath = archivePath
        }
    }

    /// Records what after_send did (and where a file was archived to), in one transaction for many files.
    /// The outbound pipeline calls it when after_send is done, before or with `markDone`; until it
    /// does, `ferry history` shows the rule's configured after_send instead.
    public func recordAfterSend(_ records: [AfterSendRecord]) throws {
        guard !records.isEmpty else { return }
        try locked {
            try connection.transaction(durable: false) {
                let update = try connection.statement("UPDATE outbound_files SET after_send = ?, archive_path = ? WHERE id = ?")
                for record in records {
                    try update.run([.text(record.result), record.archivePath.map(SQLValue.text) ?? .null, .integer(record.id)])
                }
            }
        }
    }

    /// Records that these files were sent again after StartFileTransfer's outcome was unknown
    /// (`on_in_doubt: resend`): the partner may have them twice. Adds to the `possible_duplicates` counter
    /// and marks each file for `ferry history`, in one transaction. The outbound pipeline should call this
    /// instead of `increment("possible_duplicates", by:)`.
    public func recordPossibleDuplicates(_ ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        try locked {
            try connection.transaction {
                let update = try connection.statement("UPDATE outbound_files SET possible_duplicates = possible_duplicates + 1 WHERE id = ?")
                for id in ids { try update.run([.integer(id)]) }
                try connection.statement("""
                    INSERT INTO counters(name, value) VALUES ('possible_duplicates', ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value
                    """).run([.integer(Int64(ids.count))])
            }
        }
    }

    /// Records that after_send of a completed file failed (it is retried): status shows the reason.
    public func markAfterSendFailed(_ id: Int64, error: String) throws {
        try locked {
            try connection.transaction(durable: false) {
                try connection.statement("UPDATE outbound_files SET last_error = ?, updated_at = ? WHERE id = ? AND state = 'completed'")
                    .run([.text("after_send: " + error), .real(timestamp), .integer(id)])
            }
        }
    }

    /// Per rule, completed files whose after_send failed and waits for its retry, with the last reason.
    public func afterSendFailures() throws -> [String: (count: Int, lastError: String)] {
        try locked {
            var result: [String: (count: Int, lastError: String)] = [:]
            for (rule, count, error) in try connection.statement("""
                SELECT rule, count(*), max(last_error) FROM outbound_files WHERE state = 'completed' AND last_error LIKE 'after_send: %' GROUP BY rule
                """).query([], { ($0.text(0) ?? "", Int($0.int(1)), $0.text(2) ?? "") }) {
                result[rule] = (count, error)
            }
            return result
        }
    }

    /// Records a file as out of retries and moved aside to `quarantinePath`.
    public func markQuarantined(_ id: Int64, reason: String, quarantinePath: String) throws {
        try locked {
            try connection.transaction(durable: false) {
                try connection.statement("""
                UPDATE outbound_files SET state = 'quarantined', last_error = ?, quarantine_path = ?, updated_at = ? WHERE id = ?
                """).run([.text(reason), .text(quarantinePath), .real(timestamp), .integer(id)])
            }
        }
    }

    /// Records files whose submission is in doubt and held (`on_in_doubt: hold`), each moved to its path.
    public func markInDoubt(_ held: [(id: Int64, path: String)], reason: String) throws {
        guard !held.isEmpty else { return }
        try locked {
            try connection.transaction {
                let update = try connection.statement("""
                    UPDATE outbound_files SET state = 'in_doubt', last_error = ?, quarantine_path = ?, updated_at = ? WHERE id = ?
                    """)
                for item in held { try update.run([.text(reason), .text(item.path), .real(timestamp), .integer(item.id)]) }
            }
        }
    }

    /// Quarantined files (optionally of one rule) with where each was moved to.
    public func quarantined(rule: String? = nil) throws -> [(file: OutboundFile, quarantinePath: String?)] {
        try held(in: [.quarantined], rule: rule)
    }

    /// Files set aside in `.ferry/failed/` or `.ferry/in-doubt/` (of `states`), with where each was moved to.
    public func held(in states: [OutboundState], rule: String? = nil) throws -> [(file: OutboundFile, quarantinePath: String?)] {
        var sql = "SELECT \(Self.fileColumns), quarantine_path FROM outbound_files WHERE state IN (\(states.map { _ in "?" }.joined(separator: ",")))"
        var values: [SQLValue] = states.map { .text($0.rawValue) }
        if let rule {
            sql += " AND rule = ?"
            values.append(.text(rule))
        }
        return try locked {
            try connection.statement(sql + " ORDER BY id").query(values) { (Self.decodeFile($0), $0.text(21)) }
        }
    }

    /// Records that `ferry retry` put a quarantined file back; the watcher journals it afresh.
    public func markRetried(_ id: Int64) throws {
        try setState([id], .retried, error: nil)
    }

    /// Puts failed (or never-submitted) files back to `staged`, eligible again at `after`.
    public func requeue(_ ids: [Int64], after: Date, error: String?) throws {
        guard !ids.isEmpty else { return }
        try locked {
            try connection.transaction(durable: false) {
                let update = try connection.statement("""
                    UPDATE outbound_files SET state = 'staged', batch_id = NULL, transfer_id = NULL, next_attempt_at = ?,
                    last_error = coalesce(?, last_error), updated_at = ? WHERE id = ?
                    """)
                for id in ids {
                    try update.run([.real(after.timeIntervalSince1970), error.map(SQLValue.text) ?? .null, .real(timestamp), .integer(id)])
                }
            }
        }
    }

    private func setState(_ ids: [Int64], _ state: OutboundState, error: String?) throws {
        guard !ids.isEmpty else { return }
        try locked {
            // `retried` is a user's `ferry retry`: rare, and kept durable. The others repeat harmlessly.
            try connection.transaction(durable: state == .retried) {
                let update = try connection.statement("""
                    UPDATE outbound_files SET state = ?, last_error = coalesce(?, last_error), updated_at = ? WHERE id = ?
                    """)
                for id in ids {
                    try update.run([.text(state.rawValue), error.map(SQLValue.text) ?? .null, .real(timestamp), .integer(id)])
                }
            }
        }
    }

    /// Files in the given states, oldest first.
    public func outboundFiles(in states: [OutboundState], rule: String? = nil) throws -> [OutboundFile] {
        try rows(of: "outbound_files", columns: Self.fileColumns, states: states.map(\.rawValue), rule: rule, Self.decodeFile)
    }

    /// Up to `limit` files of `rule` in `state` with an id above `afterID`, in id order: a page of a
    /// backlog that waits in the journal (served by the `(state, rule)` index, whose entries are in id
    /// order within a state and rule, whatever the history's size).
    public func outboundFiles(in state: OutboundState, rule: String, after afterID: Int64, limit: Int) throws -> [OutboundFile] {
        guard limit > 0 else { return [] }
        return try locked {
            try connection.statement("""
                SELECT \(Self.fileColumns) FROM outbound_files WHERE state = ? AND rule = ? AND id > ? ORDER BY id LIMIT ?
                """).query([.text(state.rawValue), .text(rule), .integer(afterID), .integer(Int64(limit))], Self.decodeFile)
        }
    }

    /// The files with these ids (those that exist), in id order: one query for a whole batch.
    public func outboundFiles(ids: [Int64]) throws -> [OutboundFile] {
        guard !ids.isEmpty else { return [] }
        let placeholders = ids.map { _ in "?" }.joined(separator: ",")
        return try locked {
            try connection.statement("SELECT \(Self.fileColumns) FROM outbound_files WHERE id IN (\(placeholders)) ORDER BY id")
                .query(ids.map(SQLValue.integer), Self.decodeFile)
        }
    }

    /// One file by id.
    public func outboundFile(_ id: Int64) throws -> OutboundFile? {
        try row(of: "outbound_files", columns: Self.fileColumns, id: id, Self.decodeFile)
    }

    /// Rows of `table` in any of `states` (and of `rule`, if given), oldest first.
    func rows<T>(of table: String, columns: String, states: [String], rule: String?, _ decode: (Row) -> T) throws -> [T] {
        guard !states.isEmpty else { return [] }
        var sql = "SELECT \(columns) FROM \(table) WHERE state IN (\(states.map { _ in "?" }.joined(separator: ",")))"
        var values = states.map(SQLValue.text)
        if let rule {
            sql += " AND rule = ?"
            values.append(.text(rule))
        }
        return try locked { try connection.statement(sql + " ORDER BY id").query(values, decode) }
    }

    /// The row of `table` with `id`, if any.
    func row<T>(of table: String, columns: String, id: Int64, _ decode: (Row) -> T) throws -> T? {
        try locked { try connection.statement("SELECT \(columns) FROM \(table) WHERE id = ?").query([.integer(id)], decode).first }
    }

    // MARK: Batches

    /// Journals a batch as `submitting` (and its files with it) before StartFileTransfer is called, so a
    /// crash between the call and its answer is detected on restart as a possible duplicate.
    public func createBatch(rule: String, connector: String, connectorID: String, remoteDirectory: String?, fileIDs: [Int64]) throws -> Int64 {
        try locked {
            let batchFiles = Set(fileIDs)
            // Uploads still waiting in memory are written here. Those of this batch's own files go
            // straight to `submitting` with their S3 key: one row update each instead of two.
            var uploads: [Int64: StagedCopy] = [:]
            var others: [StagedCopy] = []
            let pending = pendingStaged
            for copy in pending {
                if batchFiles.contains(copy.id) { uploads[copy.id] = copy } else { others.append(copy) }
            }
            let batchID = try connection.transaction {
                try writeStaged(others)
                let time = timestamp
                try connection.statement("""
                    INSERT INTO outbound_batches (rule, connector, connector_id, remote_dir, state, created_at, updated_at)
                    VALUES (?, ?, ?, ?, 'submitting', ?, ?)
                    """).run([.text(rule), .text(connector), .text(connectorID), remoteDirectory.map(SQLValue.text) ?? .null, .real(time), .real(time)])
                let batchID = connection.lastInsertRowID
                let update = try connection.statement("""
                    UPDATE outbound_files SET state = 'submitting', batch_id = ?, transfer_id = NULL, updated_at = ? WHERE id = ?
                    """)
                let stageAndUpdate = try connection.statement("""
                    UPDATE outbound_files SET state = 'submitting', bucket = ?, s3_key = ?, checksum = ?, batch_id = ?,
                    transfer_id = NULL, updated_at = ? WHERE id = ?
                    """)
                for id in fileIDs {
                    if let copy = uploads[id] {
                        try stageAndUpdate.run([.text(copy.bucket), .text(copy.key), .text(copy.checksum), .integer(batchID),
                                                .real(time), .integer(id)])
                    } else {
                        try update.run([.integer(batchID), .real(time), .integer(id)])
                    }
                }
                return batchID
            }
            forgetPendingStaged(pending.count)  // all written in the transaction that just committed
            return batchID
        }
    }

    /// Records the TransferId StartFileTransfer returned.
    public func markSubmitted(batch batchID: Int64, transferID: String) throws {
        try locked {
            try connection.transaction {
                let time = timestamp
                try connection.statement("UPDATE outbound_batches SET state = 'submitted', transfer_id = ?, updated_at = ? WHERE id = ?")
                    .run([.text(transferID), .real(time), .integer(batchID)])
                try connection.statement("UPDATE outbound_files SET state = 'submitted', transfer_id = ?, updated_at = ?, submitted_at = ? WHERE batch_id = ? AND state = 'submitting'")
                    .run([.text(transferID), .real(time), .real(time), .integer(batchID)])
            }
        }
    }

    /// Records that StartFileTransfer definitely did not start the batch; its files go back to `staged`.
    /// A refusal (`countsAsAttempt`: access denied, validation) counts one attempt toward the rule's
    /// `retries`; throttling does not. Returns the batch's files as they now are.
    @discardableResult
    public func abandonBatch(_ batchID: Int64, retryAfter: Date, error: String, countsAsAttempt: Bool = false) throws -> [OutboundFile] {
        try locked {
            try connection.transaction {
                let time = timestamp
                try connection.statement("UPDATE outbound_batches SET state = 'finished', updated_at = ? WHERE id = ?")
                    .run([.real(time), .integer(batchID)])
                let ids = try connection.statement("SELECT id FROM outbound_files WHERE batch_id = ? AND state = 'submitting'")
                    .query([.integer(batchID)]) { $0.int(0) }
                try connection.statement("""
                    UPDATE outbound_files SET state = 'staged', batch_id = NULL, next_attempt_at = ?, last_error = ?, updated_at = ?,
                    attempts = attempts + ? WHERE batch_id = ? AND state = 'submitting'
                    """).run([.real(retryAfter.timeIntervalSince1970), .text(error), .real(time), .integer(countsAsAttempt ? 1 : 0),
                              .integer(batchID)])
                guard !ids.isEmpty else { return [] }
                return try connection.statement("SELECT \(Self.fileColumns) FROM outbound_files WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ","))) ORDER BY id")
                    .query(ids.map(SQLValue.integer), Self.decodeFile)
            }
        }
    }

    /// Records files of an in-doubt batch that the partner's folder proved delivered (same name and size,
    /// written since the batch was journaled): they go to `completed`, as if the transfer had reported
    /// them, so after_send follows; the batch is finished once none of its files is still `submitting`.
    /// Returns the files as they now are.
    @discardableResult
    public func recordFoundOnPartner(batch batchID: Int64, _ ids: [Int64]) throws -> [OutboundFile] {
        guard !ids.isEmpty else { return [] }
        return try locked {
            try connection.transaction {
                let time = timestamp
                let update = try connection.statement("""
                    UPDATE outbound_files SET state = 'completed', updated_at = ?, completed_at = ?
                    WHERE id = ? AND batch_id = ? AND state = 'submitting'
                    """)
                for id in ids { try update.run([.real(time), .real(time), .integer(id), .integer(batchID)]) }
                try connection.statement("""
                    UPDATE outbound_batches SET state = 'finished', updated_at = ? WHERE id = ? AND NOT EXISTS
                    (SELECT 1 FROM outbound_files WHERE batch_id = ? AND state IN ('submitting', 'submitted'))
                    """).run([.real(time), .integer(batchID), .integer(batchID)])
                return try connection.statement("SELECT \(Self.fileColumns) FROM outbound_files WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ","))) AND state = 'completed' ORDER BY id")
                    .query(ids.map(SQLValue.integer), Self.decodeFile)
            }
        }
    }

    /// Other versions journaled for the same remote directory and size that may have reached the partner
    /// (anything past `staged`), whatever their local path: a same-name same-size file on the partner may
    /// be theirs, so it proves nothing about `excluding`. The caller compares remote names.
    public func versionsThatMayHaveBeenSent(remoteDirectory: String?, size: Int64, excluding id: Int64) throws -> [OutboundFile] {
        try locked {
            try connection.statement("""
                SELECT \(Self.fileColumns) FROM outbound_files WHERE remote_dir IS ? AND size = ? AND id != ?
                AND state NOT IN ('detected', 'staged', 'dropped')
                """).query([remoteDirectory.map(SQLValue.text) ?? .null, .integer(size), .integer(id)], Self.decodeFile)
        }
    }

    /// Ends a batch whose files were set aside (held in doubt or quarantined with an unknown outcome).
    public func finishBatch(_ batchID: Int64) throws {
        try locked {
            try connection.transaction {
                try connection.statement("UPDATE outbound_batches SET state = 'finished', updated_at = ? WHERE id = ?")
                    .run([.real(timestamp), .integer(batchID)])
            }
        }
    }

    /// Puts files back to `detected` without their staged copy, so they are uploaded again (the staged
    /// object expired or vanished: `SEND_FILE_NOT_FOUND`).
    public func requeueForUpload(_ ids: [Int64], error: String) throws {
        guard !ids.isEmpty else { return }
        try locked {
            try connection.transaction(durable: false) {
                let update = try connection.statement("""
                    UPDATE outbound_files SET state = 'detected', bucket = NULL, s3_key = NULL, checksum = NULL, batch_id = NULL,
                    transfer_id = NULL, last_error = ?, updated_at = ? WHERE id = ?
                    """)
                for id in ids { try update.run([.text(error), .real(timestamp), .integer(id)]) }
            }
        }
    }

    /// Records the final outcome of files of a tracked batch in one transaction; failed files get one
    /// more attempt counted. The batch is finished once none of its files is still `submitted`.
    ///
    /// Completed files in `done` (their after_send already done) go straight to `done`: one
    /// transaction per look at a transfer instead of two. Should it be lost, the batch is tracked again
    /// and after_send finds each file already handled.
    public func recordOutcomes(batch batchID: Int64, _ outcomes: [Int64: FileOutcome], done: Set<Int64> = []) throws {
        guard !outcomes.isEmpty else { return }
        try locked {
            try connection.transaction(durable: false) {
                let time = timestamp
                let completed = try connection.statement("UPDATE outbound_files SET state = ?, updated_at = ?, completed_at = ? WHERE id = ? AND state = 'submitted'")
                let failed = try connection.statement("""
                    UPDATE outbound_files SET state = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ?
                    WHERE id = ? AND state = 'submitted'
                    """)
                for (id, outcome) in outcomes {
                    switch outcome {
                    case .completed:
                        let state: OutboundState = done.contains(id) ? .done : .completed
                        try completed.run([.text(state.rawValue), .real(time), .real(time), .integer(id)])
                    case .failed(let code, let message): try failed.run([.text("\(code): \(message)"), .real(time), .integer(id)])
                    }
                }
                try connection.statement("""
                    UPDATE outbound_batches SET state = 'finished', updated_at = ? WHERE id = ? AND NOT EXISTS
                    (SELECT 1 FROM outbound_files WHERE batch_id = ? AND state = 'submitted')
                    """).run([.real(time), .integer(batchID), .integer(batchID)])
            }
        }
    }

    static let batchColumns = "id, rule, connector, connector_id, remote_dir, state, transfer_id, created_at"

    /// Batches in a state, with the files still in them.
    public func batches(in state: BatchState) throws -> [OutboundBatch] {
        try locked {
            let batches = try connection.statement("SELECT \(Self.batchColumns) FROM outbound_batches WHERE state = ? ORDER BY id")
                .query([.text(state.rawValue)]) { row in
                    OutboundBatch(id: row.int(0), rule: row.text(1) ?? "", connector: row.text(2) ?? "", connectorID: row.text(3) ?? "",
                                  remoteDirectory: row.text(4), state: BatchState(rawValue: row.text(5) ?? "") ?? .finished,
                                  transferID: row.text(6), fileIDs: [], createdAt: Date(timeIntervalSince1970: row.double(7)))
                }
            let files = try connection.statement("SELECT id, state FROM outbound_files WHERE batch_id = ? ORDER BY id")
            return try batches.map { batch in
                var batch = batch
                let all = try files.query([.integer(batch.id)]) { ($0.int(0), $0.text(1) ?? "") }
                batch.sentFileIDs = all.map(\.0)
                batch.fileIDs = all.filter { $0.1 == OutboundState.submitting.rawValue || $0.1 == OutboundState.submitted.rawValue }.map(\.0)
                return batch
            }
        }
    }

    // MARK: Counters

    /// Adds to a persistent counter (e.g. possible duplicates), so it survives restarts for `ferry status`.
    public func increment(_ counter: String, by amount: Int64 = 1) throws {
        try locked {
            try connection.statement("INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value")
                .run([.text(counter), .integer(amount)])
        }
    }

    /// A persistent counter's value (0 if never incremented).
    public func counter(_ name: String) throws -> Int64 {
        try locked {
            try connection.statement("SELECT value FROM counters WHERE name = ?").query([.text(name)]) { $0.int(0) }.first ?? 0
        }
    }

    // MARK: Status

    /// Per rule, how many files are in each state.
    public func outboundCounts() throws -> [String: [OutboundState: Int]] {
        try countsByState(of: "outbound_files")
    }

    /// Per rule, how many rows of `table` are in each state.
    ///
    /// Read from `state_counts`, which triggers keep exact: a few rows whatever the journal's size, where a
    /// GROUP BY over the table cost about 0.9 s per million rows under the journal lock. A journal of an
    /// older schema (opened read-only by a newer `ferry status`) is counted the old way.
    func countsByState<State: RawRepresentable & Hashable>(of table: String) throws -> [String: [State: Int]] where State.RawValue == String {
        try locked {
            let direction = table == "inbound_files" ? "inbound" : "outbound"
            let rows: [(String, String, Int)]
            do {
                rows = try connection.statement("SELECT rule, state, n FROM state_counts WHERE direction = ? AND n > 0")
                    .query([.text(direction)]) { ($0.text(0) ?? "", $0.text(1) ?? "", Int($0.int(2))) }
            } catch {
                rows = try connection.statement("SELECT rule, state, count(*) FROM \(table) GROUP BY rule, state")
                    .query([]) { ($0.text(0) ?? "", $0.text(1) ?? "", Int($0.int(2))) }
            }
            var result: [String: [State: Int]] = [:]
            for (rule, state, count) in rows {
                if let state = State(rawValue: state) { result[rule, default: [:]][state] = count }
            }
            return result
        }
    }

    /// Per rule, rows of `table` that reached the finished `state` since `since`. The finished states'
    /// list is written out so that SQLite uses the partial index on (state, updated_at): the cost is the
    /// rows of the period, not of the whole history.
    func countsReaching(_ state: String, in table: String, since: Date) throws -> [String: Int] {
        let finishedStates = table == "inbound_files" ? Self.finishedInboundSQL : Self.finishedOutboundSQL
        return try locked {
            Dictionary(uniqueKeysWithValues: try connection.statement(
                "SELECT rule, count(*) FROM \(table) WHERE state IN \(finishedStates) AND state = ? AND updated_at >= ? GROUP BY rule")
                .query([.text(state), .real(since.timeIntervalSince1970)]) { ($0.text(0) ?? "", Int($0.int(1))) })
        }
    }

    /// Per rule, files done since `since`.
    public func outboundCompleted(since: Date) throws -> [String: Int] {
        try countsReaching(OutboundState.done.rawValue, in: "outbound_files", since: since)
    }

    /// Per rule, the oldest file not yet completed, with when it was detected.
    public func oldestWaiting() throws -> [String: (path: String, since: Date)] {
        try locked {
            var result: [String: (path: String, since: Date)] = [:]
            for (rule, path, created) in try connection.statement("""
                SELECT rule, path, min(created_at) FROM outbound_files
                WHERE state IN ('detected', 'staged', 'submitting', 'submitted', 'failed') GROUP BY rule
                """).query([], { ($0.text(0) ?? "", $0.text(1) ?? "", $0.double(2)) }) {
                result[rule] = (path, Date(timeIntervalSince1970: created))
            }
            return result
        }
    }
}

/// The journal's activity: since when `lock` is held, and the liveness hook. Guarded by its own lock.
private final class ActivityState: @unchecked Sendable {
    private let lock = NSLock()
    private var state = (heldSince: ContinuousClock.Instant?.none, observer: (any JournalActivityObserver)?.none)

    func withLock<T>(_ body: (inout (heldSince: ContinuousClock.Instant?, observer: (any JournalActivityObserver)?)) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }
}

/// Told when a caller starts waiting for the journal (`began`, returning a token) and when it is done
/// with it (`ended`). The daemon's liveness check uses it to name which loop waits on the journal, and
/// for how long: a journal on a frozen or hung file system blocks every writer. Called on every journal
/// call, so it must be cheap (no allocation).
public protocol JournalActivityObserver: Sendable {
    func began() -> Int
    func ended(_ token: Int)
    /// How long the caller held the journal (from taking its lock to letting go), told on the caller's
    /// thread just before `ended`: bench/journal tells the status queries' holds from the writer's.
    func held(_ duration: Duration)
}

extension JournalActivityObserver {
    public func held(_ duration: Duration) {}
}
