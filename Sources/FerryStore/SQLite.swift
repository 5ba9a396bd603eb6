internal import CSQLite
import Foundation

/// An error from SQLite, with its result code and the message SQLite gave.
public struct JournalError: Error, CustomStringConvertible, Sendable {
    /// SQLite's extended result code (or -1 for ferry's own checks).
    public var code: Int32
    /// What happened and, where possible, what to do about it.
    public var message: String

    public var description: String { message }

    /// The disk under the journal is full (SQLITE_FULL, or an I/O error whose cause was ENOSPC).
    public var isDiskFull: Bool { code & 0xFF == 13 || message.localizedCaseInsensitiveContains("disk is full") || message.contains("No space left") }

    init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }
}

/// One open SQLite connection; frees the handle in deinit. Not thread-safe by itself: `Journal` serialises use.
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String

    init(path: String, readOnly: Bool) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw JournalError(code: rc, message: "cannot open the journal \(path): \(message)")
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 10_000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, _ context: String) -> JournalError {
        let message = String(cString: sqlite3_errmsg(handle))
        var text = "journal \(path): \(context): \(message)"
        if rc & 0xff == SQLITE_FULL {
            text += " — the disk is full; free space under \(URL(fileURLWithPath: path).deletingLastPathComponent().path) and ferry resumes where it stopped"
        }
        return JournalError(code: rc, message: text)
    }

    func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(errorMessage)
            throw JournalError(code: rc, message: "journal \(path): \(message) (in: \(sql.prefix(80)))")
        }
    }

    private var cache: [String: Statement] = [:]

    /// A prepared statement for `sql`, reused across calls.
    func statement(_ sql: String) throws -> Statement {
        if let cached = cache[sql] {
            cached.reset()
            return cached
        }
        let statement = try Statement(connection: self, sql: sql)
        cache[sql] = statement
        return statement
    }

    /// SQLite's default auto-checkpoint threshold, in pages of the write-ahead log.
    static let autoCheckpointPages: Int32 = 1000

    /// A PASSIVE checkpoint: copies what it can of the write-ahead log into the database without waiting
    /// for (or blocking) readers and writers. Returns the log's frames and how many of them are now in the
    /// database; when the two are equal, the next write starts the log again from its beginning.
    func checkpointPassive() throws -> (logFrames: Int, checkpointed: Int) {
        var log: Int32 = 0
        var done: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &done)
        // BUSY: another connection is checkpointing right now, which is as good.
        guard rc == SQLITE_OK || rc & 0xff == SQLITE_BUSY else { throw error(rc, "checkpoint") }
        return (Int(log), Int(done))
    }

    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// Runs `body` in one transaction. `durable: false` commits without waiting for the disk
    /// (`synchronous=NORMAL` for this commit only): for changes that are safe to lose in a power cut
    /// because replaying from the previous state repeats them harmlessly. In WAL mode commits reach
    /// the disk in order, so the next durable commit makes every earlier one durable too.
    ///
    /// `checkpoint: false` keeps this commit from running SQLite's auto-checkpoint (which otherwise runs
    /// inside the commit that takes the write-ahead log past 1,000 pages: copying them into the database
    /// and two fsyncs, all while the caller holds the journal). For housekeeping that must hold the
    /// journal only briefly and checkpoints beside it instead (`Journal.checkpointBeside`).
    func transaction<T>(durable: Bool = true, checkpoint: Bool = true, _ body: () throws -> T) throws -> T {
        // Prepared once and cached: parsing these four statements for every transaction showed in profiles.
        if !durable { try statement("PRAGMA synchronous=NORMAL").run() }
        defer { if !durable { try? statement("PRAGMA synchronous=FULL").run() } }
        if !checkpoint { sqlite3_wal_autocheckpoint(handle, 0) }
        defer { if !checkpoint { sqlite3_wal_autocheckpoint(handle, Self.autoCheckpointPages) } }
        try statement("BEGIN IMMEDIATE").run()
        do {
            let result = try body()
            try statement("COMMIT").run()
            return result
        } catch {
            try? statement("ROLLBACK").run()
            throw error
        }
    }
}

/// A value bound to or read from a statement.
enum SQLValue {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
}

/// One prepared statement; finalized in deinit.
final class Statement {
    let handle: OpaquePointer
    unowned let connection: SQLiteConnection

    init(connection: SQLiteConnection, sql: String) throws {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw connection.error(rc, "preparing \(sql.prefix(60))") }
        handle = stmt
        self.connection = connection
    }

    deinit {
        sqlite3_finalize(handle)
    }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ values: [SQLValue]) throws {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(handle, index)
            case .integer(let v): rc = sqlite3_bind_int64(handle, index, v)
            case .real(let v): rc = sqlite3_bind_double(handle, index, v)
            case .text(let v): rc = sqlite3_bind_text(handle, index, v, -1, ferry_sqlite_transient())
            }
            if rc != SQLITE_OK { throw connection.error(rc, "binding parameter \(index)") }
        }
    }

    /// Runs a statement that returns no rows.
    func run(_ values: [SQLValue] = []) throws {
        try bind(values)
        let rc = sqlite3_step(handle)
        defer { sqlite3_reset(handle) }
        if rc != SQLITE_DONE && rc != SQLITE_ROW { throw connection.error(rc, "executing statement") }
    }

    /// Runs a query and maps each row.
    func query<T>(_ values: [SQLValue] = [], _ row: (Row) throws -> T) throws -> [T] {
        try bind(values)
        defer { sqlite3_reset(handle) }
        var results: [T] = []
        while true {
            let rc = sqlite3_step(handle)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw connection.error(rc, "reading rows") }
            results.append(try row(Row(handle: handle)))
        }
        return results
    }
}

/// The current row of a stepping statement.
struct Row {
    let handle: OpaquePointer

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func text(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: pointer)
    }
    func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : int(column) }
    func optionalDouble(_ column: Int32) -> Double? { isNull(column) ? nil : double(column) }
}
