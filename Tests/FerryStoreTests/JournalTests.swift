import Foundation
import Logging
import Testing
import FerryStore
import FerryTestSupport
import FerrySystem

struct JournalTests {
    let logger = Logger(label: "test")

    func newFile(_ name: String, size: Int64 = 10, mtime: Int64 = 1, rule: String = "invoices") -> NewOutboundFile {
        NewOutboundFile(rule: rule, path: "/srv/out/\(name)", relativePath: name, version: FileVersion(device: 1, inode: UInt64(name.hashValue & 0xffff),
                        size: size, mtimeNanoseconds: mtime), remoteDirectory: "/in")
    }

    @Test func sameVersionIsJournaledOnce() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let first = try journal.recordDetected([newFile("a.edi"), newFile("b.edi")])
        #expect(first.map(\.relativePath) == ["a.edi", "b.edi"])
        #expect(first.allSatisfy { $0.state == .detected })
        #expect(try first.map { try journal.outboundFile($0.id) } == first, "what recordDetected returns is what the journal holds")
        let again = try journal.recordDetected([newFile("a.edi"), newFile("a.edi", size: 11)])
        #expect(again.count == 1, "only the rewritten version is new")
        #expect(again.first?.size == 11)
        // A version's identity is (path, device, inode, size, mtime), whichever rule journaled it: renaming a rule resends nothing.
        #expect(try journal.isKnown(path: "/srv/out/a.edi", version: FileVersion(device: 1, inode: UInt64("a.edi".hashValue & 0xffff), size: 10, mtimeNanoseconds: 1)))
        #expect(try !journal.isKnown(path: "/srv/out/a.edi", version: FileVersion(device: 1, inode: UInt64("a.edi".hashValue & 0xffff), size: 12, mtimeNanoseconds: 1)))
        #expect(try !journal.isKnown(path: "/srv/out/b.edi", version: FileVersion(device: 1, inode: UInt64("a.edi".hashValue & 0xffff), size: 10, mtimeNanoseconds: 1)))
    }

    /// A version is four columns (device, inode, size, mtime_ns): what is journaled reads back as the same
    /// FileVersion, also with device and inode numbers above Int64.max (stored by bit pattern), and is
    /// known by exactly that version — another device, inode or mtime is another version.
    @Test func aVersionRoundTripsThroughItsFourColumns() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let version = FileVersion(device: UInt64.max - 1, inode: 1 << 63 | 42, size: 4711, mtimeNanoseconds: 1_700_000_000_123_456_789)
        let new = NewOutboundFile(rule: "invoices", path: "/srv/out/big.edi", relativePath: "big.edi", version: version, remoteDirectory: nil)
        let row = try #require(try journal.recordDetected([new]).first)
        #expect(row.version == version)
        #expect(try journal.outboundFile(row.id)?.version == version)
        #expect(try journal.isKnown(path: "/srv/out/big.edi", version: version))
        for other in [FileVersion(device: 1, inode: version.inode, size: 4711, mtimeNanoseconds: version.mtimeNanoseconds),
                      FileVersion(device: version.device, inode: 42, size: 4711, mtimeNanoseconds: version.mtimeNanoseconds),
                      FileVersion(device: version.device, inode: version.inode, size: 4711, mtimeNanoseconds: version.mtimeNanoseconds + 1)] {
            #expect(try !journal.isKnown(path: "/srv/out/big.edi", version: other), "\(other)")
        }
    }

    /// A sent (done) version put back at its path is a new arrival where the rule archives or deletes
    /// what it sent, and known where it keeps it; journaling it again retires the done row.
    @Test func aDoneVersionPutBackIsNewUnlessTheRuleKeepsSentFiles() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let file = try #require(try journal.recordDetected([newFile("a.edi")]).first)
        try journal.markDone([file.id])
        let inode = UInt64("a.edi".hashValue & 0xffff)
        #expect(try journal.isKnown(path: "/srv/out/a.edi", version: FileVersion(device: 1, inode: inode, size: 10, mtimeNanoseconds: 1), doneCounts: true))
        #expect(try !journal.isKnown(path: "/srv/out/a.edi", version: FileVersion(device: 1, inode: inode, size: 10, mtimeNanoseconds: 1), doneCounts: false))
        var again = newFile("a.edi")
        again.supersedesDone = true
        let second = try journal.recordDetected([again])
        #expect(second.count == 1, "journaled afresh")
        #expect(second.first?.id != file.id)
        #expect(try journal.outboundFile(file.id)?.state == .retried, "the done row is history")
    }

    /// A report of a file that was sent and archived while the report was on its way (the start-up scan
    /// saw it before the recovered batch sent it) is not a file put back: before, the send's done row
    /// became `retried` and the late report a row `dropped` at upload (the file gone) — the audit trail
    /// said the file was not sent (found by OutboundBacklogPipelineTests under load).
    @Test func aReportOlderThanTheSendOfItsVersionIsNotAFilePutBack() throws {
        let dir = try TempDirectory()
        let clock = TestClock(Date(timeIntervalSince1970: 1_000))
        let journal = try Journal(directory: dir.path, logger: logger, now: { clock.now })
        let file = try #require(try journal.recordDetected([newFile("a.edi")]).first)
        clock.now = Date(timeIntervalSince1970: 1_010)
        try journal.markDone([file.id])
        var stale = newFile("a.edi")
        stale.supersedesDone = true
        stale.observedAt = Date(timeIntervalSince1970: 1_005)  // seen before it was sent and archived
        #expect(try journal.recordDetected([stale]).isEmpty, "the send's own file: nothing new")
        #expect(try journal.outboundFile(file.id)?.state == .done, "the send stays done")
        var putBack = stale
        putBack.observedAt = Date(timeIntervalSince1970: 1_020)  // seen after: put back
        #expect(try journal.recordDetected([putBack]).count == 1)
        #expect(try journal.outboundFile(file.id)?.state == .retried)
    }

    /// The journal's clock, set by the test.
    final class TestClock: @unchecked Sendable {
        var now: Date
        init(_ now: Date) { self.now = now }
    }

    @Test func aFileWalksEveryStateAndSurvivesReopen() throws {
        let dir = try TempDirectory()
        var journal: Journal? = try Journal(directory: dir.path, logger: logger)
        let files = try journal!.recordDetected((0..<3).map { newFile("f\($0)") })
        for file in files { try journal!.markStaged(file.id, bucket: "b", key: "k/\(file.id)", checksum: "c") }
        let batch = try journal!.createBatch(rule: "invoices", connector: "acme", connectorID: "c-0123456789abcdef0",
                                             remoteDirectory: "/in", fileIDs: files.map(\.id))
        #expect(try journal!.batches(in: .submitting).map(\.fileIDs) == [files.map(\.id)])
        // A restart here must see the batch as submitting: StartFileTransfer may have been sent.
        journal = nil
        journal = try Journal(directory: dir.path, logger: logger)
        #expect(try journal!.batches(in: .submitting).map(\.id) == [batch])
        try journal!.markSubmitted(batch: batch, transferID: "t-1")
        #expect(try journal!.outboundFiles(in: [.submitted]).allSatisfy { $0.transferID == "t-1" })
        try journal!.recordOutcomes(batch: batch, [files[0].id: .completed, files[1].id: .failed(code: "FILE_NOT_FOUND", message: "no dir")])
        #expect(try journal!.batches(in: .submitted).count == 1, "one file still in flight keeps the batch open")
        try journal!.recordOutcomes(batch: batch, [files[2].id: .completed])
        #expect(try journal!.batches(in: .submitted).isEmpty)
        let failed = try #require(try journal!.outboundFile(files[1].id))
        #expect(failed.state == .failed)
        #expect(failed.attempts == 1)
        #expect(failed.lastError == "FILE_NOT_FOUND: no dir")
        try journal!.requeue([failed.id], after: Date(), error: nil)
        #expect(try journal!.outboundFile(failed.id)?.state == .staged)
        try journal!.markDone([files[0].id, files[2].id])
        let counts = try journal!.outboundCounts()
        #expect(counts["invoices"]?[.done] == 2)
        #expect(counts["invoices"]?[.staged] == 1)
        #expect(try journal!.outboundCompleted(since: Date().addingTimeInterval(-60))["invoices"] == 2)
    }

    @Test func uploadsRecordedSoonAreWrittenWithTheirBatchOrByAFlush() throws {
        let dir = try TempDirectory()
        var journal: Journal? = try Journal(directory: dir.path, logger: logger)
        let files = try journal!.recordDetected((0..<4).map { newFile("s\($0)") })
        func copy(_ index: Int) -> Journal.StagedCopy {
            Journal.StagedCopy(id: files[index].id, bucket: "b", key: "k/\(files[index].id)", checksum: "c\(index)")
        }
        #expect(journal!.markStagedSoon(copy(0)), "the first waiting upload asks for a flush")
        #expect(!journal!.markStagedSoon(copy(1)), "later ones ride along")
        #expect(try journal!.outboundFile(files[0].id)?.state == .detected, "not written yet")
        // A batch is created in the same transaction as the uploads it names.
        let batch = try journal!.createBatch(rule: "invoices", connector: "acme", connectorID: "c-0123456789abcdef0",
                                             remoteDirectory: "/in", fileIDs: [files[0].id])
        let sent = try #require(try journal!.outboundFile(files[0].id))
        #expect(sent.state == .submitting && sent.key == "k/\(files[0].id)" && sent.bucket == "b" && sent.batchID == batch)
        #expect(try journal!.outboundFile(files[1].id)?.state == .staged, "every waiting upload went with that transaction")
        // A flush writes what waits; a stale copy never moves a file back from a later state.
        #expect(journal!.markStagedSoon(copy(2)))
        journal!.markStagedSoon(copy(0))
        try journal!.flushStaged()
        #expect(try journal!.outboundFile(files[2].id)?.key == "k/\(files[2].id)")
        #expect(try journal!.outboundFile(files[0].id)?.state == .submitting)
        // What was never written is lost with the process: the file is still detected, to be uploaded again.
        journal!.markStagedSoon(copy(3))
        journal = nil
        journal = try Journal(directory: dir.path, logger: logger)
        #expect(try journal!.outboundFile(files[3].id)?.state == .detected)
        #expect(try journal!.outboundFile(files[2].id)?.state == .staged)
    }

    /// In-doubt files a listing found on the partner become `completed` (after_send follows); the batch
    /// stays open while another of its files is still `submitting`, and the found file stops counting.
    @Test func filesFoundOnThePartnerAreCompletedAndFinishTheirBatch() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let files = try journal.recordDetected([newFile("found.edi"), newFile("absent.edi")])
        for file in files { try journal.markStaged(file.id, bucket: "b", key: "k/\(file.id)/\(file.relativePath)", checksum: "c") }
        let batch = try journal.createBatch(rule: "invoices", connector: "acme", connectorID: "c-0123456789abcdef0", remoteDirectory: "/in",
                                            fileIDs: files.map(\.id))
        let completed = try journal.recordFoundOnPartner(batch: batch, [files[0].id])
        #expect(completed.map(\.id) == [files[0].id] && completed.allSatisfy { $0.state == .completed })
        #expect(try journal.batches(in: .submitting).map(\.fileIDs) == [[files[1].id]], "the absent file is still in doubt, alone")
        try journal.markSubmitted(batch: batch, transferID: "t-2")
        #expect(try journal.outboundFile(files[0].id)?.state == .completed, "a resend of the rest does not touch it")
        try journal.recordOutcomes(batch: batch, [files[1].id: .completed])
        #expect(try journal.batches(in: .submitted).isEmpty && journal.batches(in: .submitting).isEmpty)
    }

    /// A same-name same-size file on the partner proves nothing when another version of that remote path
    /// and size may have been sent; versions never submitted (or of another size or folder) do not count.
    @Test func lookalikesAreVersionsOfTheSameRemoteFolderAndSizePastStaged() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let first = try #require(try journal.recordDetected([newFile("a.edi", mtime: 1)]).first)
        let second = try #require(try journal.recordDetected([newFile("a.edi", mtime: 2)]).first)
        _ = try journal.recordDetected([newFile("a.edi", size: 11, mtime: 3)])
        #expect(try journal.versionsThatMayHaveBeenSent(remoteDirectory: "/in", size: 10, excluding: second.id).isEmpty, "the first was never submitted")
        try journal.markStaged(first.id, bucket: "b", key: "k/\(first.id)/a.edi", checksum: "c")
        _ = try journal.createBatch(rule: "invoices", connector: "acme", connectorID: "c-0123456789abcdef0", remoteDirectory: "/in", fileIDs: [first.id])
        #expect(try journal.versionsThatMayHaveBeenSent(remoteDirectory: "/in", size: 10, excluding: second.id).map(\.id) == [first.id])
        #expect(try journal.versionsThatMayHaveBeenSent(remoteDirectory: "/elsewhere", size: 10, excluding: second.id).isEmpty)
    }

    @Test func abandonedBatchReturnsFilesToStaged() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let files = try journal.recordDetected([newFile("x")])
        try journal.markStaged(files[0].id, bucket: "b", key: "k", checksum: "c")
        let batch = try journal.createBatch(rule: "invoices", connector: "acme", connectorID: "c-0123456789abcdef0", remoteDirectory: nil, fileIDs: [files[0].id])
        try journal.abandonBatch(batch, retryAfter: Date(timeIntervalSinceNow: 5), error: "ThrottlingException")
        let file = try #require(try journal.outboundFile(files[0].id))
        #expect(file.state == .staged)
        #expect(file.batchID == nil)
        #expect(file.lastError == "ThrottlingException")
        #expect(try journal.batches(in: .submitting).isEmpty)
    }

    @Test func countersPersist() throws {
        let dir = try TempDirectory()
        do {
            let journal = try Journal(directory: dir.path, logger: logger)
            try journal.increment("possible_duplicates", by: 3)
        }
        let journal = try Journal(directory: dir.path, logger: logger)
        try journal.increment("possible_duplicates")
        #expect(try journal.counter("possible_duplicates") == 4)
        #expect(try journal.counter("never") == 0)
    }

    @Test func newerSchemaIsRefusedWithAdvice() throws {
        let dir = try TempDirectory()
        _ = try Journal(directory: dir.path, logger: logger)
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        sqlite.arguments = [dir.path + "/journal.db", "INSERT INTO schema_version VALUES (99)"]
        try sqlite.run()
        sqlite.waitUntilExit()
        #expect(sqlite.terminationStatus == 0, "needs the sqlite3 command: make deps")
        let error = #expect(throws: JournalError.self) { try Journal(directory: dir.path, logger: logger) }
        #expect(error?.message.contains("newer than this ferry understands") == true)
    }

    @Test func damagedJournalIsReportedNotOverwritten() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/journal.db"
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: JournalError.self) { try Journal(directory: dir.path, logger: logger) }
        #expect(error != nil)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(repeating: 0x41, count: 8192), "the damaged file is left for the operator")
    }

    @Test func readOnlyOpenSeesWritersCommits() throws {
        let dir = try TempDirectory()
        let writer = try Journal(directory: dir.path, logger: logger)
        _ = try writer.recordDetected([newFile("a")])
        let reader = try Journal(readOnlyAt: dir.path + "/journal.db", logger: logger)
        #expect(try reader.outboundCounts()["invoices"]?[.detected] == 1)
        _ = try writer.recordDetected([newFile("b")])
        #expect(try reader.outboundCounts()["invoices"]?[.detected] == 2)
    }
}
