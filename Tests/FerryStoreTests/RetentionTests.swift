import Foundation
import Logging
import Synchronization
import Testing
import FerryStore
import FerryTestSupport
import FerrySystem

/// A clock the tests move by hand, so rows can be made old without waiting (retention's minimum is 1 h).
final class ManualClock: Sendable {
    private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
    var closure: @Sendable () -> Date { { self.now } }
}

/// Drives journal rows through their states the way the outbound pipeline does.
struct JournalDriver {
    let journal: Journal

    func newFile(_ name: String, rule: String = "invoices", inode: UInt64? = nil, size: Int64 = 10) -> NewOutboundFile {
        NewOutboundFile(rule: rule, path: "/srv/out/\(name)", relativePath: name, version: FileVersion(device: 1, inode: inode ?? UInt64(abs(name.hashValue) % 1_000_000 + 1),
                                             size: size, mtimeNanoseconds: 1), remoteDirectory: "/in")
    }

    /// Detected → staged → submitting → submitted(transferID) → completed → done, in one batch.
    @discardableResult
    func send(_ files: [NewOutboundFile], transferID: String, dispose: Bool = true) throws -> (ids: [Int64], batch: Int64) {
        let rows = try journal.recordDetected(files)
        try journal.markStaged(rows.map { Journal.StagedCopy(id: $0.id, bucket: "staging", key: "out/\($0.relativePath)", checksum: "crc-\($0.id)") })
        let batch = try journal.createBatch(rule: files[0].rule, connector: "acme", connectorID: "c-1", remoteDirectory: "/in", fileIDs: rows.map(\.id))
        try journal.markSubmitted(batch: batch, transferID: transferID)
        try journal.recordOutcomes(batch: batch, Dictionary(uniqueKeysWithValues: rows.map { ($0.id, FileOutcome.completed) }))
        if dispose { try journal.markDone(rows.map(\.id)) }
        return (rows.map(\.id), batch)
    }
}

struct RetentionJournalTests {
    let logger = Logger(label: "test")

    @Test func aNewJournalReturnsFreedPagesToTheFileSystem() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        #expect(journal.returnsFreePages, "auto_vacuum must be INCREMENTAL from the first table on")
    }

    @Test func countsFollowEveryTransitionAndDeletion() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        let driver = JournalDriver(journal: journal)
        try driver.send((0..<3).map { driver.newFile("a\($0)") }, transferID: "t-1")
        let waiting = try journal.recordDetected([driver.newFile("w1"), driver.newFile("w2")])
        try journal.markDropped(waiting[0].id, reason: "vanished")
        _ = try journal.recordDetected([driver.newFile("a0")])  // the same version again: ignored, not counted
        #expect(try journal.outboundCounts() == ["invoices": [.done: 3, .detected: 1, .dropped: 1]])
        clock.advance(7200)
        let candidates = try journal.outboundPruneCandidates(state: .done, finishedBefore: clock.now.addingTimeInterval(-3600),
                                                              after: .start, limit: 2)
        #expect(candidates.count == 2, "the limit bounds one step")
        let step = try journal.pruneOutbound(candidates.map(\.id), finishedBefore: clock.now.addingTimeInterval(-3600))
        #expect(step.files == 2)
        #expect(step.batches == 0, "the batch still has a file")
        #expect(try journal.outboundCounts() == ["invoices": [.done: 1, .detected: 1, .dropped: 1]])
    }

    @Test func onlyOldFinishedRowsArePrunedAndTheirBatchGoesWithTheLastOne() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        let driver = JournalDriver(journal: journal)
        let old = try driver.send([driver.newFile("old1"), driver.newFile("old2")], transferID: "t-old")
        let stuck = try journal.recordDetected([driver.newFile("stuck")])  // live: never pruned, whatever its age
        let quarantined = try journal.recordDetected([driver.newFile("bad")])
        try journal.markQuarantined(quarantined[0].id, reason: "out of retries", quarantinePath: "/srv/out/.ferry/failed/bad")
        clock.advance(10 * 3600)
        let young = try driver.send([driver.newFile("young")], transferID: "t-young")
        let cutoff = clock.now.addingTimeInterval(-3600)

        let candidates = try journal.outboundPruneCandidates(state: .done, finishedBefore: cutoff, after: .start, limit: 500)
        #expect(candidates.map(\.id) == old.ids)
        #expect(candidates.first?.path == "/srv/out/old1")
        // A candidate put back meanwhile (journaled afresh as a new version) is no longer finished: it stays.
        let step = try journal.pruneOutbound(candidates.map(\.id) + stuck.map(\.id) + young.ids, finishedBefore: cutoff)
        #expect(step.files == 2)
        #expect(step.batches == 1, "the old batch has no file left")
        #expect(try journal.outboundFile(stuck[0].id)?.state == .detected)
        #expect(try journal.outboundFile(quarantined[0].id)?.state == .quarantined)
        #expect(try journal.outboundFile(young.ids[0])?.state == .done)
        #expect(try journal.batches(in: .finished).map(\.id) == [young.batch])
    }

    /// Pruning every finished row must not let ids start again: the outbound backlog reads `detected` rows
    /// by id above a cursor, and took the files of a new wave (ids 1…200 again) for ones it had handed on.
    @Test func idsNeverGoBackWhenPruningEmptiesTheJournal() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        let driver = JournalDriver(journal: journal)
        let sent = try driver.send((0..<3).map { driver.newFile("s\($0)") }, transferID: "t-1")
        clock.advance(7200)
        let cutoff = clock.now.addingTimeInterval(-3600)
        let step = try journal.pruneOutbound(sent.ids, finishedBefore: cutoff)
        #expect(step.files == 2, "the newest row stays")
        let next = try #require(try journal.recordDetected([driver.newFile("new")]).first)
        #expect(next.id > sent.ids.max()!, "a new row's id \(next.id) is above every id handed out (\(sent.ids))")
        clock.advance(7200)
        _ = try driver.send([driver.newFile("later")], transferID: "t-2")
        clock.advance(7200)
        let all = try journal.outboundPruneCandidates(state: .done, finishedBefore: clock.now.addingTimeInterval(-3600), after: .start, limit: 500)
        _ = try journal.pruneOutbound(all.map(\.id), finishedBefore: clock.now.addingTimeInterval(-3600))
        #expect(try journal.outboundFile(sent.ids.max()!) == nil, "the old newest row goes once a newer one exists")
    }

    @Test func anAbandonedBatchWithoutFilesIsPrunedOnceOld() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        let driver = JournalDriver(journal: journal)
        let rows = try journal.recordDetected([driver.newFile("x")])
        let batch = try journal.createBatch(rule: "invoices", connector: "acme", connectorID: "c-1", remoteDirectory: nil, fileIDs: [rows[0].id])
        try journal.abandonBatch(batch, retryAfter: clock.now, error: "throttled")
        let (early, _) = try journal.pruneEmptyBatches(finishedBefore: clock.now.addingTimeInterval(-3600), afterID: 0, limit: 10)
        #expect(early.batches == 0, "too young")
        clock.advance(7200)
        let (late, next) = try journal.pruneEmptyBatches(finishedBefore: clock.now.addingTimeInterval(-3600), afterID: 0, limit: 10)
        #expect(late.batches == 1)
        #expect(next == nil)
        #expect(try journal.batches(in: .finished).isEmpty)
        #expect(try journal.outboundFile(rows[0].id)?.state == .staged, "the file itself is live and stays")
    }

    @Test func inboundDoneRowsOfKeepRulesStayWhileNewestOfTheirPath() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        func retrieve(_ rule: String, _ path: String, size: Int64) throws {
            let version = RemoteVersion(remotePath: path, size: size, modified: "2026-01-01T00:00:0\(size)Z")
            let files = try journal.recordListed(rule: rule, [version], maxAttempts: 3)
            let batch = try journal.beginRetrieval(files.map { ($0.id, "inbound", "reports/\(size)") })
            try journal.markRetrieving(batch: batch, transferID: "t-\(rule)-\(size)")
            try journal.recordRetrievalOutcomes(Dictionary(uniqueKeysWithValues: files.map { ($0.id, FileOutcome.completed) }))
            for file in files {
                try journal.markDownloaded(file.id, localPath: "/srv/in/\(size)")
                try journal.markInboundDone(file.id)
            }
        }
        try retrieve("kept", "/out/a.csv", size: 1)
        try retrieve("kept", "/out/a.csv", size: 2)  // the partner rewrote it: v1 is no longer listed
        try retrieve("kept", "/out/b.csv", size: 3)
        try retrieve("tidied", "/out/c.csv", size: 4)
        clock.advance(7200)
        let (step, next) = try journal.pruneInbound(finishedBefore: clock.now.addingTimeInterval(-3600), keepingRules: ["kept"],
                                                    after: .start, limit: 500)
        #expect(next == nil)
        #expect(step.files == 2, "a.csv v1 and the tidied rule's c.csv")
        #expect(try journal.isKnown(rule: "kept", RemoteVersion(remotePath: "/out/a.csv", size: 2, modified: "2026-01-01T00:00:02Z")))
        #expect(try journal.isKnown(rule: "kept", RemoteVersion(remotePath: "/out/b.csv", size: 3, modified: "2026-01-01T00:00:03Z")))
        #expect(try !journal.isKnown(rule: "kept", RemoteVersion(remotePath: "/out/a.csv", size: 1, modified: "2026-01-01T00:00:01Z")))
        #expect(try !journal.isKnown(rule: "tidied", RemoteVersion(remotePath: "/out/c.csv", size: 4, modified: "2026-01-01T00:00:04Z")))
        #expect(try journal.inboundCounts() == ["kept": [.done: 2]])
        #expect(try journal.inboundDone(since: clock.now.addingTimeInterval(-86_400)) == ["kept": 2])
    }

    @Test func freedPagesAreReturnedAndTheFileShrinks() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: logger, now: clock.closure)
        let driver = JournalDriver(journal: journal)
        for wave in 0..<20 {
            try driver.send((0..<10).map { driver.newFile("w\(wave)-\($0)-" + String(repeating: "x", count: 200)) }, transferID: "t-\(wave)")
        }
        let before = try journal.storageFigures()
        clock.advance(7200)
        let cutoff = clock.now.addingTimeInterval(-3600)
        var cursor = PruneCursor.start
        while true {
            let candidates = try journal.outboundPruneCandidates(state: .done, finishedBefore: cutoff, after: cursor, limit: 50)
            guard let last = candidates.last else { break }
            cursor = PruneCursor(finishedAt: last.finishedAt, id: last.id)
            _ = try journal.pruneOutbound(candidates.map(\.id), finishedBefore: cutoff)
        }
        #expect(try journal.freePages() > 0)
        while try journal.returnFreePages(8).remaining > 0 {}
        let after = try journal.storageFigures()
        #expect(after.outboundRows == 1, "all but the newest row, which keeps ids growing")
        #expect(after.batches == 1, "with its batch")
        #expect(after.freePages == 0)
        #expect(after.bytes < before.bytes, "before \(before.bytes) B, after \(after.bytes) B")
    }
}
