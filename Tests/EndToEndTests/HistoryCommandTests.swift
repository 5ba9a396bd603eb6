import FerryStore
import FerryTestSupport
import Foundation
import Synchronization
import Testing
import FerrySystem

/// `ferry history` run as a user runs it, against a journal holding every state of both directions,
/// written by FerryStore the way the pipelines write it (and left open for writing, as a running daemon
/// holds it). Times come from the journal's injectable clock, so every field has one expected value.
struct HistoryCommandTests {
    final class Clock: Sendable {
        let current: Mutex<Date>
        init(_ start: Date) { current = Mutex(start) }
        var now: Date { current.withLock { $0 } }
        func set(_ date: Date) { current.withLock { $0 = date } }
    }

    /// The journal, the rules file naming it, and the expected times.
    struct Fixture {
        let root: TempDirectory
        let configPath: String
        let journal: Journal
        /// Three days ago (whole seconds): the old rows.
        let old: Date
        /// An hour ago: the recent rows.
        let recent: Date
    }

    static func fixture() throws -> Fixture {
        let root = try TempDirectory(prefix: "ferry-e2e-history")
        let watch = root.path + "/out", kept = root.path + "/kept"
        for folder in [watch, kept] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let configPath = root.path + "/rules.yaml"
        try """
            version: 1
            state_dir: \(root.path)/state
            aws:
              region: us-east-1
            connectors:
              acme:
                type: sftp
                connector_id: c-0123456789abcdef0
                staging: s3://acme-staging/outbound/
            outbound:
              - name: invoices
                watch: \(watch)
                connector: acme
                after_send: archive
              - name: kept
                watch: \(kept)
                connector: acme
                after_send: keep
            inbound:
              - name: reports
                connector: acme
                remote_directory_path: /outbound/reports
                local_directory_path: s3://acme-inbound/reports/
                download_to: \(root.path)/in
                after_retrieve: move:/outbound/reports/archive

            """.write(toFile: configPath, atomically: true, encoding: .utf8)

        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let old = now.addingTimeInterval(-3 * 86_400), recent = now.addingTimeInterval(-3600)
        let clock = Clock(old)
        let journal = try Journal(directory: root.path + "/state", logger: .init(label: "test"), now: { clock.now })
        func file(_ rule: String, _ folder: String, _ name: String, inode: UInt64) -> NewOutboundFile {
            NewOutboundFile(rule: rule, path: "\(folder)/\(name)", relativePath: name, version: FileVersion(device: 7, inode: inode, size: 4711,
                                                 mtimeNanoseconds: 1_700_000_000_000_000_000), remoteDirectory: "/inbound/invoices")
        }
        func staged(_ rows: [OutboundFile]) throws {
            try journal.markStaged(rows.map { Journal.StagedCopy(id: $0.id, bucket: "acme-staging", key: "outbound/\($0.relativePath)",
                                                                 checksum: "AAAAAA==") })
        }
        func batch(_ rows: [OutboundFile], transfer: String?) throws -> Int64 {
            let id = try journal.createBatch(rule: rows[0].rule, connector: "acme", connectorID: "c-0123456789abcdef0",
                                             remoteDirectory: "/inbound/invoices", fileIDs: rows.map(\.id))
            if let transfer { try journal.markSubmitted(batch: id, transferID: transfer) }
            return id
        }

        // Old: sent, archived, after being resent once after an unknown outcome.
        let sent = try journal.recordDetected([file("invoices", watch, "invoice-4711.edi", inode: 1)])
        try staged(sent)
        let sentBatch = try batch(sent, transfer: "t-0000000000000001")
        try journal.recordPossibleDuplicates(sent.map(\.id))
        try journal.recordOutcomes(batch: sentBatch, [sent[0].id: .completed])
        try journal.recordAfterSend([.init(id: sent[0].id, result: "archived", archivePath: "\(watch)/.ferry/sent/2026-11-29/invoice-4711.edi")])
        try journal.markDone(sent.map(\.id))
        // Old: a kept rule's file whose after_send the pipeline did not record (the rule's setting is shown).
        let keptRows = try journal.recordDetected([file("kept", kept, "price-list.csv", inode: 2)])
        try staged(keptRows)
        let keptBatch = try batch(keptRows, transfer: "t-0000000000000002")
        try journal.recordOutcomes(batch: keptBatch, [keptRows[0].id: .completed], done: Set(keptRows.map(\.id)))
        // Old: vanished before upload; quarantined and then put back by `ferry retry`.
        let dropped = try journal.recordDetected([file("invoices", watch, "gone.edi", inode: 3)])
        try journal.markDropped(dropped[0].id, reason: "vanished before upload")
        let retried = try journal.recordDetected([file("invoices", watch, "retried.edi", inode: 4)])
        try journal.markQuarantined(retried[0].id, reason: "out of retries", quarantinePath: "\(watch)/.ferry/failed/retried.edi")
        try journal.markRetried(retried[0].id)

        // Recent: one file in every live state.
        clock.set(recent)
        _ = try journal.recordDetected([file("invoices", watch, "detected.edi", inode: 10)])
        try staged(try journal.recordDetected([file("invoices", watch, "staged.edi", inode: 11)]))
        let submitting = try journal.recordDetected([file("invoices", watch, "submitting.edi", inode: 12)])
        try staged(submitting)
        _ = try batch(submitting, transfer: nil)
        let submitted = try journal.recordDetected([file("invoices", watch, "submitted.edi", inode: 13)])
        try staged(submitted)
        _ = try batch(submitted, transfer: "t-0000000000000013")
        let completed = try journal.recordDetected([file("invoices", watch, "completed.edi", inode: 14)])
        try staged(completed)
        let completedBatch = try batch(completed, transfer: "t-0000000000000014")
        try journal.recordOutcomes(batch: completedBatch, [completed[0].id: .completed])
        let failed = try journal.recordDetected([file("invoices", watch, "failed.edi", inode: 15)])
        try staged(failed)
        let failedBatch = try batch(failed, transfer: "t-0000000000000015")
        try journal.recordOutcomes(batch: failedBatch, [failed[0].id: .failed(code: "FILE_NOT_FOUND", message: "no such directory, \"/inbound\"")])
        let quarantined = try journal.recordDetected([file("invoices", watch, "quarantined.edi", inode: 16)])
        try journal.markQuarantined(quarantined[0].id, reason: "out of retries: ACCESS_DENIED", quarantinePath: "\(watch)/.ferry/failed/quarantined.edi")
        let doubtful = try journal.recordDetected([file("invoices", watch, "doubtful.edi", inode: 17)])
        try staged(doubtful)
        let doubtfulBatch = try batch(doubtful, transfer: nil)
        try journal.markInDoubt([(doubtful[0].id, "\(watch)/.ferry/in-doubt/doubtful.edi")], reason: "timed out")
        try journal.finishBatch(doubtfulBatch)

        // Inbound: retrieved, placed and done (recent); a failed and a refused version; one just listed.
        let listed = try journal.recordListed(rule: "reports", [
            RemoteVersion(remotePath: "/outbound/reports/daily.csv", size: 1234, modified: "2026-11-30T23:59:00Z"),
            RemoteVersion(remotePath: "/outbound/reports/broken.csv", size: 5, modified: "2026-11-30T23:58:00Z"),
            RemoteVersion(remotePath: "/outbound/reports/new.csv", size: nil, modified: nil),
        ], maxAttempts: 3)
        let retrieval = try journal.beginRetrieval(listed.prefix(2).map { ($0.id, "acme-inbound", "reports/\($0.name)") })
        try journal.markRetrieving(batch: retrieval, transferID: "t-00000000000000a1")
        try journal.recordRetrievalOutcomes([listed[0].id: .completed, listed[1].id: .failed(code: "FILE_NOT_FOUND", message: "gone")])
        try journal.markDownloaded(listed[0].id, localPath: "\(root.path)/in/daily.csv")
        try journal.markInboundDone(listed[0].id)
        _ = try journal.recordRefused(rule: "reports", RemoteVersion(remotePath: "/outbound/reports/..%2fetc", size: 1, modified: "x"),
                                      reason: "the name contains '..'")
        return Fixture(root: root, configPath: configPath, journal: journal, old: old, recent: recent)
    }

    static func history(_ fixture: Fixture, _ arguments: [String]) throws -> FerryBinary.Result {
        try FerryBinary.run(["history", "--config", fixture.configPath] + arguments)
    }

    static func json(_ fixture: Fixture, _ arguments: [String] = []) throws -> (outbound: [[String: Any]], inbound: [[String: Any]]) {
        let result = try history(fixture, arguments + ["--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        return (try #require(object["outbound"] as? [[String: Any]]), try #require(object["inbound"] as? [[String: Any]]))
    }

    static func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    /// The last component of a JSON path value.
    static func name(_ value: Any?) -> String {
        ((value as? String) ?? "").split(separator: "/").last.map(String.init) ?? ""
    }

    @Test func jsonShowsEveryOutboundFieldOfEveryState() throws {
        let fixture = try Self.fixture()
        let (outbound, inbound) = try Self.json(fixture)
        let byName = Dictionary(outbound.map { (Self.name($0["path"]), $0) }, uniquingKeysWith: { first, _ in first })
        #expect(byName.count == 12, "\(byName.keys.sorted())")
        #expect(outbound.count == 12)
        #expect(inbound.count == 4)
        let watch = fixture.root.path + "/out"

        // Every key is present in every record, null when unknown.
        let keys: Set<String> = ["id", "rule", "path", "size", "checksum", "state", "detected_at", "bucket", "s3_key", "transfer_id",
                                 "submitted_at", "completed_at", "finished_at", "updated_at", "after_send", "archive_path", "held_path",
                                 "attempts", "last_error", "in_doubt", "possible_duplicates"]
        for record in outbound { #expect(Set(record.keys) == keys, "\(record)") }

        let sent = try #require(byName["invoice-4711.edi"])
        #expect(sent["rule"] as? String == "invoices")
        #expect(sent["path"] as? String == "\(watch)/invoice-4711.edi")
        #expect(sent["size"] as? Int == 4711)
        #expect(sent["checksum"] as? String == "AAAAAA==")
        #expect(sent["state"] as? String == "done")
        #expect(sent["detected_at"] as? String == Self.iso(fixture.old))
        #expect(sent["bucket"] as? String == "acme-staging")
        #expect(sent["s3_key"] as? String == "outbound/invoice-4711.edi")
        #expect(sent["transfer_id"] as? String == "t-0000000000000001")
        #expect(sent["submitted_at"] as? String == Self.iso(fixture.old))
        #expect(sent["completed_at"] as? String == Self.iso(fixture.old))
        #expect(sent["finished_at"] as? String == Self.iso(fixture.old))
        #expect(sent["after_send"] as? String == "archived")
        #expect(sent["archive_path"] as? String == "\(watch)/.ferry/sent/2026-11-29/invoice-4711.edi")
        #expect(sent["held_path"] is NSNull)
        #expect(sent["attempts"] as? Int == 0)
        #expect(sent["last_error"] is NSNull)
        #expect(sent["in_doubt"] as? Bool == false)
        #expect(sent["possible_duplicates"] as? Int == 1)

        let kept = try #require(byName["price-list.csv"])
        #expect(kept["rule"] as? String == "kept")
        #expect(kept["state"] as? String == "done")
        #expect(kept["after_send"] as? String == "kept", "the rule's after_send when the pipeline recorded none")
        #expect(kept["archive_path"] is NSNull)
        #expect(kept["possible_duplicates"] as? Int == 0)

        #expect(byName["gone.edi"]?["state"] as? String == "dropped")
        #expect(byName["gone.edi"]?["last_error"] as? String == "vanished before upload")
        #expect(byName["gone.edi"]?["finished_at"] as? String == Self.iso(fixture.old))
        #expect(byName["gone.edi"]?["after_send"] is NSNull)
        #expect(byName["retried.edi"]?["state"] as? String == "retried")
        #expect(byName["retried.edi"]?["held_path"] as? String == "\(watch)/.ferry/failed/retried.edi")

        for name in ["detected", "staged", "submitting", "submitted", "completed", "failed", "quarantined"] {
            let record = try #require(byName["\(name).edi"])
            #expect(record["state"] as? String == name)
            #expect(record["detected_at"] as? String == Self.iso(fixture.recent))
            #expect(record["finished_at"] is NSNull, "\(name) is still going on")
            #expect(record["in_doubt"] as? Bool == false)
        }
        #expect(byName["detected.edi"]?["s3_key"] is NSNull)
        #expect(byName["staged.edi"]?["s3_key"] as? String == "outbound/staged.edi")
        #expect(byName["submitting.edi"]?["transfer_id"] is NSNull)
        #expect(byName["submitting.edi"]?["submitted_at"] as? String == Self.iso(fixture.recent), "a submitting file shows when its batch was journaled")
        #expect(byName["submitted.edi"]?["transfer_id"] as? String == "t-0000000000000013")
        #expect(byName["submitted.edi"]?["completed_at"] is NSNull)
        #expect(byName["completed.edi"]?["completed_at"] as? String == Self.iso(fixture.recent))
        #expect(byName["completed.edi"]?["after_send"] is NSNull, "after_send not done yet")
        #expect(byName["failed.edi"]?["attempts"] as? Int == 1)
        #expect(byName["failed.edi"]?["last_error"] as? String == "FILE_NOT_FOUND: no such directory, \"/inbound\"")
        #expect(byName["quarantined.edi"]?["held_path"] as? String == "\(watch)/.ferry/failed/quarantined.edi")
        #expect(byName["quarantined.edi"]?["last_error"] as? String == "out of retries: ACCESS_DENIED")
        let doubtful = try #require(byName["doubtful.edi"])
        #expect(doubtful["state"] as? String == "in_doubt")
        #expect(doubtful["in_doubt"] as? Bool == true)
        #expect(doubtful["held_path"] as? String == "\(watch)/.ferry/in-doubt/doubtful.edi")
        #expect(doubtful["last_error"] as? String == "timed out")
    }

    @Test func jsonShowsEveryInboundField() throws {
        let fixture = try Self.fixture()
        let (_, inbound) = try Self.json(fixture, ["--rule", "reports"])
        let keys: Set<String> = ["id", "rule", "remote_path", "size", "remote_modified", "state", "listed_at", "bucket", "s3_key", "transfer_id",
                                 "placed_path", "finished_at", "updated_at", "after_retrieve", "attempts", "last_error"]
        for record in inbound { #expect(Set(record.keys) == keys, "\(record)") }
        let byPath = Dictionary(inbound.map { ($0["remote_path"] as? String ?? "", $0) }, uniquingKeysWith: { first, _ in first })
        let daily = try #require(byPath["/outbound/reports/daily.csv"])
        #expect(daily["rule"] as? String == "reports")
        #expect(daily["size"] as? Int == 1234)
        #expect(daily["remote_modified"] as? String == "2026-11-30T23:59:00Z")
        #expect(daily["state"] as? String == "done")
        #expect(daily["listed_at"] as? String == Self.iso(fixture.recent))
        #expect(daily["bucket"] as? String == "acme-inbound")
        #expect(daily["s3_key"] as? String == "reports/daily.csv")
        #expect(daily["transfer_id"] as? String == "t-00000000000000a1")
        #expect(daily["placed_path"] as? String == fixture.root.path + "/in/daily.csv")
        #expect(daily["finished_at"] as? String == Self.iso(fixture.recent))
        #expect(daily["after_retrieve"] as? String == "move:/outbound/reports/archive")
        #expect(daily["attempts"] as? Int == 0)
        #expect(daily["last_error"] is NSNull)
        let broken = try #require(byPath["/outbound/reports/broken.csv"])
        #expect(broken["state"] as? String == "failed")
        #expect(broken["attempts"] as? Int == 1)
        #expect(broken["last_error"] as? String == "FILE_NOT_FOUND: gone")
        #expect(broken["after_retrieve"] is NSNull)
        #expect(broken["placed_path"] is NSNull)
        let fresh = try #require(byPath["/outbound/reports/new.csv"])
        #expect(fresh["state"] as? String == "listed")
        #expect(fresh["size"] is NSNull)
        #expect(fresh["remote_modified"] is NSNull)
        #expect(byPath["/outbound/reports/..%2fetc"]?["state"] as? String == "refused")
    }

    @Test func filtersByTimeStateRuleAndName() throws {
        let fixture = try Self.fixture()
        func names(_ arguments: [String]) throws -> [String] {
            let (outbound, inbound) = try Self.json(fixture, arguments)
            return outbound.map { Self.name($0["path"]) } + inbound.map { Self.name($0["remote_path"]) }
        }
        let recentOutbound = ["detected.edi", "staged.edi", "submitting.edi", "submitted.edi", "completed.edi", "failed.edi",
                              "quarantined.edi", "doubtful.edi"]
        let recentInbound = ["daily.csv", "broken.csv", "new.csv", "..%2fetc"]
        #expect(try names(["--since", "1d"]) == recentOutbound + recentInbound, "the old, finished journeys are left out")
        #expect(try names(["--since", "2d", "--rule", "invoices"]) == recentOutbound)
        #expect(try names(["--until", Self.iso(fixture.old.addingTimeInterval(60))]) == ["invoice-4711.edi", "price-list.csv", "gone.edi", "retried.edi"])
        #expect(try names(["--state", "done"]) == ["invoice-4711.edi", "price-list.csv", "daily.csv"])
        #expect(try names(["--state", "in-doubt", "--state", "quarantined"]) == ["quarantined.edi", "doubtful.edi"])
        #expect(try names(["--state", "refused"]) == ["..%2fetc"])
        #expect(try names(["invoice-4711.edi"]) == ["invoice-4711.edi"])
        #expect(try names([fixture.root.path + "/out/failed.edi", "/outbound/reports/daily.csv"]) == ["failed.edi", "daily.csv"])
        #expect(try names(["no-such-file.edi"]) == [])

        let bad = try Self.history(fixture, ["--since", "last tuesday"])
        #expect(bad.status == 64, "a usage error")
        #expect(bad.stderr.contains("'last tuesday' is not a time"), "\(bad.stderr)")
        let badState = try Self.history(fixture, ["--state", "sent"])
        #expect(badState.status == 64)
        #expect(badState.stderr.contains("unknown state 'sent': use one of done, detected"), "\(badState.stderr)")
    }

    @Test func csvHasAHeaderAndOneQuotedRowPerVersion() throws {
        let fixture = try Self.fixture()
        let result = try Self.history(fixture, ["--csv"])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = Self.parseCSV(result.stdout)
        let header = try #require(rows.first)
        #expect(header == ["direction", "id", "rule", "state", "path", "size", "checksum", "remote_modified", "detected_at", "bucket", "s3_key",
                           "transfer_id", "submitted_at", "completed_at", "finished_at", "after", "archive_path", "placed_path", "held_path",
                           "attempts", "last_error", "in_doubt", "possible_duplicates"])
        let records = rows.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) }
        #expect(records.count == 16)
        #expect(records.allSatisfy { $0.count == header.count })
        let failed = try #require(records.first { $0["path"]?.hasSuffix("/failed.edi") == true })
        #expect(failed["direction"] == "outbound")
        #expect(failed["last_error"] == "FILE_NOT_FOUND: no such directory, \"/inbound\"", "commas and quotes survive the quoting")
        #expect(failed["attempts"] == "1")
        #expect(failed["transfer_id"] == "t-0000000000000015")
        let sent = try #require(records.first { $0["path"]?.hasSuffix("/invoice-4711.edi") == true })
        #expect(sent["after"] == "archived")
        #expect(sent["possible_duplicates"] == "1")
        #expect(sent["detected_at"] == Self.iso(fixture.old))
        let daily = try #require(records.first { $0["path"] == "/outbound/reports/daily.csv" })
        #expect(daily["direction"] == "inbound")
        #expect(daily["remote_modified"] == "2026-11-30T23:59:00Z")
        #expect(daily["placed_path"] == fixture.root.path + "/in/daily.csv")
        #expect(daily["after"] == "move:/outbound/reports/archive")
    }

    @Test func textNamesWhatMattersForEachFile() throws {
        let fixture = try Self.fixture()
        let result = try Self.history(fixture, ["invoice-4711.edi", "doubtful.edi"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("transfer t-0000000000000001"), "\(result.stdout)")
        #expect(result.stdout.contains("after_send archived to \(fixture.root.path)/out/.ferry/sent/2026-11-29/invoice-4711.edi"), "\(result.stdout)")
        #expect(result.stdout.contains("POSSIBLE DUPLICATE"), "\(result.stdout)")
        #expect(result.stdout.contains("set aside at \(fixture.root.path)/out/.ferry/in-doubt/doubtful.edi"), "\(result.stdout)")
    }

    /// RFC 4180: quoted fields may hold commas, quotes (doubled) and line breaks.
    static func parseCSV(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = "", quoted = false
        var characters = Array(text)[...]
        while let character = characters.popFirst() {
            if quoted {
                if character == "\"" {
                    if characters.first == "\"" { field.append("\""); characters.removeFirst() } else { quoted = false }
                } else {
                    field.append(character)
                }
            } else if character == "\"" {
                quoted = true
            } else if character == "," {
                row.append(field); field = ""
            } else if character == "\r\n" || character == "\n" {
                row.append(field); field = ""
                rows.append(row); row = []
            } else {
                field.append(character)
            }
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
