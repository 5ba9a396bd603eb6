import Foundation
import Logging
import Testing
import FerryStore
import FerryTestSupport
import FerrySystem

/// The journal checkpoints its write-ahead log itself (SQLite's auto-checkpoint is off, because it ran
/// inside a commit, under the journal lock): a long run of commits must still leave the log bounded and
/// the database holding the rows.
struct CheckpointTests {
    @Test func theWriteAheadLogStaysBoundedWithoutSQLiteAutoCheckpoint() throws {
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
}
