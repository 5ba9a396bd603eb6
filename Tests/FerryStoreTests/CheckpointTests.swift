import Foundation
import Logging
import Testing
import FerryStore
import FerryTestSupport
import FerrySystem

/// The write-ahead log stays bounded: the pipeline's commits run SQLite's auto-checkpoint (at 1,000 pages);
/// pruning's commits skip it, so that a step holds the journal only for its deletes, and pruning
/// checkpoints beside the journal lock instead (`Journal.checkpointBeside`).
struct CheckpointTests {
    @Test func theWriteAheadLogStaysBoundedUnderALongRunOfCommits() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"))
        var walPeak: Int64 = 0
        // About 40,000 rows with long paths over 4,000 commits: well over 10,000 WAL pages (40 MB) if
        // nothing were checkpointed.
        for commit in 0..<4_000 {
            let files = (0..<10).map { index in
                let name = "commit-\(commit)-file-\(index)-" + String(repeating: "x", count: 200) + ".edi"
                return NewOutboundFile(rule: "invoices", path: "/srv/out/\(name)", relativePath: name,
                                       version: FileVersion(device: 1, inode: UInt64(commit * 10 + index), size: 10, mtimeNanoseconds: 1),
                                       remoteDirectory: "/in")
            }
            _ = try journal.recordDetected(files)
            let size = ((try? FileManager.default.attributesOfItem(atPath: journal.path + "-wal"))?[.size] as? NSNumber)?.int64Value ?? 0
            walPeak = max(walPeak, size)
        }
        // 1,000 pages of 4 KiB is when a checkpoint is due; the log restarts from its beginning after one.
        #expect(walPeak < 12 << 20, "the WAL grew to \(walPeak) bytes: nothing checkpointed it")
        #expect(try journal.storageFigures().outboundRows == 40_000)
    }

    /// Pruning steps commit without checkpointing: had any of them run SQLite's auto-checkpoint (inside its
    /// commit, holding the journal for the copy and two fsyncs), the log would have started again from its
    /// beginning and hold at most about 1,000 pages. Checkpointing beside the lock then copies all of it,
    /// and the next commit starts the log afresh.
    @Test func pruningStepsLeaveTheCheckpointToCheckpointingBesideTheLock() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"), now: clock.closure)
        let driver = JournalDriver(journal: journal)
        var ids: [Int64] = []
        for batch in 0..<300 {
            let files = (0..<10).map { index in
                driver.newFile("b\(batch)-f\(index)-" + String(repeating: "x", count: 300) + ".edi", inode: UInt64(batch * 10 + index + 1))
            }
            ids += try driver.send(files, transferID: "t-\(batch)").ids
        }
        clock.advance(7200)
        let cutoff = clock.now.addingTimeInterval(-3600)
        // Everything written so far goes into the database; the first prune step starts the log afresh.
        let setup = try journal.checkpointBeside()
        #expect(setup.checkpointed == setup.logFrames)

        for step in stride(from: 0, to: ids.count, by: 25) {
            let pruned = try journal.pruneOutbound(Array(ids[step..<min(step + 25, ids.count)]), finishedBefore: cutoff)
            // The newest row (the last id) stays: retention keeps it so that ids only grow.
            let newestInStep = step + 25 >= ids.count ? 1 : 0
            #expect(pruned.files == min(25, ids.count - step) - newestInStep)
        }
        let after = try journal.checkpointBeside()
        #expect(after.logFrames > 1_500, "the log holds \(after.logFrames) frames: a prune step's commit checkpointed (under the journal lock)")
        #expect(after.checkpointed == after.logFrames, "nothing else reads or writes, so all of it is checkpointed")
        #expect(try journal.storageFigures().outboundRows == 1, "all but the newest row")

        _ = try journal.recordDetected([driver.newFile("next.edi", inode: 999_999)])
        let restarted = try journal.checkpointBeside()
        #expect(restarted.logFrames < 100, "the next commit starts the log from its beginning (\(restarted.logFrames) frames)")
    }

    /// Reading ahead (`readAheadOutboundPrune`) walks every index a prune step changes: SQLite refuses an
    /// `INDEXED BY` it cannot use (a partial index whose condition the query does not imply), so a probe
    /// that drifted from the schema throws here instead of silently making steps slow again.
    @Test func readingAheadReadsEveryRowAStepWillDeleteThroughEveryIndex() throws {
        let dir = try TempDirectory()
        let clock = ManualClock()
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"), now: clock.closure)
        let driver = JournalDriver(journal: journal)
        var ids: [Int64] = []
        for batch in 0..<5 {
            let files = (0..<4).map { index in driver.newFile("ahead-\(batch)-\(index).edi", inode: UInt64(batch * 4 + index + 1)) }
            ids += try driver.send(files, transferID: "t-\(batch)").ids
        }
        clock.advance(7200)
        #expect(try journal.readAheadOutboundPrune(ids + [999_999]) == ids.count, "every journaled row read; an unknown id skipped")
        let pruned = try journal.pruneOutbound(ids, finishedBefore: clock.now.addingTimeInterval(-3600))
        #expect(pruned.files == ids.count - 1, "all but the newest row, which keeps ids growing")
    }
}
