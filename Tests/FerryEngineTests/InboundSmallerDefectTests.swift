import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Testing

/// Issue 14, items 5, 7 and 9: each reproduced, against the emulator where the poller is involved.
@Suite(.serialized) struct InboundSmallerDefectTests {
    /// Item 7: the same instant written with and without fractional seconds (or with an offset) is one
    /// version, so a change in the server's timestamp format does not retrieve every kept file again.
    @Test func aTimestampFormatChangeIsNotANewVersion() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/ts")
        try h.putOnPartner("/out/ts/a.csv", Data("hello".utf8))
        let instant = Date(timeIntervalSince1970: 1_790_000_000)
        try FileManager.default.setAttributes([.modificationDate: instant], ofItemAtPath: folder + "/a.csv")
        let journal = try h.openJournal()
        let rule = try h.rule(name: "ts", remote: "/out/ts", extra: "min_age: 0s")
        let poller = h.poller([rule], journal: journal)
        #expect(await poller.poll(ruleNamed: "ts").requested == 1)
        for text in ["2026-09-21T14:13:20.000Z", "2026-09-21T16:13:20+02:00", "2026-09-21T14:13:20.000000Z", "1790000000"] {
            let json = #"{"files":[{"filePath":"/out/ts/a.csv","size":5,"modifiedTimestamp":"\#(text)"}],"truncated":false}"#
            let listing = try DirectoryListing.parse(Data(json.utf8))
            let report = await poller.poll(ruleNamed: "ts", listing: { _ in listing })
            #expect(report.requested == 0, "\(text) is the instant already retrieved")
        }
        #expect(try h.inboxNames() == ["a.csv"])
    }

    /// Item 5: NFC and NFD spellings of one name are two files on the partner. Results are matched by
    /// bytes: the twin whose retrieval FAILED is not marked retrieved because the other COMPLETED.
    @Test func unicodeTwinsDoNotShareAResult() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/tw")
        let nfc = "caf\u{E9}.csv", nfd = "cafe\u{301}.csv"
        #expect(nfc == nfd, "Swift's String equality is canonical: the bug's premise")
        try Data("composed".utf8).write(to: URL(fileURLWithPath: folder + "/" + nfc))
        let journal = try h.openJournal()
        let rule = try h.rule(name: "tw", remote: "/out/tw", extra: "min_age: 0s\nafter_retrieve: delete", downloadTo: nil)
        let poller = h.poller([rule], journal: journal)
        // The decomposed twin is listed (a listing taken just before the partner removed it) but is gone:
        // its retrieval fails. Listed first, so a String-keyed lookup hands it the composed twin's result.
        let json = #"{"files":[{"filePath":"/out/tw/\#(nfd)","size":6,"modifiedTimestamp":"2026-01-01T00:00:00Z"},{"filePath":"/out/tw/\#(nfc)","size":8,"modifiedTimestamp":"2026-01-01T00:00:00Z"}],"truncated":false}"#
        let listing = try DirectoryListing.parse(Data(json.utf8))
        let report = await poller.poll(ruleNamed: "tw", listing: { _ in listing })
        #expect(report.error == nil)
        #expect(report.retrieved == 1, "\(report)")
        let rows = try journal.inboundFiles(in: InboundState.allCases, rule: "tw")
        let twin = try #require(rows.first { Array($0.remotePath.utf8) == Array("/out/tw/\(nfd)".utf8) })
        #expect(twin.state == .failed)
        #expect(twin.lastError?.contains("RETRIEVE_FILE_NOT_FOUND") == true, "its own result, not its twin's")
        #expect(try h.emulator.requestLog().filter { $0.operation == "StartRemoteDelete" }.count <= 1, "only the retrieved twin is deleted")
    }

    /// Item 9: a 255-byte name that collides gets a shortened stem, not ENAMETOOLONG.
    @Test func aLongNameThatCollidesIsPlacedUnderAShortenedName() async throws {
        let state = try TempDirectory()
        let inbox = try TempDirectory()
        let journal = try Journal(directory: state.path, logger: Logger(label: "test"))
        let name = String(repeating: "ü", count: 125) + ".csv"
        #expect(name.utf8.count == 254)
        try Data("old".utf8).write(to: URL(fileURLWithPath: inbox.path + "/" + name))
        let file = try #require(try journal.recordListed(rule: "r", [RemoteVersion(remotePath: "/out/" + name, size: 3, modified: "t")],
                                                        maxAttempts: 5).first)
        let batch = try journal.beginRetrieval([(file.id, "b", name)])
        try journal.markRetrieving(batch: batch, transferID: "t")
        try journal.recordRetrievalOutcomes([file.id: .completed])
        let outcome = try await DownloadPlacement(directory: inbox.path, onConflict: .rename)
            .place(try #require(try journal.inboundFile(file.id)), journal: journal) { path in
                try Data("new".utf8).write(to: URL(fileURLWithPath: path))
            }
        guard case .placed(let path) = outcome else {
            Issue.record("not placed: \(outcome)")
            return
        }
        let placed = URL(fileURLWithPath: path).lastPathComponent
        #expect(placed.utf8.count <= 255)
        #expect(placed.hasSuffix(" (1).csv"))
        #expect(FileManager.default.contents(atPath: path) == Data("new".utf8))
        #expect(DownloadPlacement.conflictName(String(repeating: "x", count: 255), 12).utf8.count == 255)
    }

    /// Item 9: bidi overrides and invisible format characters make a name read as something it is not.
    @Test(arguments: ["invoice\u{202E}fdp.exe", "pay\u{200B}ment.csv", "a\u{2066}b", "\u{FEFF}x.csv"])
    func invisibleAndBidiFormatCharactersAreRefused(_ name: String) {
        #expect(throws: RemoteName.Refusal.self) {
            try RemoteName.check(filePath: "/out/" + name, remoteDirectory: "/out", downloadTo: "/srv/in").get()
        }
        #expect(!RemoteName.printable(name).unicodeScalars.contains { $0.properties.generalCategory == .format })
    }

    /// Item 9: a version refused under the old rules is looked at again after a reload.
    @Test func aRefusalIsReconsideredAfterAReload() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/ra")
        try h.putOnPartner("/out/ra/x.csv", Data("refused once".utf8))
        let instant = Date(timeIntervalSince1970: 1_790_000_000)
        try FileManager.default.setAttributes([.modificationDate: instant], ofItemAtPath: folder + "/x.csv")
        let journal = try h.openJournal()
        // A listing of the wrong folder (a misconfigured rule): the entry is outside remote_directory_path.
        let wrong = try h.rule(name: "ra", remote: "/out/rb", extra: "min_age: 0s")
        let poller = h.poller([wrong], journal: journal)
        let json = #"{"files":[{"filePath":"/out/ra/x.csv","size":12,"modifiedTimestamp":"2026-09-21T14:13:20Z"}],"truncated":false}"#
        let listing = try DirectoryListing.parse(Data(json.utf8))
        #expect(await poller.poll(ruleNamed: "ra", listing: { _ in listing }).refused == 1)
        let fixed = try h.rule(name: "ra", remote: "/out/ra", extra: "min_age: 0s")
        let connection = InboundConnection(connectorId: h.emulator.sftpConnectorId, s3: h.s3, transfer: h.transfer, pace: {})
        poller.reload(rules: [fixed], connections: ["partner": connection])
        let report = await poller.poll(ruleNamed: "ra")
        #expect(report.requested == 1, "the fixed rule retrieves what the broken one refused")
        #expect(try h.inboxFile("x.csv") == Data("refused once".utf8))
    }
}

/// Issue 14, item 6: completeness does not rest on the partner's clock alone.
@Suite(.serialized) struct InboundCompletenessTests {
    /// An upload that preserved an old mtime (or a partner clock hours behind) passes min_age at once; the
    /// size changing between two listings shows the file is still being written.
    @Test func aFileGrowingBetweenTwoListingsIsNotRetrievedWhateverItsTimestamp() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/grow")
        try h.putOnPartner("/out/grow/a.csv", randomData(100))
        let old = Date(timeIntervalSince1970: 1_700_000_000)
        try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: folder + "/a.csv")
        let journal = try h.openJournal()
        let rule = try h.rule(name: "grow", remote: "/out/grow", extra: "min_age: 1m\nafter_retrieve: delete")
        let poller = h.poller([rule], journal: journal)
        let listings = SharedCounter()
        let report = await poller.poll(ruleNamed: "grow", listing: { _ in
            listings.increment()
            // The writer appends between the two looks; the mtime stays the preserved one.
            let size = listings.count == 1 ? 100 : 180
            let json = #"{"files":[{"filePath":"/out/grow/a.csv","size":\#(size),"modifiedTimestamp":"2023-11-14T22:13:20Z"}],"truncated":false}"#
            return try DirectoryListing.parse(Data(json.utf8))
        })
        #expect(listings.count == 2, "a version seen for the first time gets a second look")
        #expect(report.requested == 0)
        #expect(report.waitingForSecondLook == 1)
        #expect(try h.operations("StartFileTransfer").isEmpty)
        #expect(h.partnerHas("/out/grow/a.csv"))
    }

    /// Entries with neither size nor timestamp are reported, not silently deduped on (path, -1, '').
    @Test func anEntryWithoutSizeOrTimestampIsReportedAndLeftOnThePartner() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/bare")
        try h.putOnPartner("/out/bare/a.csv", randomData(10))
        let journal = try h.openJournal()
        let rule = try h.rule(name: "bare", remote: "/out/bare", extra: "min_age: 0s\nafter_retrieve: delete")
        let poller = h.poller([rule], journal: journal)
        let listing = try DirectoryListing.parse(Data(#"{"files":[{"filePath":"/out/bare/a.csv"}],"truncated":false}"#.utf8))
        for _ in 0..<3 {
            let report = await poller.poll(ruleNamed: "bare", listing: { _ in listing })
            #expect(report.requested == 0)
            #expect(report.warnings.contains { $0.contains("without size or modification time") })
        }
        #expect(try journal.inboundFiles(in: InboundState.allCases, rule: "bare").isEmpty)
        #expect(h.partnerHas("/out/bare/a.csv"))
    }
}
