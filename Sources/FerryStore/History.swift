import Foundation

/// Which journal rows `ferry history` asks for. Every filter is optional; all given ones must hold.
public struct HistoryFilter: Sendable, Equatable {
    /// Only this rule (outbound or inbound).
    public var rule: String?
    /// Only files whose journey (detected → finished, or still going on) overlaps [since, until].
    public var since: Date?
    public var until: Date?
    /// Only these outbound states (empty: every state, unless `inboundStates` is given).
    public var outboundStates: [OutboundState]
    /// Only these inbound states (empty: every state, unless `outboundStates` is given).
    public var inboundStates: [InboundState]
    /// Only these files: an absolute path (a local path, or a partner's remote path), a path relative to
    /// the rule's watched folder, or a bare file name.
    public var names: [String]

    public init(rule: String? = nil, since: Date? = nil, until: Date? = nil, outboundStates: [OutboundState] = [],
                inboundStates: [InboundState] = [], names: [String] = []) {
        self.rule = rule
        self.since = since
        self.until = until
        self.outboundStates = outboundStates
        self.inboundStates = inboundStates
        self.names = names
    }
}

/// One outbound file version's journey, as `ferry history` shows it.
public struct OutboundHistoryEntry: Sendable, Equatable {
    public var id: Int64
    public var rule: String
    public var path: String
    public var size: Int64
    /// The CRC-32C of the uploaded bytes as S3 verified it (base64), never the ETag.
    public var checksum: String?
    public var state: OutboundState
    /// When the file was seen complete.
    public var detectedAt: Date
    public var bucket: String?
    /// The S3 staging key the file was uploaded to.
    public var key: String?
    public var transferID: String?
    /// When StartFileTransfer answered (for rows journaled before schema 3: when the batch was created).
    public var submittedAt: Date?
    /// When the partner had it (ListFileTransferResults said COMPLETED).
    public var completedAt: Date?
    /// When the row reached a finished state (done, dropped, retried), nil while it is still going on.
    public var finishedAt: Date?
    /// The last change of the row.
    public var updatedAt: Date
    /// What after_send did (`archived`, `deleted`, `kept`), when the pipeline recorded it.
    public var afterSend: String?
    public var archivePath: String?
    /// Where a quarantined or in-doubt file was set aside.
    public var heldPath: String?
    public var attempts: Int
    public var lastError: String?
    /// How many times the file was sent again after StartFileTransfer's outcome was unknown.
    public var possibleDuplicates: Int
}

/// One remote file version's journey, as `ferry history` shows it.
public struct InboundHistoryEntry: Sendable, Equatable {
    public var id: Int64
    public var rule: String
    public var remotePath: String
    public var size: Int64?
    /// `modifiedTimestamp` exactly as the listing gave it.
    public var modified: String?
    public var state: InboundState
    public var bucket: String?
    public var key: String?
    public var transferID: String?
    /// Where the file was placed in `download_to`, if it was downloaded.
    public var localPath: String?
    /// When the listing first showed this version.
    public var listedAt: Date
    /// When it reached `done`, nil while it is still going on.
    public var finishedAt: Date?
    public var updatedAt: Date
    public var attempts: Int
    public var lastError: String?
}

/// The audit trail: queries served by indexes, so a day of history costs the same on a year of journal.
///
/// A row is in the window [since, until] when its journey overlaps it: detected before `until`, and
/// either finished after `since` (the partial index on finished rows' (state, finished time)) or still
/// going on (the index on state; live rows are few).
extension Journal {
    /// The conditions both directions share: the state, the time window and the rule. A finished state
    /// (`finishedIn` names the finished states' SQL list, which the partial index on finished rows
    /// matches) is bounded by `--since` on its last change; a live row is always within the window.
    static func windowConditions(_ filter: HistoryFilter, column prefix: String, state: String,
                                 finishedIn: String?) -> (conditions: [String], values: [SQLValue]) {
        var conditions = ["\(prefix)state = ?"]
        var values: [SQLValue] = [.text(state)]
        if let finishedIn {
            conditions = ["\(prefix)state IN \(finishedIn) AND \(prefix)state = ?"]
            if let since = filter.since {
                conditions.append("\(prefix)updated_at >= ?")
                values.append(.real(since.timeIntervalSince1970))
            }
        }
        if let until = filter.until {
            conditions.append("\(prefix)created_at <= ?")
            values.append(.real(until.timeIntervalSince1970))
        }
        if let rule = filter.rule {
            conditions.append("\(prefix)rule = ?")
            values.append(.text(rule))
        }
        return (conditions, values)
    }

    /// Outbound file versions matching `filter`, in the order they were detected.
    public func outboundHistory(_ filter: HistoryFilter) throws -> [OutboundHistoryEntry] {
        if filter.outboundStates.isEmpty && !filter.inboundStates.isEmpty { return [] }
        let states = filter.outboundStates.isEmpty ? OutboundState.allCases : filter.outboundStates
        let finished: Set<OutboundState> = [.done, .dropped, .retried]
        var entries: [OutboundHistoryEntry] = []
        for state in states {
            var (conditions, values) = Self.windowConditions(filter, column: "f.", state: state.rawValue,
                                                             finishedIn: finished.contains(state) ? Self.finishedOutboundSQL : nil)
            if !filter.names.isEmpty {
                var alternatives: [String] = []
                for name in filter.names {
                    if name.hasPrefix("/") {
                        alternatives.append("f.path = ?")
                    } else if name.contains("/") {
                        alternatives.append("f.relative_path = ?")
                    } else {
                        alternatives.append("\(Self.baseNameSQL("f.path")) = ?")
                    }
                    values.append(.text(name))
                }
                conditions.append("(" + alternatives.joined(separator: " OR ") + ")")
            }
            let sql = """
                SELECT f.id, f.rule, f.path, f.size, f.checksum, f.state, f.created_at, f.bucket, f.s3_key, f.transfer_id,
                coalesce(f.submitted_at, b.created_at), f.completed_at, f.updated_at, f.after_send, f.archive_path,
                f.quarantine_path, f.attempts, f.last_error, f.possible_duplicates
                FROM outbound_files f LEFT JOIN outbound_batches b ON b.id = f.batch_id
                WHERE \(conditions.joined(separator: " AND "))
                """
            let rows = try locked {
                try connection.statement(sql).query(values) { row in
                    let state = OutboundState(rawValue: row.text(5) ?? "") ?? .dropped
                    let updated = Date(timeIntervalSince1970: row.double(12))
                    return OutboundHistoryEntry(
                        id: row.int(0), rule: row.text(1) ?? "", path: row.text(2) ?? "", size: row.int(3), checksum: row.text(4),
                        state: state, detectedAt: Date(timeIntervalSince1970: row.double(6)), bucket: row.text(7), key: row.text(8),
                        transferID: row.text(9), submittedAt: row.optionalDouble(10).map(Date.init(timeIntervalSince1970:)),
                        completedAt: row.optionalDouble(11).map(Date.init(timeIntervalSince1970:)),
                        finishedAt: finished.contains(state) ? updated : nil, updatedAt: updated, afterSend: row.text(13),
                        archivePath: row.text(14), heldPath: row.text(15), attempts: Int(row.int(16)), lastError: row.text(17),
                        possibleDuplicates: Int(row.int(18)))
                }
            }
            entries += rows
        }
        return entries.sorted { ($0.detectedAt, $0.id) < ($1.detectedAt, $1.id) }
    }

    /// Inbound file versions matching `filter`, in the order they were first listed.
    public func inboundHistory(_ filter: HistoryFilter) throws -> [InboundHistoryEntry] {
        if filter.inboundStates.isEmpty && !filter.outboundStates.isEmpty { return [] }
        let states = filter.inboundStates.isEmpty ? InboundState.allCases : filter.inboundStates
        var entries: [InboundHistoryEntry] = []
        for state in states {
            var (conditions, values) = Self.windowConditions(filter, column: "", state: state.rawValue,
                                                             finishedIn: state == .done ? Self.finishedInboundSQL : nil)
            if !filter.names.isEmpty {
                conditions.append("(" + filter.names.map { name in
                    name.contains("/") ? "remote_path = ?" : "\(Self.baseNameSQL("remote_path")) = ?"
                }.joined(separator: " OR ") + ")")
                values += filter.names.map(SQLValue.text)
            }
            let sql = """
                SELECT id, rule, remote_path, size, modified, state, bucket, s3_key, transfer_id, local_path, created_at, updated_at,
                attempts, last_error FROM inbound_files WHERE \(conditions.joined(separator: " AND "))
                """
            entries += try locked {
                try connection.statement(sql).query(values) { row in
                    let size = row.int(3)
                    let modified = row.text(4) ?? ""
                    let state = InboundState(rawValue: row.text(5) ?? "") ?? .failed
                    let updated = Date(timeIntervalSince1970: row.double(11))
                    return InboundHistoryEntry(
                        id: row.int(0), rule: row.text(1) ?? "", remotePath: row.text(2) ?? "", size: size < 0 ? nil : size,
                        modified: modified.isEmpty ? nil : modified, state: state, bucket: row.text(6), key: row.text(7),
                        transferID: row.text(8), localPath: row.text(9), listedAt: Date(timeIntervalSince1970: row.double(10)),
                        finishedAt: state == .done ? updated : nil, updatedAt: updated, attempts: Int(row.int(12)),
                        lastError: row.text(13))
                }
            }
        }
        return entries.sorted { ($0.listedAt, $0.id) < ($1.listedAt, $1.id) }
    }
}
