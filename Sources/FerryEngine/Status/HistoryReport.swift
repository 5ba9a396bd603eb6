import FerryConfig
import FerryStore
import Foundation

/// A `--since`/`--until`/`--state` value ferry history cannot use, with what it accepts.
public struct HistoryArgumentError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// Parses the times `ferry history` takes: ISO 8601 (`2026-12-01T08:00:00Z`, with an offset, with
/// fractional seconds, or a bare date `2026-12-01`, which is midnight UTC) and ages counted back from
/// now (`90s`, `30m`, `2h`, `1d`, `1w`).
public enum HistoryTime {
    public static func parse(_ text: String, now: Date = Date()) throws -> Date {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let unit = trimmed.last, let seconds = ["s": 1.0, "m": 60, "h": 3600, "d": 86_400, "w": 604_800][String(unit)],
           let amount = Double(trimmed.dropLast()), amount >= 0 {
            return now.addingTimeInterval(-amount * seconds)
        }
        let full = ISO8601DateFormatter()
        full.formatOptions = [.withInternetDateTime]
        if let date = full.date(from: trimmed) { return date }
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = full.date(from: trimmed) { return date }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if let date = day.date(from: trimmed) { return date }
        throw HistoryArgumentError(message: "'\(text)' is not a time: give an ISO 8601 time (2026-12-01T08:00:00Z, 2026-12-01) or an age such as 90s, 30m, 2h, 1d, 1w")
    }
}

/// What `ferry history` prints: every file version the journal holds that matches the filters, read
/// read-only (safe while the daemon runs) through indexes.
public struct HistoryReport: Codable, Sendable, Equatable {
    /// One outbound file version.
    public struct Outbound: Codable, Sendable, Equatable {
        public var id: Int64
        public var rule: String
        public var path: String
        public var size: Int64
        public var checksum: String?
        /// The journal state (`done` for a finished journey, `in_doubt`, `quarantined`, …).
        public var state: String
        public var detectedAt: Date
        public var bucket: String?
        public var s3Key: String?
        public var transferId: String?
        public var submittedAt: Date?
        public var completedAt: Date?
        public var finishedAt: Date?
        public var updatedAt: Date
        /// For a done file: `archived`, `deleted` or `kept`.
        public var afterSend: String?
        public var archivePath: String?
        /// Where a quarantined or in-doubt file was set aside.
        public var heldPath: String?
        public var attempts: Int
        public var lastError: String?
        /// StartFileTransfer's outcome was unknown and the file is held for an operator.
        public var inDoubt: Bool
        /// Times the file was sent again after an unknown outcome: the partner may have it twice.
        public var possibleDuplicates: Int
    }

    /// One inbound (partner) file version.
    public struct Inbound: Codable, Sendable, Equatable {
        public var id: Int64
        public var rule: String
        public var remotePath: String
        public var size: Int64?
        /// The partner's `modifiedTimestamp`, as listed.
        public var remoteModified: String?
        public var state: String
        public var listedAt: Date
        public var bucket: String?
        public var s3Key: String?
        public var transferId: String?
        /// Where the file was placed in `download_to`.
        public var placedPath: String?
        public var finishedAt: Date?
        public var updatedAt: Date
        /// For a done file: the rule's after_retrieve (`keep`, `delete`, `move:PATH`).
        public var afterRetrieve: String?
        public var attempts: Int
        public var lastError: String?
    }

    public var outbound: [Outbound]
    public var inbound: [Inbound]

    /// The states `--state` accepts: outbound and inbound state names; `done` is either direction's end.
    public static var stateNames: [String] {
        var names = ["done"] + OutboundState.allCases.filter { $0 != .done }.map(\.rawValue)
        names += InboundState.allCases.map(\.rawValue).filter { !names.contains($0) }
        return names
    }

    /// The journal filter for `--state` values (`in-doubt` is accepted for `in_doubt`).
    public static func filter(rule: String?, since: Date?, until: Date?, states: [String], names: [String]) throws -> HistoryFilter {
        var filter = HistoryFilter(rule: rule, since: since, until: until, names: names)
        for raw in states {
            let name = raw.lowercased().replacingOccurrences(of: "-", with: "_")
            var matched = false
            // `disposed`: what journals before schema 5 called the outbound `done`, for scripts written then.
            if let state = OutboundState(rawValue: name == "disposed" ? "done" : name) {
                filter.outboundStates.append(state)
                matched = true
            }
            if let state = InboundState(rawValue: name) {
                filter.inboundStates.append(state)
                matched = true
            }
            guard matched else {
                throw HistoryArgumentError(message: "unknown state '\(raw)': use one of \(stateNames.joined(separator: ", "))")
            }
        }
        return filter
    }

    /// Parses the command line's filters (times as `HistoryTime` reads them) and reads the journal.
    public static func compute(rules: Rules, rule: String?, since: String?, until: String?, states: [String], names: [String],
                               now: Date = Date()) throws -> HistoryReport {
        let filter = try filter(rule: rule, since: try since.map { try HistoryTime.parse($0, now: now) },
                                until: try until.map { try HistoryTime.parse($0, now: now) }, states: states, names: names)
        return try compute(rules: rules, filter: filter)
    }

    /// Reads the journal under `rules.stateDir`.
    public static func compute(rules: Rules, filter: HistoryFilter) throws -> HistoryReport {
        let path = (rules.stateDir as NSString).appendingPathComponent("journal.db")
        guard FileManager.default.fileExists(atPath: path) else { return HistoryReport(outbound: [], inbound: []) }
        let journal = try Journal(readOnlyAt: path, logger: .init(label: "ferry.history"))
        return try compute(journal: journal, rules: rules, filter: filter)
    }

    /// Reads `journal`; `rules` supply the after_send and after_retrieve of rows the pipeline did not
    /// record them for.
    public static func compute(journal: Journal, rules: Rules, filter: HistoryFilter) throws -> HistoryReport {
        let afterSend = Dictionary(rules.outbound.map { ($0.name, $0.afterSend) }, uniquingKeysWith: { first, _ in first })
        let afterRetrieve = Dictionary(rules.inbound.map { ($0.name, $0.afterRetrieve) }, uniquingKeysWith: { first, _ in first })
        let outbound = try journal.outboundHistory(filter).map { entry in
            let done = entry.state == .done
            let configured: String? = switch afterSend[entry.rule] {
            case .archive: "archived"
            case .delete: "deleted"
            case .keep: "kept"
            case nil: nil
            }
            return Outbound(
                id: entry.id, rule: entry.rule, path: entry.path, size: entry.size, checksum: entry.checksum,
                state: done ? "done" : entry.state.rawValue, detectedAt: entry.detectedAt, bucket: entry.bucket, s3Key: entry.key,
                transferId: entry.transferID, submittedAt: entry.submittedAt, completedAt: entry.completedAt, finishedAt: entry.finishedAt,
                updatedAt: entry.updatedAt, afterSend: entry.afterSend ?? (done ? configured : nil), archivePath: entry.archivePath,
                heldPath: entry.heldPath, attempts: entry.attempts, lastError: entry.lastError, inDoubt: entry.state == .inDoubt,
                possibleDuplicates: entry.possibleDuplicates)
        }
        let inbound = try journal.inboundHistory(filter).map { entry in
            let configured: String? = switch afterRetrieve[entry.rule] {
            case .keep: "keep"
            case .delete: "delete"
            case .move(let to): "move:\(to)"
            case nil: nil
            }
            return Inbound(
                id: entry.id, rule: entry.rule, remotePath: entry.remotePath, size: entry.size, remoteModified: entry.modified,
                state: entry.state.rawValue, listedAt: entry.listedAt, bucket: entry.bucket, s3Key: entry.key, transferId: entry.transferID,
                placedPath: entry.localPath, finishedAt: entry.finishedAt, updatedAt: entry.updatedAt,
                afterRetrieve: entry.state == .done ? configured : nil, attempts: entry.attempts, lastError: entry.lastError)
        }
        return HistoryReport(outbound: outbound, inbound: inbound)
    }

    /// JSON with snake_case keys and ISO 8601 dates; absent values are `null`, never left out, so a script
    /// can rely on every key.
    public func json() throws -> String {
        // Written directly, keys sorted as before (HistoryJSONTests checks it against JSONEncoder's form).
        var out = JSONText()
        out.beginObject()
        out.key("inbound")
        out.beginArray()
        for file in inbound {
            out.record([
                "after_retrieve": .string(file.afterRetrieve), "attempts": .int(Int64(file.attempts)), "bucket": .string(file.bucket),
                "finished_at": .date(file.finishedAt), "id": .int(file.id), "last_error": .string(file.lastError),
                "listed_at": .date(file.listedAt), "placed_path": .string(file.placedPath), "remote_modified": .string(file.remoteModified),
                "remote_path": .string(file.remotePath), "rule": .string(file.rule), "s3_key": .string(file.s3Key), "size": .int(file.size),
                "state": .string(file.state), "transfer_id": .string(file.transferId), "updated_at": .date(file.updatedAt),
            ])
        }
        out.endArray()
        out.key("outbound")
        out.beginArray()
        for file in outbound {
            out.record([
                "after_send": .string(file.afterSend), "archive_path": .string(file.archivePath), "attempts": .int(Int64(file.attempts)),
                "bucket": .string(file.bucket), "checksum": .string(file.checksum), "completed_at": .date(file.completedAt),
                "detected_at": .date(file.detectedAt), "finished_at": .date(file.finishedAt), "held_path": .string(file.heldPath),
                "id": .int(file.id), "in_doubt": .bool(file.inDoubt), "last_error": .string(file.lastError), "path": .string(file.path),
                "possible_duplicates": .int(Int64(file.possibleDuplicates)), "rule": .string(file.rule), "s3_key": .string(file.s3Key),
                "size": .int(file.size), "state": .string(file.state), "submitted_at": .date(file.submittedAt),
                "transfer_id": .string(file.transferId), "updated_at": .date(file.updatedAt),
            ])
        }
        out.endArray()
        out.endObject()
        return out.text
    }

    /// The JSON of `json()` as JSONEncoder writes it (every field through Mirror, nil as null): the
    /// reference the fast writer is tested against.
    func encoderJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(JSONShape(self)), as: UTF8.self)
    }

    /// The columns of `csv()`, one row per file version of either direction.
    public static let csvColumns = [
        "direction", "id", "rule", "state", "path", "size", "checksum", "remote_modified", "detected_at", "bucket", "s3_key",
        "transfer_id", "submitted_at", "completed_at", "finished_at", "after", "archive_path", "placed_path", "held_path",
        "attempts", "last_error", "in_doubt", "possible_duplicates",
    ]

    /// RFC 4180 CSV with a header row: outbound rows first, then inbound; `path` is the remote path for
    /// inbound rows and `after` their after_retrieve.
    public func csv() -> String {
        let time = ISO8601DateFormatter()
        func date(_ value: Date?) -> String { value.map { time.string(from: $0) } ?? "" }
        var lines = [Self.csvColumns.joined(separator: ",")]
        for file in outbound {
            lines.append(Self.csvLine([
                "outbound", "\(file.id)", file.rule, file.state, file.path, "\(file.size)", file.checksum ?? "", "", date(file.detectedAt),
                file.bucket ?? "", file.s3Key ?? "", file.transferId ?? "", date(file.submittedAt), date(file.completedAt),
                date(file.finishedAt), file.afterSend ?? "", file.archivePath ?? "", "", file.heldPath ?? "", "\(file.attempts)",
                file.lastError ?? "", file.inDoubt ? "true" : "false", "\(file.possibleDuplicates)",
            ]))
        }
        for file in inbound {
            lines.append(Self.csvLine([
                "inbound", "\(file.id)", file.rule, file.state, file.remotePath, file.size.map { "\($0)" } ?? "", "",
                file.remoteModified ?? "", date(file.listedAt), file.bucket ?? "", file.s3Key ?? "", file.transferId ?? "", "", "",
                date(file.finishedAt), file.afterRetrieve ?? "", "", file.placedPath ?? "", "", "\(file.attempts)", file.lastError ?? "",
                "false", "0",
            ]))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func csvLine(_ fields: [String]) -> String {
        fields.map { field in
            guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }.joined(separator: ",")
    }

    /// For people: one line per version with its times, then the details that matter for it.
    public func text() -> String {
        let time = ISO8601DateFormatter()
        func date(_ value: Date?) -> String { value.map { time.string(from: $0) } ?? "-" }
        var lines: [String] = []
        if !outbound.isEmpty {
            lines.append("OUTBOUND")
            for file in outbound {
                var line = "\(date(file.detectedAt))  \(file.state.padding(toLength: 11, withPad: " ", startingAt: 0))  \(file.rule)  \(file.path)  \(file.size) B"
                if let id = file.transferId { line += "  transfer \(id)" }
                lines.append(line)
                var details: [String] = []
                if let key = file.s3Key { details.append("staged s3://\(file.bucket ?? "?")/\(key)") }
                if file.submittedAt != nil { details.append("submitted \(date(file.submittedAt))") }
                if file.completedAt != nil { details.append("completed \(date(file.completedAt))") }
                if let after = file.afterSend { details.append("after_send \(after)\(file.archivePath.map { " to \($0)" } ?? "")") }
                if let held = file.heldPath { details.append("set aside at \(held)") }
                if file.possibleDuplicates > 0 { details.append("POSSIBLE DUPLICATE (sent again \(file.possibleDuplicates)x after an unknown outcome)") }
                if file.attempts > 0 { details.append("attempts \(file.attempts)") }
                if let error = file.lastError { details.append("last error: \(error)") }
                if !details.isEmpty { lines.append("    " + details.joined(separator: "; ")) }
            }
        }
        if !inbound.isEmpty {
            if !lines.isEmpty { lines.append("") }
            lines.append("INBOUND")
            for file in inbound {
                var line = "\(date(file.listedAt))  \(file.state.padding(toLength: 11, withPad: " ", startingAt: 0))  \(file.rule)  \(file.remotePath)"
                if let size = file.size { line += "  \(size) B" }
                if let id = file.transferId { line += "  transfer \(id)" }
                lines.append(line)
                var details: [String] = []
                if let modified = file.remoteModified { details.append("remote mtime \(modified)") }
                if let key = file.s3Key { details.append("in s3://\(file.bucket ?? "?")/\(key)") }
                if let placed = file.placedPath { details.append("placed at \(placed)") }
                if let after = file.afterRetrieve { details.append("after_retrieve \(after)") }
                if file.attempts > 0 { details.append("attempts \(file.attempts)") }
                if let error = file.lastError { details.append("last error: \(error)") }
                if !details.isEmpty { lines.append("    " + details.joined(separator: "; ")) }
            }
        }
        if lines.isEmpty { lines.append("no file in the journal matches") }
        return lines.joined(separator: "\n")
    }
}

/// Encodes optionals as explicit nulls (JSONEncoder drops nil keys), so every record has every key.
private struct JSONShape: Encodable {
    let report: HistoryReport
    init(_ report: HistoryReport) { self.report = report }

    enum Keys: String, CodingKey { case outbound, inbound }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(report.outbound.map(NullEncoding.init), forKey: .outbound)
        try container.encode(report.inbound.map(NullEncoding.init), forKey: .inbound)
    }
}

/// Encodes a value through Mirror so that nil properties become `null` under their (snake_cased) key.
/// Shared with `ExplainReport`, whose `journal` is the same record and must have the same keys.
struct NullEncoding<Value: Encodable>: Encodable {
    let value: Value
    init(_ value: Value) { self.value = value }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for child in Mirror(reflecting: value).children {
            guard let label = child.label else { continue }
            let key = Key(stringValue: label)
            switch child.value {
            case let value as Date: try container.encode(value, forKey: key)
            case let value as Date?: try container.encode(value, forKey: key)
            case let value as String: try container.encode(value, forKey: key)
            case let value as String?: try container.encode(value, forKey: key)
            case let value as Int64: try container.encode(value, forKey: key)
            case let value as Int64?: try container.encode(value, forKey: key)
            case let value as Int: try container.encode(value, forKey: key)
            case let value as Bool: try container.encode(value, forKey: key)
            default: throw EncodingError.invalidValue(child.value, .init(codingPath: container.codingPath,
                                                                         debugDescription: "history field \(label) has no JSON form"))
            }
        }
    }
}
