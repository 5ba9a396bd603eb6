import Foundation
import Logging
import Testing
@testable import FerryStore
import FerryTestSupport
import FerrySystem

/// Upload completions run on FerryAWS's HTTP thread (the upload workers prefer its executor) and record
/// each staged copy with `markStagedSoon`. Had that waited for the journal's lock, every request of the
/// process would stall for as long as any other journal transaction ran, fsync included (issue 15).
struct JournalHTTPThreadTests {
    @Test func recordingAnUploadDoesNotWaitForATransactionInProgress() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"))
        let file = try #require(try journal.recordDetected([NewOutboundFile(
            rule: "r", path: "/srv/out/a.edi", relativePath: "a.edi", version: FileVersion(device: 1, inode: 7, size: 3, mtimeNanoseconds: 1), remoteDirectory: nil)]).first)
        let holding = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        // Another writer holds the journal, as a transaction waiting for its fsync does.
        Thread.detachNewThread {
            journal.locked {
                holding.signal()
                release.wait()
            }
            released.signal()
        }
        holding.wait()
        let recorded = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = journal.markStagedSoon(Journal.StagedCopy(id: file.id, bucket: "b", key: "k", checksum: "e"))
            recorded.signal()
        }
        // The writer lets go only after this wait: a markStagedSoon that needs the journal's lock can
        // return only then, so it shows up here as a timeout (a bound on a failing test, not a measurement).
        let returnedWhileHeld = recorded.wait(timeout: .now() + 10) == .success
        release.signal()
        released.wait()
        if !returnedWhileHeld { recorded.wait() }
        #expect(returnedWhileHeld, "markStagedSoon waited for the journal's lock held by another transaction")
        try journal.flushStaged()
        let staged = try #require(try journal.outboundFile(file.id))
        #expect(staged.state == .staged)
        #expect(staged.key == "k")
    }
}
