import Foundation
import Testing
@testable import FerryWatch

/// Issue #13: an archive_dir (or quarantine, or in-doubt folder) inside a recursive watched tree never
/// produces candidates, whether its files are there at start, arrive by event, or are found by a scan.
@Suite struct ExcludedFolderTests {
    @Test func excludedSubtreesNeverProduceCandidates() async throws {
        let watch = try WatchHarness(reconcile: .seconds(1), prepare: { base in
            for folder in ["out/archive/2026-12-01", "out/archived", "out/quarantine"] {
                try FileManager.default.createDirectory(atPath: base + "/" + folder, withIntermediateDirectories: true)
            }
            for file in ["out/archive/old.edi", "out/archive/2026-12-01/sent.edi", "out/quarantine/bad.edi",
                         "out/archived/keep.edi", "out/first.edi"] {
                try WatchHarness.write(base + "/" + file)
            }
        }) { base in
            // Trailing slash and all: the engine passes folders as configured.
            [.test("out", base + "/out", excludedFolders: [base + "/out/archive/", base + "/out/quarantine"])]
        }
        try await watch.waitUntilScanned()
        // Events: written, moved in, and a new dated folder created inside the excluded tree.
        try watch.write("out/archive/now.edi")
        try watch.mkdir("out/archive/2026-12-02")
        try watch.write("out/archive/2026-12-02/today.edi")
        try watch.write("out/quarantine/again.edi")
        try watch.write("out/moving.edi")
        try watch.rename("out/moving.edi", "out/archive/moved.edi")
        try watch.write("out/second.edi")
        // Several reconciliations scan everything again.
        try await Task.sleep(for: .milliseconds(2500))
        await watch.expectExactly(["archived/keep.edi", "first.edi", "second.edi"])
        // out and out/archived only: excluded folders are not even watched.
        #expect(watch.watcher.statistics.watches == 2)
        await watch.stop()
    }

    @Test func excludedFoldersMustBeAbsolute() async throws {
        let temp = try FerryTestSupportTemp.make()
        let watcher = FolderWatcher(rules: [.test("bad", temp.path, excludedFolders: ["archive"])], logger: CapturedLog().logger())
        await #expect { try await watcher.run() } throws: { error in
            (error as? WatchError)?.code == .invalidPattern && "\(error)".contains("must be absolute")
        }
    }
}
