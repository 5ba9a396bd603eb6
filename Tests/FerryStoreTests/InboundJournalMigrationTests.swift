@testable import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Testing

/// Journal migration 4 (issue 14): inbound timestamps keyed by instant, so that rows journaled by an
/// older ferry, in whatever text the listing gave, still dedupe against the canonical form it writes now.
struct InboundJournalMigrationTests {
    @Test func migrationFourRewritesTimestampsAsInstants() throws {
        let dir = try TempDirectory()
        do {
            let old = try SQLiteConnection(path: dir.path + "/journal.db", readOnly: false)
            try old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for (index, statements) in Journal.migrations.prefix(3).enumerated() {
                for statement in statements { try old.execute(statement) }
                try old.statement("INSERT INTO schema_version(version) VALUES (?)").run([.integer(Int64(index + 1))])
            }
            let insert = try old.statement("""
                INSERT INTO inbound_files (rule, remote_path, size, modified, state, created_at, updated_at) VALUES ('r', ?, 5, ?, 'done', 0, 0)
                """)
            for (path, text) in [("/o/a", "2026-09-21T14:13:20Z"), ("/o/b", "2026-09-21T16:13:20+02:00"), ("/o/c", "1790000000"),
                                 ("/o/d", "not a date"), ("/o/e", "")] {
                try insert.run([.text(path), .text(text)])
            }
        }
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"))
        let rows = Dictionary(uniqueKeysWithValues: try journal.inboundFiles(in: [.done]).map { ($0.remotePath, $0.modified) })
        #expect(rows["/o/a"] == "2026-09-21T14:13:20.000Z")
        #expect(rows["/o/b"] == "2026-09-21T14:13:20.000Z")
        #expect(rows["/o/c"] == "2026-09-21T14:13:20.000Z")
        #expect(rows["/o/d"] == "not a date", "unreadable text stays as it was")
        #expect(rows["/o/e"] == .some(nil))
        #expect(try journal.isKnown(rule: "r", RemoteVersion(remotePath: "/o/a", size: 5, modified: "2026-09-21T14:13:20.000Z")))
    }

    /// The lookups that hold a newer version back and tell an in-doubt retrieval from an earlier object.
    @Test func unplacedVersionsAndPlacedETagsAreFoundByObject() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"))
        let v1 = try #require(try journal.recordListed(rule: "r", [RemoteVersion(remotePath: "/o/a", size: 1, modified: "t1")], maxAttempts: 5).first)
        let v2 = try #require(try journal.recordListed(rule: "r", [RemoteVersion(remotePath: "/o/a", size: 2, modified: "t2")], maxAttempts: 5).first)
        #expect(try journal.unplacedVersion(bucket: "b", key: "a", excluding: v2.id) == nil, "v1 is only listed: it holds no object")
        let batch = try journal.beginRetrieval([(v1.id, "b", "a")])
        #expect(try journal.unplacedVersion(bucket: "b", key: "a", excluding: v2.id)?.id == v1.id)
        try journal.markRetrieving(batch: batch, transferID: "t")
        try journal.recordRetrievalOutcomes([v1.id: .completed])
        #expect(try journal.unplacedVersion(bucket: "b", key: "a", excluding: v2.id)?.id == v1.id, "in S3, not yet placed")
        #expect(try journal.unplacedVersion(bucket: "b", key: "other", excluding: v2.id) == nil)
        try journal.markDownloaded(v1.id, localPath: nil, eTag: "\"e1\"")
        #expect(try journal.unplacedVersion(bucket: "b", key: "a", excluding: v2.id) == nil, "placed: the next version may use the key")
        let etags = try journal.placedETags(bucket: "b", key: "a", excluding: v2.id)
        #expect(etags.eTags == ["\"e1\""])
        #expect(!etags.someUnknown)
    }
}
