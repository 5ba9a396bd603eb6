@testable import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Testing
import FerrySystem

/// Journal migration 5 (issue 15): the outbound end state `disposed` becomes `done`. A journal written
/// by the previous ferry keeps every row, its per-state counts, its dedupe answers and its retention.
struct DoneStateMigrationTests {
    @Test func disposedRowsBecomeDoneWithTheirCountsAndIndex() throws {
        let dir = try TempDirectory()
        do {
            let old = try SQLiteConnection(path: dir.path + "/journal.db", readOnly: false)
            try old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for (index, statements) in Journal.migrations.prefix(4).enumerated() {
                for statement in statements { try old.execute(statement) }
                try old.statement("INSERT INTO schema_version(version) VALUES (?)").run([.integer(Int64(index + 1))])
            }
            let insert = try old.statement("""
                INSERT INTO outbound_files (rule, path, relative_path, device, inode, size, mtime_ns, state, created_at, updated_at)
                VALUES ('invoices', ?, ?, 1, ?, 10, 1, ?, 0, ?)
                """)
            for index in 0..<5 {
                try insert.run([.text("/srv/out/\(index).edi"), .text("\(index).edi"), .integer(Int64(index)),
                                .text(index < 3 ? "disposed" : "failed"), .real(Double(index))])
            }
        }
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"))
        #expect(try journal.outboundCounts() == ["invoices": [.done: 3, .failed: 2]], "the triggers moved the counts")
        #expect(try journal.outboundFiles(in: [.done]).map(\.path).sorted() == ["/srv/out/0.edi", "/srv/out/1.edi", "/srv/out/2.edi"])
        #expect(try journal.isKnown(path: "/srv/out/1.edi", version: FileVersion(device: 1, inode: 1, size: 10, mtimeNanoseconds: 1), doneCounts: true),
                "a version sent before the upgrade is still known: nothing is sent again")
        let index = try journal.locked {
            try journal.connection.statement("SELECT sql FROM sqlite_master WHERE name = 'outbound_files_finished'").query { $0.text(0) ?? "" }
        }
        #expect(index.first?.contains("'done'") == true, "retention finds the done rows through the partial index: \(index)")
        let candidates = try journal.outboundPruneCandidates(state: .done, finishedBefore: Date(timeIntervalSince1970: 100),
                                                             after: .start, limit: 10)
        #expect(candidates.count == 3)
    }
}
