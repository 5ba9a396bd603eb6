import FerryAWS
import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// Defects the inbound chaos test (Tests/EndToEndTests/ChaosInbound*.swift) found, each made
/// deterministic against the emulator and its OpenSSH partner.
@Suite(.serialized) struct InboundChaosFindingsTests {
    /// Chaos seed 1 (`rewrite-in-flight(same size)`): the partner replaced v1 with a same-size v2 between
    /// ferry's listing and the retrieval, which reads the file when it runs, so v1's row placed v2's
    /// bytes. The next poll listed v2 (a new mtime) and placed the same bytes again as `a (1).csv`: one
    /// version twice. ferry cannot tell from a listing which bytes a retrieval read, but when v2's bytes
    /// arrive with the size and ETag of what v1's row placed, they are placed already.
    @Test func aVersionReplacedDuringItsRetrievalIsNotPlacedTwice() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/race")
        let v1 = randomData(1500), v2 = randomData(1500)
        try h.putOnPartner("/out/race/a.csv", v1)
        let old = Date().addingTimeInterval(-600)
        try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: h.emulator.partnerRoot + "/out/race/a.csv")
        let journal = try h.openJournal()
        let rule = try h.rule(name: "race", remote: "/out/race", extra: "min_age: 0s\non_conflict: rename\nafter_retrieve: delete")
        let replaced = SharedCounter()
        // Just before StartFileTransfer goes out (v1 was listed twice), the partner replaces the file:
        // same size, a later mtime. The retrieval then reads v2.
        let poller = h.poller([rule], journal: journal, crashHook: { point in
            guard point == "retrieval-submitting", replaced.count == 0 else { return }
            replaced.increment()
            try v2.write(to: URL(fileURLWithPath: h.emulator.partnerRoot + "/out/race/a.csv"))
            try FileManager.default.setAttributes([.modificationDate: old.addingTimeInterval(60)], ofItemAtPath: h.emulator.partnerRoot + "/out/race/a.csv")
        })
        _ = await poller.pollNow(rule: "race")
        #expect(replaced.count == 1)
        #expect(try h.inboxNames() == ["a.csv"])
        #expect(try h.inboxFile("a.csv") == v2, "the retrieval read what the partner had when it ran")
        // v2 is a new version (new mtime): retrieved, and found placed already.
        for _ in 0..<3 { _ = await poller.pollNow(rule: "race") }
        #expect(try h.inboxNames() == ["a.csv"], "v2's bytes are in download_to once, not again as `a (1).csv`")
        #expect(h.metrics.value("ferry_inbound_already_placed_total") == 1)
        let rows = try journal.inboundFiles(in: [.done], rule: "race")
        #expect(rows.count == 2)
        #expect(rows.allSatisfy { $0.localPath == h.inbox.path + "/a.csv" }, "both rows name the one file that holds v2's bytes")
        // v2 is placed, so its partner copy may go.
        try await h.eventuallyOnPartner { !h.partnerHas("/out/race/a.csv") }
    }
}

extension InboundChaosFindingsTests {
    /// Chaos seed 3 (`rewrite-in-flight`): v1 was journaled `listed` at its first look, the partner
    /// replaced it before the second look, and the row stayed `listed` for ever: in progress in `ferry
    /// status`, never pruned. A whole listing that no longer shows the version retires it, with a note.
    @Test func aListedVersionThePartnerReplacedBeforeItsSecondLookDoesNotWaitForever() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/gone")
        let v2 = randomData(900)
        try h.putOnPartner("/out/gone/a.csv", v2)
        let journal = try h.openJournal()
        let rule = try h.rule(name: "gone", remote: "/out/gone", extra: "min_age: 0s")
        let poller = h.poller([rule], journal: journal)
        let listings = SharedCounter()
        @Sendable func entry(_ size: Int, _ time: String) -> String { #"{"filePath":"/out/gone/a.csv","size":\#(size),"modifiedTimestamp":"\#(time)"}"# }
        // The first look sees v1 (700 bytes); by the second look the partner has replaced it with v2.
        let first = await poller.poll(ruleNamed: "gone", listing: { _ in
            listings.increment()
            let file = listings.count == 1 ? entry(700, "2026-01-01T00:00:00Z") : entry(900, "2026-01-01T00:00:09Z")
            return try DirectoryListing.parse(Data(#"{"files":[\#(file)],"truncated":false}"#.utf8))
        })
        #expect(first.waitingForSecondLook == 1)
        #expect(try journal.inboundFiles(in: [.listed], rule: "gone").map(\.size) == [700], "v1 had its first look only")
        // The next poll's listing (the real partner) shows only v2: v1 is retired, v2 retrieved.
        let second = try #require(await poller.pollNow(rule: "gone"))
        #expect(second.superseded == 1)
        for _ in 0..<2 { _ = await poller.pollNow(rule: "gone") }
        #expect(try journal.inboundFiles(in: [.listed], rule: "gone").isEmpty, "no version waits for ever")
        let done = try journal.inboundFiles(in: [.done], rule: "gone")
        #expect(done.contains { $0.size == 700 && $0.lastError == InboundPoller.supersededNote })
        #expect(try h.inboxNames() == ["a.csv"])
        #expect(try h.inboxFile("a.csv") == v2)
    }
}

extension InboundChaosFindingsTests {
    /// Chaos runs with `after_retrieve: move` (the emulator's remote_ops.jsonl: `"op": "move", "ok":
    /// false`): a second version of a name cannot be moved into an archive that holds the name (an SFTP
    /// rename does not replace), StartRemoteMove is answered all the same, and ferry called the version
    /// `done` while the partner's copy stayed. Now an answered call is confirmed by the next listing, and
    /// a move the partner keeps refusing ends with a note saying so, after three calls.
    @Test func aMoveThePartnerRefusesIsNotReportedDone() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/mv")
        try h.partnerFolder("/out/mv/archive")
        try h.putOnPartner("/out/mv/archive/a.csv", Data("an older a.csv, archived".utf8))
        try h.putOnPartner("/out/mv/a.csv", randomData(300))
        try h.putOnPartner("/out/mv/b.csv", randomData(200))
        let journal = try h.openJournal()
        let rule = try h.rule(name: "mv", remote: "/out/mv", extra: "min_age: 0s\nafter_retrieve: move:/out/mv/archive")
        let poller = h.poller([rule], journal: journal)
        var warnings: [String] = []
        for _ in 0..<6 {
            if let report = await poller.pollNow(rule: "mv") { warnings += report.warnings }
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(!FileManager.default.fileExists(atPath: folder + "/b.csv") && FileManager.default.fileExists(atPath: folder + "/archive/b.csv"))
        #expect(FileManager.default.fileExists(atPath: folder + "/a.csv"), "the partner refused to replace archive/a.csv")
        let done = try journal.inboundFiles(in: [.done], rule: "mv")
        #expect(done.count == 2)
        let a = try #require(done.first { $0.remotePath == "/out/mv/a.csv" })
        #expect((a.lastError ?? "").hasPrefix("after_retrieve failed:"), "not reported moved: \(a.lastError ?? "no note")")
        let b = try #require(done.first { $0.remotePath == "/out/mv/b.csv" })
        #expect((b.lastError ?? "").contains("moved"), "b.csv: \(b.lastError ?? "no note")")
        #expect(try h.operations("StartRemoteMove").filter { $0.paths?.first == "/out/mv/a.csv" }.count == 3)
        #expect(h.metrics.value("ferry_inbound_after_retrieve_refused_total") == 1)
        #expect(warnings.contains { $0.contains("after_retrieve failed for /out/mv/a.csv") })
    }
}

extension InboundChaosFindingsTests {
    /// The guard of `aVersionReplacedDuringItsRetrievalIsNotPlacedTwice` must not swallow a real re-send:
    /// with on_conflict overwrite, A is placed, B (same size) replaces it, and the partner then sends A's
    /// bytes again. The file holds B, so A is placed again.
    @Test func bytesSentAgainAfterAnOverwriteArePlacedAgain() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/ow")
        let a = randomData(800), b = randomData(800)
        let journal = try h.openJournal()
        let rule = try h.rule(name: "ow", remote: "/out/ow", extra: "min_age: 0s\non_conflict: overwrite")
        let poller = h.poller([rule], journal: journal)
        for (index, bytes) in [a, b, a].enumerated() {
            try h.putOnPartner("/out/ow/r.csv", bytes)
            // Versions a listing can tell apart: the mtime moves by a minute each time.
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_790_000_000 + Double(index) * 60)],
                                                  ofItemAtPath: folder + "/r.csv")
            for _ in 0..<2 { _ = await poller.pollNow(rule: "ow") }
            #expect(try h.inboxFile("r.csv") == bytes, "version \(index + 1) is in download_to")
        }
        #expect(h.metrics.value("ferry_inbound_already_placed_total") == 0)
    }
}
