import Foundation
import Logging
import Testing
import FerryStore
import FerryTestSupport

struct InboundJournalTests {
    let logger = Logger(label: "test")

    func version(_ name: String, size: Int64? = 10, modified: String? = "2026-01-02T03:04:05Z") -> RemoteVersion {
        RemoteVersion(remotePath: "/outbound/\(name)", size: size, modified: modified)
    }

    @Test func aVersionIsRetrievedOnceAndAgainOnlyWhenItChanges() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let first = try journal.recordListed(rule: "reports", [version("a.csv"), version("b.csv")], maxAttempts: 5)
        #expect(first.map(\.name) == ["a.csv", "b.csv"])
        #expect(first.allSatisfy { $0.state == .listed })
        // Still `listed` (say a poll died before asking for them): the next poll picks them up again.
        #expect(try journal.recordListed(rule: "reports", [version("a.csv")], maxAttempts: 5).map(\.id) == [first[0].id])
        for file in first { try walkToDone(journal, file.id) }
        #expect(try journal.recordListed(rule: "reports", [version("a.csv"), version("b.csv")], maxAttempts: 5).isEmpty,
                "done versions are never retrieved again")
        let changed = try journal.recordListed(rule: "reports", [version("a.csv", size: 11), version("b.csv", modified: "2026-01-02T03:04:06Z")], maxAttempts: 5)
        #expect(changed.count == 2, "a new size or a new timestamp is a new version")
        #expect(try journal.recordListed(rule: "other", [version("a.csv")], maxAttempts: 5).count == 1, "dedupe is per rule")
    }

    @Test func versionsWithoutSizeOrTimestampAreDedupedToo() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let bare = version("x", size: nil, modified: nil)
        let first = try #require(try journal.recordListed(rule: "r", [bare], maxAttempts: 5).first)
        #expect(first.size == nil)
        #expect(first.modified == nil)
        try walkToDone(journal, first.id)
        #expect(try journal.recordListed(rule: "r", [bare], maxAttempts: 5).isEmpty)
        #expect(try journal.isKnown(rule: "r", bare))
    }

    func walkToDone(_ journal: Journal, _ id: Int64) throws {
        let batch = try journal.beginRetrieval([(id, "inbound", "reports/\(id)")])
        try journal.markRetrieving(batch: batch, transferID: "t-\(batch)")
        try journal.recordRetrievalOutcomes([id: .completed])
        try journal.markDownloaded(id, localPath: nil)
        try journal.markInboundDone(id)
    }

    @Test func aFileWalksEveryStateAcrossRestarts() throws {
        let dir = try TempDirectory()
        var journal: Journal? = try Journal(directory: dir.path, logger: logger)
        let files = try journal!.recordListed(rule: "reports", (0..<3).map { version("f\($0).csv") }, maxAttempts: 5)
        let batch = try journal!.beginRetrieval(files.map { ($0.id, "inbound", "reports/\($0.name)") })
        // Restart between the journal's `submitting` and StartFileTransfer's answer: still submitting.
        journal = nil
        journal = try Journal(directory: dir.path, logger: logger)
        let submitting = try journal!.inboundFiles(in: [.submitting])
        #expect(submitting.map(\.id) == files.map(\.id))
        #expect(Set(submitting.compactMap(\.batchID)) == [batch])
        #expect(submitting.map(\.key) == ["reports/f0.csv", "reports/f1.csv", "reports/f2.csv"])
        try journal!.markRetrieving(batch: batch, transferID: "t-1")
        try journal!.recordRetrievalOutcomes([files[0].id: .completed, files[1].id: .failed(code: "RETRIEVE_FILE_NOT_FOUND", message: "gone")])
        #expect(try journal!.inboundFiles(in: [.retrieving]).map(\.id) == [files[2].id])
        let failed = try #require(try journal!.inboundFile(files[1].id))
        #expect(failed.state == .failed)
        #expect(failed.attempts == 1)
        #expect(failed.lastError == "RETRIEVE_FILE_NOT_FOUND: gone")
        try journal!.planDownload(files[0].id, tempPath: "/in/.ferry-1.part", finalPath: "/in/f0.csv")
        journal = nil
        journal = try Journal(directory: dir.path, logger: logger)
        let downloading = try #require(try journal!.inboundFile(files[0].id))
        #expect(downloading.state == .downloading)
        #expect(downloading.tempPath == "/in/.ferry-1.part")
        #expect(downloading.localPath == "/in/f0.csv")
        try journal!.markDownloaded(files[0].id, localPath: "/in/f0.csv")
        #expect(try journal!.inboundFile(files[0].id)?.tempPath == nil)
        try journal!.markInboundDone(files[0].id)
        let counts = try journal!.inboundCounts()
        #expect(counts["reports"]?[.done] == 1)
        #expect(counts["reports"]?[.failed] == 1)
        #expect(counts["reports"]?[.retrieving] == 1)
    }

    @Test func failedVersionsAreRetriedUntilOutOfAttempts() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let file = try #require(try journal.recordListed(rule: "r", [version("a")], maxAttempts: 2).first)
        try journal.markInboundFailed(file.id, error: "download: disk full")
        #expect(try journal.recordListed(rule: "r", [version("a")], maxAttempts: 2).map(\.id) == [file.id])
        try journal.markInboundFailed(file.id, error: "download: disk full")
        #expect(try journal.recordListed(rule: "r", [version("a")], maxAttempts: 2).isEmpty)
    }

    @Test func abandonedRetrievalGoesBackToListed() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let file = try #require(try journal.recordListed(rule: "r", [version("a")], maxAttempts: 5).first)
        let batch = try journal.beginRetrieval([(file.id, "b", "k")])
        try journal.abandonRetrieval(batch: batch, error: "ThrottlingException")
        let back = try #require(try journal.inboundFile(file.id))
        #expect(back.state == .listed)
        #expect(back.batchID == nil)
        #expect(back.lastError == "ThrottlingException")
        let second = try journal.beginRetrieval([(file.id, "b", "k")])
        #expect(second > batch, "batch ids are not reused")
        try journal.rejectRetrieval(batch: second, error: "ValidationException: bad path")
        let rejected = try #require(try journal.inboundFile(file.id))
        #expect(rejected.state == .failed)
        #expect(rejected.attempts == 1, "a rejected request counts as an attempt; throttling does not")
    }

    @Test func refusedNamesAreRecordedOnce() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        #expect(try journal.recordRefused(rule: "r", version("..%2Fetc"), reason: "contains .."))
        #expect(try !journal.recordRefused(rule: "r", version("..%2Fetc"), reason: "contains .."))
        #expect(try journal.inboundFiles(in: [.refused]).map(\.lastError) == ["contains .."])
    }

    @Test func pollRecordsSurviveRestart() throws {
        let dir = try TempDirectory()
        let started = Date(timeIntervalSince1970: 1_800_000_000)
        do {
            let journal = try Journal(directory: dir.path, logger: logger)
            #expect(try journal.pollRecord(rule: "r") == nil)
            try journal.recordPollStarted(rule: "r", at: started)
            try journal.setPendingListing(rule: "r", "inbound/.ferry-listings/r/c-1-x.json")
            try journal.setUnstableSizes(rule: "r", ["/outbound/a": 5, "/outbound/b": 0])
        }
        let journal = try Journal(directory: dir.path, logger: logger)
        var record = try #require(try journal.pollRecord(rule: "r"))
        #expect(record.startedAt == started)
        #expect(record.pendingListing == "inbound/.ferry-listings/r/c-1-x.json")
        #expect(try journal.unstableSizes(rule: "r") == ["/outbound/a": 5, "/outbound/b": 0])
        try journal.setPendingListing(rule: "r", nil)
        try journal.recordPollFinished(rule: "r", at: started.addingTimeInterval(2), result: "error", error: "listing timed out",
                                       nextAt: started.addingTimeInterval(300))
        record = try #require(try journal.pollRecord(rule: "r"))
        #expect(record.pendingListing == nil)
        #expect(record.startedAt == started, "finishing keeps the start")
        #expect(record.error == "listing timed out")
        #expect(record.nextAt == started.addingTimeInterval(300))
        try journal.recordPollStarted(rule: "another", at: started)
        #expect(try journal.pollRecords().map(\.rule) == ["another", "r"])
    }

    @Test func aFailedDownloadIsRetriedFromS3AndNeverGivenUp() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: logger)
        let file = try #require(try journal.recordListed(rule: "r", [version("a")], maxAttempts: 2).first)
        let batch = try journal.beginRetrieval([(file.id, "b", "k")])
        try journal.markRetrieving(batch: batch, transferID: "t")
        try journal.recordRetrievalOutcomes([file.id: .completed])
        try journal.planDownload(file.id, tempPath: "/in/.t", finalPath: "/in/a")
        try journal.recordDownloadFailure(file.id, error: "download: ENOSPC", maxAttempts: 2)
        var after = try #require(try journal.inboundFile(file.id))
        #expect(after.state == .inS3, "the next poll downloads again, without asking the partner again")
        #expect(after.tempPath == nil)
        try journal.recordDownloadFailure(file.id, error: "download: ENOSPC", maxAttempts: 2)
        after = try #require(try journal.inboundFile(file.id))
        #expect(after.state == .inS3, "the S3 object may be this version's only copy: never given up")
        #expect(after.attempts == 2)
        #expect(try journal.recordListed(rule: "r", [version("a")], maxAttempts: 2).isEmpty, "not fetched from the partner again")
    }
}
