import Foundation
import Logging
import Testing
@testable import FerryStore
import FerryTestSupport

struct HistoryJournalTests {
    let logger = Logger(label: "test")

    /// A journey is in a window when it overlaps it: finished after `since` (or still going on) and
    /// detected before `until`.
    @Test func theWindowSelectsJourneysThatOverlapIt() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        let driver = JournalDriver(journal: journal)
        let start = clock.now
        try driver.send([driver.newFile("early.edi")], transferID: "t-early")            // detected and done at start
        let longRunning = try journal.recordDetected([driver.newFile("slow.edi")])         // detected at start, done at +3h
        clock.advance(3 * 3600)
        try journal.markDone(longRunning.map(\.id))
        _ = try journal.recordDetected([driver.newFile("waiting.edi")])                   // detected at +3h, still waiting
        clock.advance(3600)
        try driver.send([driver.newFile("late.edi")], transferID: "t-late")              // at +4h

        func names(_ filter: HistoryFilter) throws -> [String] {
            try journal.outboundHistory(filter).map { ($0.path as NSString).lastPathComponent }
        }
        #expect(try names(HistoryFilter()) == ["early.edi", "slow.edi", "waiting.edi", "late.edi"])
        #expect(try names(HistoryFilter(since: start.addingTimeInterval(3600))) == ["slow.edi", "waiting.edi", "late.edi"])
        #expect(try names(HistoryFilter(until: start.addingTimeInterval(3600))) == ["early.edi", "slow.edi"])
        #expect(try names(HistoryFilter(since: start.addingTimeInterval(3600), until: start.addingTimeInterval(2 * 3600))) == ["slow.edi"])
        #expect(try names(HistoryFilter(outboundStates: [.detected])) == ["waiting.edi"])
        #expect(try names(HistoryFilter(names: ["late.edi", "/srv/out/early.edi"])) == ["early.edi", "late.edi"])
        #expect(try names(HistoryFilter(rule: "other")) == [])
        #expect(try journal.outboundHistory(HistoryFilter(inboundStates: [.done])).isEmpty, "an inbound state filter selects no outbound row")
        let late = try #require(try journal.outboundHistory(HistoryFilter(names: ["late.edi"])).first)
        #expect(late.transferID == "t-late")
        #expect(late.submittedAt == clock.now)
        #expect(late.completedAt == clock.now)
        #expect(late.finishedAt == clock.now)
        #expect(late.key == "out/late.edi")
        let waiting = try #require(try journal.outboundHistory(HistoryFilter(names: ["waiting.edi"])).first)
        #expect(waiting.finishedAt == nil, "still going on")
        #expect(waiting.state == .detected)
    }

    /// The queries behind status and history are index searches, never scans of the whole table.
    @Test func statusAndHistoryQueriesUseIndexes() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        func plan(_ sql: String) throws -> String {
            try journal.locked {
                try journal.connection.statement("EXPLAIN QUERY PLAN " + sql).query([]) { $0.text(3) ?? "" }.joined(separator: " | ")
            }
        }
        let finishedSince = try plan("SELECT rule, count(*) FROM outbound_files WHERE state IN \(Journal.finishedOutboundSQL) AND state = 'done' AND updated_at >= 0 GROUP BY rule")
        #expect(finishedSince.contains("outbound_files_finished"), "\(finishedSince)")
        let inboundSince = try plan("SELECT rule, count(*) FROM inbound_files WHERE state IN \(Journal.finishedInboundSQL) AND state = 'done' AND updated_at >= 0 GROUP BY rule")
        #expect(inboundSince.contains("inbound_files_finished"), "\(inboundSince)")
        let byName = try plan("SELECT id FROM outbound_files WHERE \(Journal.baseNameSQL("path")) = 'x.edi'")
        #expect(byName.contains("outbound_files_name"), "\(byName)")
        let remoteByName = try plan("SELECT id FROM inbound_files WHERE \(Journal.baseNameSQL("remote_path")) = 'x.csv'")
        #expect(remoteByName.contains("inbound_files_name"), "\(remoteByName)")
        let live = try plan("SELECT id FROM outbound_files WHERE state = 'detected'")
        #expect(live.contains("outbound_files_state"), "\(live)")
        let counts = try plan("SELECT rule, state, n FROM state_counts WHERE direction = 'outbound' AND n > 0")
        #expect(!counts.contains("outbound_files"), "\(counts)")
    }

    /// A journal of schema 2 (before retention) migrates: the counters start from its rows and one
    /// VACUUM switches incremental vacuum on.
    @Test func aSchemaTwoJournalMigratesAndVacuumsOnce() throws {
        let dir = try TempDirectory()
        do {
            let connection = try SQLiteConnection(path: dir.path + "/journal.db", readOnly: false)
            try connection.execute("PRAGMA journal_mode=WAL")
            try connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for (index, migration) in Journal.migrations.prefix(2).enumerated() {
                for statement in migration { try connection.execute(statement) }
                try connection.execute("INSERT INTO schema_version VALUES (\(index + 1))")
            }
            for index in 0..<300 {
                try connection.execute("""
                    INSERT INTO outbound_files (rule, path, relative_path, device, inode, size, mtime_ns, state, created_at, updated_at)
                    VALUES ('old', '/srv/out/\(index)', '\(index)', 1, \(index), 1, 1, '\(index < 200 ? "done" : "failed")', 1, 1)
                    """)
            }
            #expect(try connection.statement("PRAGMA auto_vacuum").query([]) { $0.int(0) }.first == 0)
        }
        let journal = try Journal(directory: dir.path, logger: logger)
        #expect(journal.returnsFreePages)
        #expect(try journal.outboundCounts() == ["old": [.done: 200, .failed: 100]])
        #expect(try journal.outboundHistory(HistoryFilter(names: ["7"])).first?.state == .done)
    }
}
