import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// The must-shows 1–5, against the emulator and its OpenSSH partner (the partner's disk is
/// written directly; ferry sees it only through StartDirectoryListing and the connector).
@Suite(.serialized) struct InboundPollerTests {
    @Test func filesArriveOnceOverFivePollsAndAgainWhenChanged() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/reports")
        let a = randomData(3000), b = randomData(17)
        try h.putOnPartner("/out/reports/a.csv", a)
        try h.putOnPartner("/out/reports/b.csv", b)
        let journal = try h.openJournal()
        let rule = try h.rule(name: "reports", remote: "/out/reports", extra: "min_age: 0s")
        let poller = h.poller([rule], journal: journal)
        for poll in 1...5 {
            let report = try #require(await poller.pollNow(rule: "reports"))
            #expect(report.error == nil)
            #expect(report.listed == 2)
            #expect(report.requested == (poll == 1 ? 2 : 0), "poll \(poll)")
        }
        #expect(try h.operations("GetObject").filter { $0.key?.hasPrefix("reports/") == true }.count == 2, "each file downloaded once")
        #expect(try await h.object("reports/a.csv") == a)
        #expect(try await h.object("reports/b.csv") == b)
        #expect(try h.inboxNames() == ["a.csv", "b.csv"])
        #expect(try h.inboxFile("a.csv") == a)
        #expect(try h.inboxFile("b.csv") == b)
        #expect(try h.operations("StartFileTransfer").count == 1, "one retrieval over five polls")
        #expect(try h.operations("StartDirectoryListing").count == 5)
        #expect(try await h.s3.listObjectsV2(bucket: h.emulator.inboundBucket, prefix: ".ferry-listings/").isEmpty,
                "listing objects are deleted after use")
        #expect(h.partnerHas("/out/reports/a.csv"), "after_retrieve defaults to keep")

        // The partner rewrites a.csv: a new version, retrieved again and placed beside the first copy.
        let changed = randomData(3001)
        try h.putOnPartner("/out/reports/a.csv", changed)
        let report = try #require(await poller.pollNow(rule: "reports"))
        #expect(report.requested == 1)
        #expect(try await h.object("reports/a.csv") == changed)
        #expect(try h.inboxNames() == ["a (1).csv", "a.csv", "b.csv"])
        #expect(try h.inboxFile("a (1).csv") == changed)
        #expect(try h.inboxFile("a.csv") == a)
        #expect(try journal.inboundCounts()["reports"]?[.done] == 3)
    }

    @Test func afterRetrieveDeleteAndMoveTidyThePartnerOnlyAfterTheFileIsSafe() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/del")
        try h.partnerFolder("/out/mv/archive")
        let x = randomData(100), y = randomData(200)
        try h.putOnPartner("/out/del/x.txt", x)
        try h.putOnPartner("/out/mv/y.txt", y)
        let journal = try h.openJournal()
        let deleting = try h.rule(name: "del", remote: "/out/del", extra: "min_age: 0s\nafter_retrieve: delete")
        let moving = try h.rule(name: "mv", remote: "/out/mv", extra: "min_age: 0s\nafter_retrieve: move:/out/mv/archive")
        let poller = h.poller([deleting, moving], journal: journal)
        #expect(await poller.pollNow(rule: "del")?.finished == 1)
        #expect(await poller.pollNow(rule: "mv")?.finished == 1)
        #expect(try h.inboxFile("x.txt") == x)
        #expect(try h.inboxFile("y.txt") == y)
        #expect(try await h.object("del/x.txt") == x)
        #expect(try await h.object("mv/y.txt") == y)
        try await h.eventuallyOnPartner { !h.partnerHas("/out/del/x.txt") && h.partnerHas("/out/mv/archive/y.txt") && !h.partnerHas("/out/mv/y.txt") }
        // The moved file sits in a sub-folder: listings are one level deep, so it is not retrieved again.
        #expect(await poller.pollNow(rule: "mv")?.requested == 0)
        #expect(try h.inboxNames() == ["x.txt", "y.txt"])
    }
}
