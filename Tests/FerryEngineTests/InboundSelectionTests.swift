import FerryEngine
import FerryGlob
import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Testing

struct InboundListingTests {
    @Test func parsesAWSDocumentedShapeWithBooleanTruncated() throws {
        let json = #"""
        {"files":[{"filePath":"/out/a.csv","modifiedTimestamp":"2026-11-27T01:02:03Z","size":42}],
         "paths":[{"path":"/out/archive"}],"truncated":false}
        """#
        let listing = try DirectoryListing.parse(Data(json.utf8))
        #expect(listing.files == [DirectoryListing.Entry(filePath: "/out/a.csv", size: 42, modifiedText: "2026-11-27T01:02:03Z",
                                                          modified: Date(timeIntervalSince1970: 1_795_741_323))])
        #expect(listing.directories == ["/out/archive"])
        #expect(!listing.truncated)
    }

    @Test func toleratesStringTruncatedMissingFieldsAndUnknownFields() throws {
        let json = #"""
        {"files":[{"filePath":"/out/a"},{"filePath":"/out/b","size":"7","modifiedTimestamp":"2026-11-27T01:02:03.250Z","owner":"x"},
                  {"size":3},"junk"],
         "truncated":"true","nextThing":{"a":1}}
        """#
        let listing = try DirectoryListing.parse(Data(json.utf8))
        #expect(listing.truncated)
        #expect(listing.files.map(\.filePath) == ["/out/a", "/out/b"], "an entry without filePath cannot be retrieved and is skipped")
        #expect(listing.files[0].size == nil)
        #expect(listing.files[0].modified == nil)
        #expect(listing.files[1].size == 7)
        #expect(listing.files[1].modified == Date(timeIntervalSince1970: 1_795_741_323.25))
        #expect(try !DirectoryListing.parse(Data(#"{"files":[],"truncated":"false"}"#.utf8)).truncated)
        #expect(try DirectoryListing.parse(Data("{}".utf8)).files.isEmpty)
    }

    @Test func garbageIsAnErrorThatSaysSo() {
        #expect(throws: InboundError.self) { try DirectoryListing.parse(Data("<html>".utf8)) }
        #expect(throws: InboundError.self) { try DirectoryListing.parse(Data("[1,2]".utf8)) }
    }
}

struct RemoteNameTests {
    @Test(arguments: ["", ".", "..", "a/b", "../x", "x..y", "a\u{0}b", "a\nb", "a\u{1b}[31m", "a\u{7f}", "a\u{85}", "a\u{2028}b",
                      String(repeating: "n", count: 256)])
    func hostileNamesAreRefused(_ name: String) {
        let result = RemoteName.check(filePath: "/out/" + name, remoteDirectory: "/out", downloadTo: "/srv/in")
        #expect(throws: RemoteName.Refusal.self) { try result.get() }
    }

    @Test(arguments: ["a.csv", "report 2026-11-27.csv", "Übersicht.xml", ".hidden", "a.b.c", "x~", String(repeating: "n", count: 255)])
    func plainNamesPass(_ name: String) throws {
        #expect(try RemoteName.check(filePath: "/out/" + name, remoteDirectory: "/out/", downloadTo: "/srv/in").get() == name)
    }

    @Test func pathsOutsideTheRemoteFolderAreRefused() throws {
        #expect(throws: RemoteName.Refusal.self) {
            try RemoteName.check(filePath: "/elsewhere/a.csv", remoteDirectory: "/out", downloadTo: nil).get()
        }
        #expect(throws: RemoteName.Refusal.self) {
            try RemoteName.check(filePath: "/outside.csv", remoteDirectory: "/out", downloadTo: nil).get()
        }
        #expect(try RemoteName.check(filePath: "/a.csv", remoteDirectory: "/", downloadTo: nil).get() == "a.csv")
    }

    @Test func printableEscapesWhatWouldForgeALogLine() {
        #expect(RemoteName.printable("a\nb\u{0}c\\") == #"a\u{a}b\u{0}c\\"#)
    }
}

struct InboundSelectionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func entry(_ name: String, size: Int64? = 10, age: TimeInterval? = 600) -> DirectoryListing.Entry {
        let modified = age.map { now.addingTimeInterval(-$0) }
        return DirectoryListing.Entry(filePath: "/out/\(name)", size: size, modifiedText: modified.map { "\($0.timeIntervalSince1970)" },
                                      modified: modified)
    }

    func select(_ entries: [DirectoryListing.Entry], include: [String] = [], exclude: [String] = [], minAge: Duration = .seconds(60),
                previous: [String: Int64] = [:]) throws -> InboundSelection {
        InboundSelection.select(DirectoryListing(files: entries), remoteDirectory: "/out", downloadTo: "/srv/in",
                                filter: try FileFilter(include: include, exclude: exclude), minAge: minAge, now: now,
                                previousUnstableSizes: previous)
    }

    @Test func includeExcludeAndDefaultIgnoresApplyToTheName() throws {
        let selection = try select([entry("a.csv"), entry("b.txt"), entry("c.csv.part"), entry(".d.csv"), entry("old.csv")],
                                   include: ["*.csv"], exclude: ["old*"])
        #expect(selection.candidates.map(\.name) == ["a.csv"])
        #expect(selection.filteredOut == 4)
    }

    @Test func minAgeHoldsBackRecentlyModifiedFiles() throws {
        let selection = try select([entry("fresh", age: 5), entry("ripe", age: 61), entry("future", age: -30)])
        #expect(selection.candidates.map(\.name) == ["ripe"])
        #expect(selection.tooYoung == 2)
    }

    @Test func aFileWithoutTimestampNeedsTwoPollsWithTheSameSize() throws {
        let first = try select([entry("growing", size: 5, age: nil), entry("nosize", size: nil, age: nil)])
        #expect(first.candidates.isEmpty)
        #expect(first.waitingForSecondLook == 1)
        #expect(first.unversioned == ["/out/nosize"], "neither size nor timestamp: reported, never retrieved")
        #expect(first.unstableSizes == ["/out/growing": 5])
        let second = try select([entry("growing", size: 9, age: nil), entry("nosize", size: nil, age: nil)], previous: first.unstableSizes)
        #expect(second.candidates.isEmpty)
        #expect(second.unversioned == ["/out/nosize"])
        #expect(second.unstableSizes["/out/growing"] == 9)
        let third = try select([entry("growing", size: 9, age: nil)], previous: second.unstableSizes)
        #expect(third.candidates.map(\.name) == ["growing"])
        #expect(third.unstableSizes.keys.sorted() == ["/out/growing"], "files gone from the listing are forgotten")
    }

    @Test func hostileNamesAreRefusedBeforeFiltering() throws {
        let selection = try select([entry("../../etc/passwd"), entry("a\nb.csv"), entry("ok.csv")], include: ["*.csv"])
        #expect(selection.candidates.map(\.name) == ["ok.csv"])
        #expect(selection.refused.map(\.version.remotePath) == ["/out/../../etc/passwd", #"/out/a\u{a}b.csv"#])
    }

    @Test func theJournalTakesEachVersionOnce() throws {
        let dir = try TempDirectory()
        let journal = try Journal(directory: dir.path, logger: Logger(label: "test"))
        let selection = try select([entry("a.csv"), entry("b.csv")])
        let first = try journal.recordListed(rule: "r", selection.candidates.map(\.version), maxAttempts: 5)
        for file in first {
            let batch = try journal.beginRetrieval([(file.id, "b", file.name)])
            try journal.markRetrieving(batch: batch, transferID: "t")
            try journal.recordRetrievalOutcomes([file.id: .completed])
            try journal.markInboundDone(file.id)
        }
        let again = try select([entry("a.csv"), entry("b.csv", size: 11)])
        #expect(try journal.recordListed(rule: "r", again.candidates.map(\.version), maxAttempts: 5).map(\.name) == ["b.csv"])
    }
}
