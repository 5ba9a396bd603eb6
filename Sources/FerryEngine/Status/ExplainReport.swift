import FerryConfig
import FerryGlob
import FerryStore
import FerryWatch
import Foundation

/// `ferry explain PATH`: for a path in (or near) a watched folder, in plain words, which rule owns it or
/// why none does, and where it stands. Read-only: the rules, the file system and the journal; it asks
/// the running daemon nothing, so it works (and says the same) whether or not ferry runs.
public struct ExplainReport: Codable, Sendable, Equatable {
    /// What will happen to the file, in one word: `sent` (done), `sending` (on its way, or will be once
    /// complete), `not-sent` (no rule takes it, or it is quarantined, held or refused).
    public enum Verdict: String, Codable, Sendable {
        case sent, sending
        case notSent = "not-sent"
    }

    public var path: String
    /// The rule that owns the file, if one does.
    public var rule: String?
    public var verdict: Verdict
    /// The plain-words explanation, one sentence a line, most important first.
    public var reasons: [String]
    /// The journal's latest row for this path, when there is one.
    public var journal: HistoryReport.Outbound?

    /// 0 when the file will be or was sent, 1 otherwise.
    public var exitCode: Int32 { verdict == .notSent ? 1 : 0 }

    /// Explains `path` (absolute, or relative to the working directory) under `rules`.
    public static func compute(rules: Rules, path rawPath: String, now: Date = Date()) throws -> ExplainReport {
        let path = Self.absolute(rawPath)
        var report = ExplainReport(path: path, rule: nil, verdict: .notSent, reasons: [], journal: nil)
        report.journal = try latestJournalRow(rules: rules, path: path)

        // Where it stands against the rules, in file order (a file belongs to the first rule that takes it).
        let candidates = rules.outbound.filter { $0.relativePath(of: path).map { !$0.isEmpty } ?? false }
        guard !candidates.isEmpty else {
            report.reasons.append("it is outside every watched folder (\(rules.outbound.map(\.watch).joined(separator: ", ")))")
            report.addJournalHistory(now: now)
            return report
        }
        if let link = LinkFreeFile.firstSymbolicLink(in: path) {
            report.reasons.append("a component of its path is a symbolic link (\(link)): ferry never follows links and never sends through them")
            report.addJournalHistory(now: now)
            return report
        }
        var why: [String] = []
        for rule in candidates {
            guard let relative = rule.relativePath(of: path) else { continue }
            if let ownFolder = ownFolder(relative) {
                report.rule = rule.name
                report.explainOwnFolder(ownFolder, relative: relative, rule: rule)
                return report
            }
            if !rule.recursive && relative.contains("/") {
                why.append("rule \(rule.name) watches only \(rule.watch) itself, not its subfolders (recursive: false)")
                continue
            }
            if let refusal = Self.refusal(of: relative, by: rule) {
                why.append("rule \(rule.name): \(refusal)")
                continue
            }
            report.rule = rule.name
            break
        }
        guard let ruleName = report.rule, let rule = rules.outbound.first(where: { $0.name == ruleName }) else {
            report.reasons.append("no rule takes it: " + why.joined(separator: "; "))
            report.addJournalHistory(now: now)
            return report
        }
        if !why.isEmpty { report.reasons.append("earlier rules pass it on: " + why.joined(separator: "; ")) }
        report.explainOwned(by: rule, stateDir: rules.stateDir, now: now)
        return report
    }

    // MARK: - The owning rule

    /// ", watched by poll every 5.0 s (auto: fuse is a network or FUSE file system)": the running daemon's
    /// choice for the rule's folder (`watch-modes.json`), or "" when no daemon has published one.
    static func watchedBy(_ rule: OutboundRule, stateDir: String) -> String {
        guard let mode = WatchModesFile.read(stateDir: stateDir).first(where: { $0.folder == rule.watch }) else { return "" }
        let every = mode.pollIntervalSeconds.map { String(format: " every %.1f s", $0) } ?? ""
        return ", watched by \(mode.mode)\(every) (\(mode.reason))"
    }

    private mutating func explainOwned(by rule: OutboundRule, stateDir: String, now: Date) {
        var info = stat()
        let exists = lstat(path, &info) == 0
        let owner = "rule \(rule.name) owns it (watch \(rule.watch), connector \(rule.connector))" + Self.watchedBy(rule, stateDir: stateDir)
        guard exists else {
            if let row = journal {
                // Gone because after_send archived or deleted it, most often: the journal tells its end.
                reasons.append(owner + "; it is no longer in the folder")
                explainJournaled(row, rule: rule, stateDir: stateDir, now: now)
            } else {
                reasons.append(owner + ", but it does not exist, and the journal has nothing of it: ferry never saw a complete version")
            }
            return
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            reasons.insert("it is not a regular file (\(Self.kindName(kind))): ferry sends regular files only", at: 0)
            return
        }
        reasons.append(owner)
        let mtime = Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
        let size = Int64(info.st_size)
        // The journal's row is this version when nothing changed since it was seen complete.
        if let row = journal, row.size == size, mtime <= row.detectedAt {
            explainJournaled(row, rule: rule, stateDir: stateDir, now: now)
            return
        }
        if let row = journal {
            reasons.append("the journal's last row is an earlier version (\(row.size) bytes, seen \(Self.time(row.detectedAt)), \(row.state)); this one is new")
        }
        verdict = .sending
        switch openForWriting(path) {
        case true?:
            reasons.insert("it is open for writing by a process: it is sent once its writer closes it", at: 0)
            return
        case nil:
            reasons.append("whether a process has it open for writing could not be asked (a read lease needs ferry's user, or CAP_LEASE)")
        case false?:
            break
        }
        let settle = Double(rule.settle.components.seconds) + Double(rule.settle.components.attoseconds) / 1e18
        let unchanged = now.timeIntervalSince(mtime)
        if unchanged < settle {
            reasons.insert(String(format: "it is settling: unchanged for %.1f s of the %.1f s settle; sent after %.1f s more without change", unchanged, settle, settle - unchanged), at: 0)
            return
        }
        if let marker = rule.readyMarker, !marker.isEmpty {
            var markerInfo = stat()
            if lstat(path + marker, &markerInfo) != 0 {
                reasons.insert("it waits for its ready marker \(path + marker): it is sent once that file exists", at: 0)
                return
            }
        }
        reasons.insert("it is complete and not yet journaled: the running daemon picks it up within moments (if it is not running, `ferry status` says so)", at: 0)
    }

    /// "; 12 files of the rule are queued ahead of it": journaled earlier and not yet submitted.
    static func ahead(of row: HistoryReport.Outbound, stateDir: String) -> String {
        let path = (stateDir as NSString).appendingPathComponent("journal.db")
        guard let journal = try? Journal(readOnlyAt: path, logger: .init(label: "ferry.explain")),
              let waiting = try? journal.outboundFiles(in: [.detected, .staged], rule: row.rule) else { return "" }
        let ahead = waiting.filter { $0.id < row.id }.count
        return ahead == 0 ? "; nothing of the rule is queued ahead of it" : "; \(ahead) file(s) of the rule are queued ahead of it"
    }

    private mutating func explainJournaled(_ row: HistoryReport.Outbound, rule: OutboundRule, stateDir: String, now: Date) {
        let transfer = row.transferId.map { " as TransferId \($0)" } ?? ""
        switch row.state {
        case "done":
            verdict = .sent
            var line = "sent \(row.completedAt.map(Self.time) ?? Self.time(row.updatedAt))\(transfer)"
            if let archive = row.archivePath { line += " and archived to \(archive)" } else if let after = row.afterSend { line += "; after_send: \(after)" }
            reasons.insert(line, at: 0)
        case "detected":
            verdict = .sending
            reasons.insert("journaled as complete \(Self.time(row.detectedAt)); waiting to be uploaded to staging\(Self.ahead(of: row, stateDir: stateDir))", at: 0)
        case "staged":
            verdict = .sending
            reasons.insert("uploaded to s3://\(row.bucket ?? "")/\(row.s3Key ?? ""); waiting for its batch (StartFileTransfer)\(Self.ahead(of: row, stateDir: stateDir))", at: 0)
        case "submitting":
            verdict = .sending
            reasons.insert("in a StartFileTransfer whose answer has not been journaled yet", at: 0)
        case "submitted":
            verdict = .sending
            reasons.insert("in flight\(transfer), submitted \(row.submittedAt.map(Self.time) ?? "-"); ferry is waiting for the partner's result", at: 0)
        case "completed":
            verdict = .sent
            reasons.insert("the partner has it\(transfer) (\(row.completedAt.map(Self.time) ?? "-")); after_send (\(rule.afterSend.rawValue)) is not done yet\(row.lastError.map { ": \($0)" } ?? "")", at: 0)
        case "failed":
            verdict = .sending
            reasons.insert("its last transfer failed (\(row.lastError ?? "no message")); it is retried (attempt \(row.attempts) of \(rule.retries + 1))", at: 0)
        case "quarantined":
            verdict = .notSent
            reasons.insert("quarantined\(row.heldPath.map { " in \($0)" } ?? ""): \(row.lastError ?? "see its .reason file"); `ferry retry \(path)` puts it back once the cause is fixed", at: 0)
        case "in_doubt":
            verdict = .notSent
            reasons.insert("held in doubt\(row.heldPath.map { " in \($0)" } ?? ""): StartFileTransfer's answer was lost, so the partner may or may not have it; check with the partner, then `ferry retry`", at: 0)
        case "dropped":
            verdict = .sending
            reasons.insert("it changed (or was still open) when ferry went to upload it; the new version is sent once complete", at: 0)
        default:
            verdict = .sending
            reasons.insert("journal state \(row.state)", at: 0)
        }
        if row.possibleDuplicates > 0 {
            reasons.append("sent again \(row.possibleDuplicates) time(s) after an answer was lost: a possible duplicate at the partner")
        }
    }

    // MARK: - ferry's own folders

    private enum OwnFolder { case sent, failed, inDoubt, claim, other }

    private static func ownFolder(_ relative: String) -> OwnFolder? {
        guard relative == ".ferry" || relative.hasPrefix(".ferry/") else { return nil }
        let rest = relative.dropFirst(".ferry/".count)
        if rest.hasPrefix("sent/") { return .sent }
        if rest.hasPrefix("failed/") { return .failed }
        if rest.hasPrefix("in-doubt/") { return .inDoubt }
        if rest.hasPrefix("claim/") { return .claim }
        return .other
    }

    private mutating func explainOwnFolder(_ folder: OwnFolder, relative: String, rule: OutboundRule) {
        switch folder {
        case .sent:
            verdict = .sent
            reasons.append("it is in rule \(rule.name)'s archive (.ferry/sent/): a file ferry sent and archived; it is never a candidate again")
        case .failed:
            reasons.append("it is quarantined in rule \(rule.name)'s .ferry/failed/\(Self.reasonFile(path).map { ": \($0)" } ?? ""); `ferry retry \(path)` puts it back once the cause is fixed")
        case .inDoubt:
            reasons.append("it is held in rule \(rule.name)'s .ferry/in-doubt/: StartFileTransfer's answer was lost\(Self.reasonFile(path).map { " (\($0))" } ?? ""); check with the partner, then `ferry retry \(path)`")
        case .claim:
            verdict = .sent
            reasons.append("it is in .ferry/claim/: ferry is running after_send on a sent file at this moment")
        case .other:
            reasons.append("it is in ferry's own .ferry/ folder, which no rule ever sends from")
        }
    }

    private static func reasonFile(_ path: String) -> String? {
        guard let text = try? String(contentsOfFile: path + ".reason", encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first.map(String.init) ?? ""
        return line.isEmpty ? nil : line
    }

    // MARK: - The rule's patterns

    /// Why `rule`'s patterns refuse `relative`, naming the pattern; nil when they take it.
    static func refusal(of relative: String, by rule: OutboundRule) -> String? {
        let name = relative.split(separator: "/").last.map(String.init) ?? relative
        if let marker = rule.readyMarker, !marker.isEmpty, name.hasSuffix(marker), name.count > marker.count {
            return "it is the ready marker of \(String(relative.dropLast(marker.count))) (ready_marker: \(marker)), not a file to send"
        }
        switch rule.filter.refusal(of: relative) {
        case nil:
            return nil
        case .excluded(let pattern)? where FileFilter.defaultIgnores.contains(pattern):
            return "a hidden or temporary name, ignored by default (pattern \(pattern)); rename it when it is complete"
        case .folderExcluded(let folder, let pattern)? where FileFilter.defaultIgnores.contains(pattern):
            return "it is under \(folder)/, a hidden or temporary folder name ignored by default (pattern \(pattern))"
        case .excluded(let pattern)?:
            return "excluded by the rule's pattern \(pattern)"
        case .folderExcluded(let folder, let pattern)?:
            return "it is under \(folder)/, excluded by the rule's pattern \(pattern)"
        case .notIncluded?:
            return "matches none of the rule's include patterns (\(rule.include.joined(separator: ", ")))"
        }
    }

    // MARK: - Helpers

    private mutating func addJournalHistory(now: Date) {
        guard let row = journal else { return }
        let rule = row.rule
        reasons.append("the journal remembers it: rule \(rule), \(row.state) (\(Self.time(row.updatedAt)))\(row.transferId.map { ", TransferId \($0)" } ?? "")\(row.archivePath.map { ", archived to \($0)" } ?? "")")
        // Gone from its folder because after_send took it, or on its way: the journal says how it ends.
        switch row.state {
        case "done", "completed": verdict = .sent
        case "detected", "staged", "submitting", "submitted", "failed": verdict = .sending
        default: break
        }
    }

    private static func latestJournalRow(rules: Rules, path: String) throws -> HistoryReport.Outbound? {
        let history = try HistoryReport.compute(rules: rules, filter: HistoryFilter(names: [path]))
        return history.outbound.filter { $0.path == path }.max { $0.id < $1.id }
    }

    /// Whether any process has the file open for writing; nil when the kernel will not say.
    private func openForWriting(_ path: String) -> Bool? {
        guard let fd = try? LinkFreeFile.openForReading(path) else { return nil }
        defer { close(fd) }
        return try? WriteActivity.isOpenForWriting(fileDescriptor: fd)
    }

    static func absolute(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func kindName(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: "a folder"
        case S_IFLNK: "a symbolic link"
        case S_IFIFO: "a fifo"
        case S_IFSOCK: "a socket"
        case S_IFCHR, S_IFBLK: "a device"
        default: "not a regular file"
        }
    }

    static func time(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    /// Plain words for people.
    public func text() -> String {
        var lines = ["\(path): \(verdict == .sent ? "SENT" : verdict == .sending ? "WILL BE SENT" : "NOT SENT")"]
        for reason in reasons { lines.append("  - \(reason)") }
        return lines.joined(separator: "\n")
    }

    private enum CodingKeys: String, CodingKey { case path, rule, verdict, reasons, journal }

    /// Absent values are `null`, never left out, and `journal` has every key `ferry history --json`
    /// gives the same record: a script can rely on each key being there.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(path, forKey: .path)
        try container.encode(rule, forKey: .rule)
        try container.encode(verdict, forKey: .verdict)
        try container.encode(reasons, forKey: .reasons)
        try container.encode(journal.map(NullEncoding.init), forKey: .journal)
    }

    /// JSON with snake_case keys and ISO 8601 dates, for scripts.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
