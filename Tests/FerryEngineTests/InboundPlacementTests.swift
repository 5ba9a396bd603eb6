import FerryConfig
import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Testing
import FerrySystem

struct InboundPlacementTests {
    let logger = Logger(label: "test")

    /// A journal with one file of that name retrieved into S3 (state in_s3).
    func retrieved(_ name: String, in journal: Journal) throws -> InboundFile {
        let file = try #require(try journal.recordListed(rule: "r", [RemoteVersion(remotePath: "/out/\(name)", size: 3, modified: "t")],
                                                        maxAttempts: 5).first)
        let batch = try journal.beginRetrieval([(file.id, "b", name)])
        try journal.markRetrieving(batch: batch, transferID: "t")
        try journal.recordRetrievalOutcomes([file.id: .completed])
        return try #require(try journal.inboundFile(file.id))
    }

    func write(_ text: String) -> (String) async throws -> Void {
        { path in try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
    }

    func listing(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    }

    func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    @Test func conflictNames() {
        #expect(DownloadPlacement.conflictName("report.csv", 1) == "report (1).csv")
        #expect(DownloadPlacement.conflictName("a.tar.gz", 2) == "a.tar (2).gz")
        #expect(DownloadPlacement.conflictName("README", 1) == "README (1)")
        #expect(DownloadPlacement.conflictName(".profile", 1) == ".profile (1)")
    }

    @Test(arguments: [OnConflict.rename, .overwrite, .skip])
    func onConflict(_ mode: OnConflict) async throws {
        let state = try TempDirectory()
        let inbox = try TempDirectory()
        let journal = try Journal(directory: state.path, logger: logger)
        try Data("old".utf8).write(to: URL(fileURLWithPath: inbox.path + "/a.csv"))
        try Data("old1".utf8).write(to: URL(fileURLWithPath: inbox.path + "/a (1).csv"))
        let file = try retrieved("a.csv", in: journal)
        let outcome = try await DownloadPlacement(directory: inbox.path, onConflict: mode).place(file, journal: journal, fill: write("new"))
        let done = try #require(try journal.inboundFile(file.id))
        #expect(done.state == .downloaded)
        #expect(done.tempPath == nil)
        switch mode {
        case .rename:
            #expect(outcome == .placed(inbox.path + "/a (2).csv"))
            #expect(try listing(inbox.path) == ["a (1).csv", "a (2).csv", "a.csv"])
            #expect(try read(inbox.path + "/a (2).csv") == "new")
            #expect(try read(inbox.path + "/a.csv") == "old")
        case .overwrite:
            #expect(outcome == .placed(inbox.path + "/a.csv"))
            #expect(try listing(inbox.path) == ["a (1).csv", "a.csv"])
            #expect(try read(inbox.path + "/a.csv") == "new")
        case .skip:
            #expect(outcome == .skipped(inbox.path + "/a.csv"))
            #expect(try listing(inbox.path) == ["a (1).csv", "a.csv"])
            #expect(try read(inbox.path + "/a.csv") == "old")
            #expect(done.localPath == nil)
            #expect(done.lastError?.contains("on_conflict: skip") == true)
        }
        #expect(done.localPath == (mode == .skip ? nil : outcome.path))
    }

    @Test func aNameTakenDuringTheDownloadIsNotOverwritten() async throws {
        let state = try TempDirectory()
        let inbox = try TempDirectory()
        let journal = try Journal(directory: state.path, logger: logger)
        let file = try retrieved("a.csv", in: journal)
        let outcome = try await DownloadPlacement(directory: inbox.path, onConflict: .rename).place(file, journal: journal) { temp in
            try Data("someone else".utf8).write(to: URL(fileURLWithPath: inbox.path + "/a.csv"))
            try Data("our".utf8).write(to: URL(fileURLWithPath: temp))
        }
        #expect(outcome == .placed(inbox.path + "/a (1).csv"))
        #expect(try read(inbox.path + "/a.csv") == "someone else")
        #expect(try read(inbox.path + "/a (1).csv") == "our")
        #expect(try journal.inboundFile(file.id)?.localPath == inbox.path + "/a (1).csv")
    }

    /// The crash points of a download, replayed: each leaves the disk and journal as a kill -9 there would,
    /// then a restarted ferry (a new Journal on the same file) finishes the job.
    enum CrashPoint: CaseIterable { case afterTempCreated, duringWrite, afterLink, afterMove }

    @Test(arguments: CrashPoint.allCases)
    func aCrashNeverLeavesTwoCopiesOrNone(_ point: CrashPoint) async throws {
        let state = try TempDirectory()
        let inbox = try TempDirectory()
        var journal: Journal? = try Journal(directory: state.path, logger: logger)
        let file = try retrieved("a.csv", in: journal!)
        let placement = DownloadPlacement(directory: inbox.path, onConflict: .rename)
        let temp = placement.temporaryPath(for: file.id)
        let final = inbox.path + "/a.csv"
        try Data().write(to: URL(fileURLWithPath: temp))
        if point != .afterTempCreated {
            try journal!.planDownload(file.id, tempPath: temp, finalPath: final)
        }
        switch point {
        case .afterTempCreated: break
        case .duringWrite: try Data("ab".utf8).write(to: URL(fileURLWithPath: temp))
        case .afterLink:
            try Data("abc".utf8).write(to: URL(fileURLWithPath: temp))
            #expect(link(temp, final) == 0)
        case .afterMove:
            try Data("abc".utf8).write(to: URL(fileURLWithPath: temp))
            #expect(rename(temp, final) == 0)
        }
        journal = nil
        journal = try Journal(directory: state.path, logger: logger)
        let resumed = try #require(try journal!.inboundFile(file.id))
        let fills = SharedCounter()
        let outcome = try await placement.place(resumed, journal: journal!) { path in
            fills.increment()
            try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        }
        #expect(outcome == .placed(final))
        #expect(try listing(inbox.path) == ["a.csv"], "one copy, no temporary file left")
        #expect(try read(final) == "abc")
        #expect(try journal!.inboundFile(file.id)?.state == .downloaded)
        #expect(fills.count == (point == .afterLink || point == .afterMove ? 0 : 1), "a file already in place is not fetched again")
    }

    /// Item 3: a temporary file removed by someone else (an operator, a cleanup job) is not taken for
    /// "moved into place": with no final file holding our bytes, the download is done again.
    @Test(arguments: [false, true])
    func aVanishedTemporaryFileIsNotTakenForPlaced(_ someoneElsesFileAtTheName: Bool) async throws {
        let state = try TempDirectory()
        let inbox = try TempDirectory()
        var journal: Journal? = try Journal(directory: state.path, logger: logger)
        let file = try retrieved("a.csv", in: journal!)
        let placement = DownloadPlacement(directory: inbox.path, onConflict: .rename)
        let temp = placement.temporaryPath(for: file.id)
        let final = inbox.path + "/a.csv"
        try Data().write(to: URL(fileURLWithPath: temp))
        try journal!.planDownload(file.id, tempPath: temp, finalPath: final, tempInode: try inode(temp))
        try Data("ab".utf8).write(to: URL(fileURLWithPath: temp))
        // The crash; then a cleanup job removes the temporary file, and maybe a name-twin appears.
        try FileManager.default.removeItem(atPath: temp)
        // (Another size: a freed inode number is often reused at once, and inode and size together are the proof.)
        if someoneElsesFileAtTheName { try Data("wxyz".utf8).write(to: URL(fileURLWithPath: final)) }
        journal = nil
        journal = try Journal(directory: state.path, logger: logger)
        let resumed = try #require(try journal!.inboundFile(file.id))
        let fills = SharedCounter()
        let outcome = try await placement.place(resumed, journal: journal!) { path in
            fills.increment()
            try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        }
        #expect(fills.count == 1, "downloaded again")
        let placed = someoneElsesFileAtTheName ? inbox.path + "/a (1).csv" : final
        #expect(outcome == .placed(placed))
        #expect(try read(placed) == "abc")
        if someoneElsesFileAtTheName { #expect(try read(final) == "wxyz") }
        #expect(try journal!.inboundFile(file.id)?.localPath == placed)
    }

    func inode(_ path: String) throws -> UInt64 {
        var info = stat()
        #expect(lstat(path, &info) == 0)
        return UInt64(info.st_ino)
    }

    @Test func aMissingFolderIsAnErrorThatSaysWhatToDo() async throws {
        let state = try TempDirectory()
        let journal = try Journal(directory: state.path, logger: logger)
        let file = try retrieved("a.csv", in: journal)
        do {
            _ = try await DownloadPlacement(directory: state.path + "/nope", onConflict: .rename).place(file, journal: journal, fill: write("x"))
            Issue.record("placing into a missing folder succeeded")
        } catch let error as SystemError {
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.description.contains("fix download_to"))
        }
        #expect(try journal.inboundFile(file.id)?.state == .inS3, "nothing was journaled as downloading")
    }
}

final class SharedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() { lock.withLock { value += 1 } }
    var count: Int { lock.withLock { value } }
}

extension DownloadPlacement.Outcome {
    var path: String {
        switch self {
        case .placed(let path), .skipped(let path): path
        }
    }
}
