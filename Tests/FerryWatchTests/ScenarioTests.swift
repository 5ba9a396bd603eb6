import Foundation
import Testing
@testable import FerryWatch

/// The scenarios on real folders with real inotify: each asserts exactly which files are
/// reported, and that none is reported twice.
@Suite struct ScenarioTests {
    @Test func plainWriteIsReportedOnceWithItsFullSize() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        let before = ContinuousClock.now
        try watch.write("out/invoice.edi", bytes: 4096)
        try watch.write("out/.hidden", bytes: 10)
        try watch.write("out/upload.part", bytes: 10)
        try watch.write("out/~lock", bytes: 10)
        await watch.expectExactly(["invoice.edi"])
        let report = try #require(watch.reports.first)
        #expect(report.file.ruleID == "out")
        #expect(report.file.path == watch.path("out/invoice.edi"))
        #expect(report.file.version.size == 4096)
        // Not before the settle time has passed since the write.
        #expect(report.at - before >= .milliseconds(300))
        await watch.stop()
    }

    @Test func tempNameThenRenameReportsOnlyTheFinalName() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        // rsync: a hidden temp name; SFTP servers: .filepart; both renamed into place.
        try watch.write("out/.report.csv.Xy12ab", bytes: 2000)
        try watch.rename("out/.report.csv.Xy12ab", "out/report.csv")
        try watch.write("out/data.xml.filepart", bytes: 3000)
        try await Task.sleep(for: .milliseconds(500))
        try watch.rename("out/data.xml.filepart", "out/data.xml")
        await watch.expectExactly(["data.xml", "report.csv"])
        #expect(watch.reports.first { $0.file.relativePath == "data.xml" }?.file.version.size == 3000)
        await watch.stop()
    }

    @Test func slowAppendingWriterIsReportedOnceAfterItsLastWrite() async throws {
        let settle = Duration.seconds(1)
        let watch = try WatchHarness { [.test("out", $0 + "/out", settle: settle)] }
        try await watch.waitUntilScanned()
        let path = watch.path("out/growing.log")
        // When each write finished and how many bytes the file then held. The writer means to pause
        // 200 ms between writes, but under a loaded CI machine a pause can stretch past `settle`; the
        // watcher is then right to report that version. So the test asserts what must hold whatever
        // the timing: no report comes sooner than `settle` after the write before it, each report
        // has the size written by then, and the last report is the whole file.
        var writes: [(at: ContinuousClock.Instant, size: Int64)] = []
        // 1 KiB every 200 ms for 10 s, reopening each time like a logger that appends and closes.
        for index in 0..<50 {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            try #require(fd >= 0)
            let chunk = [UInt8](repeating: 66, count: 1024)
            _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            writes.append((.now, Int64(index + 1) * 1024))
            try await Task.sleep(for: .milliseconds(200))
        }
        let lastWrite = try #require(writes.last).at
        await watch.wait(upTo: .seconds(30)) { watch.reports.contains { $0.file.version.size == 50 * 1024 } }
        try await Task.sleep(for: .seconds(2))
        let reports = watch.reports
        let longestPause = zip(writes.dropFirst(), writes).map { $0.at - $1.at }.max() ?? .zero
        for report in reports {
            // The version reported is the one a write left; the watcher may report it only if that
            // version stood unchanged for settle: until the next write, or until the report.
            let index = try #require(writes.firstIndex { $0.size == report.file.version.size },
                                     "reported with \(report.file.version.size) bytes, a size no write left")
            let end = index + 1 < writes.count ? writes[index + 1].at : report.at
            #expect(end - writes[index].at >= settle,
                    "reported the \(writes[index].size)-byte version, which stood only \(end - writes[index].at)")
        }
        // Intermediate versions are allowed only when the writer really paused for longer than settle.
        if longestPause < settle {
            #expect(reports.count == 1, "\(reports.count) reports although no pause reached settle (longest \(longestPause))")
        }
        let final = try #require(reports.last)
        #expect(final.file.version.size == 50 * 1024)
        #expect(final.at - lastWrite >= settle)
        #expect(Set(reports.map { $0.file.version.size }).count == reports.count, "one version reported twice")
        await watch.stop()
    }

    @Test func writerHoldingTheFileOpenIsReportedAfterItCloses() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out", settle: .milliseconds(500))] }
        try await watch.waitUntilScanned()
        let fd = open(watch.path("out/held.dat"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        for _ in 0..<10 {
            let chunk = [UInt8](repeating: 67, count: 1024)
            _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(watch.reports.isEmpty)
        close(fd)
        await watch.expectExactly(["held.dat"])
        let size = try #require(watch.reports.first).file.version.size
        #expect(size == 10 * 1024)
        await watch.stop()
    }

    @Test func filesInAFreshlyCreatedDeepFolderAreFound() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.mkdir("out/a/b/c")
        for index in 0..<20 { try watch.write("out/a/b/c/file\(index).txt") }
        try watch.write("out/a/top.txt")
        await watch.expectExactly((0..<20).map { "a/b/c/file\($0).txt" } + ["a/top.txt"])
        #expect(watch.watcher.statistics.watches == 4)
        await watch.stop()
    }

    @Test func treeMovedInFromOutsideIsFoundAndTreeMovedOutIsUnwatched() async throws {
        let watch = try WatchHarness(prepare: { base in
            for folder in ["elsewhere/batch/x", "elsewhere/batch/y/z"] {
                try FileManager.default.createDirectory(atPath: base + "/" + folder, withIntermediateDirectories: true)
            }
            for file in ["batch/one.csv", "batch/x/two.csv", "batch/y/z/three.csv", "batch/y/z/.skip"] {
                try WatchHarness.write(base + "/elsewhere/" + file)
            }
        }) { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.rename("elsewhere/batch", "out/batch")
        await watch.expectExactly(["batch/one.csv", "batch/x/two.csv", "batch/y/z/three.csv"])
        #expect(watch.watcher.statistics.watches == 5)

        try watch.rename("out/batch", "elsewhere/gone")
        let unwatched = await watch.wait { watch.watcher.statistics.watches == 1 }
        #expect(unwatched, "watches of the moved-out tree were not dropped: \(watch.watcher.statistics.watches)")
        try watch.write("elsewhere/gone/x/after.csv")
        // Moving within the tree keeps watching and reports the files under their new paths.
        try watch.mkdir("out/stage/inner")
        try watch.write("out/stage/inner/moved.csv")
        await watch.wait { watch.reportedPaths.count == 4 }
        try watch.rename("out/stage", "out/final")
        try watch.write("out/final/inner/late.csv")
        await watch.expectExactly(["batch/one.csv", "batch/x/two.csv", "batch/y/z/three.csv", "stage/inner/moved.csv",
                                   "final/inner/moved.csv", "final/inner/late.csv"])
        await watch.stop()
    }

    @Test func fileRewrittenAfterReportIsReportedAgainAsANewVersion() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.write("out/orders.csv", bytes: 100)
        await watch.expectExactly(["orders.csv"])
        // Permission changes and reopening without writing are not new versions.
        chmod(watch.path("out/orders.csv"), 0o600)
        let fd = open(watch.path("out/orders.csv"), O_WRONLY | O_CLOEXEC)
        close(fd)
        try await Task.sleep(for: .milliseconds(800))
        #expect(watch.reports.count == 1)
        try watch.write("out/orders.csv", bytes: 200)
        await watch.expectExactly(["orders.csv", "orders.csv"])
        let versions = watch.reports.map(\.file.version)
        #expect(versions.map(\.size) == [100, 200])
        #expect(Set(versions).count == 2)
        await watch.stop()
    }

    @Test func symbolicLinksAreNeverReportedOrFollowed() async throws {
        let watch = try WatchHarness(prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/secret", withIntermediateDirectories: true)
            try WatchHarness.write(base + "/secret/key.pem")
        }) { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        #expect(symlink("/etc/passwd", watch.path("out/passwd")) == 0)
        #expect(symlink(watch.path("secret"), watch.path("out/linked-folder")) == 0)
        try watch.write("out/real.txt")
        await watch.expectExactly(["real.txt"])
        // A scan (here: a rule reload) does not follow them either.
        watch.watcher.updateRules([.test("out", watch.path("out"))])
        await watch.wait { watch.watcher.statistics.scans >= 2 }
        await watch.expectExactly(["real.txt"])
        #expect(watch.watcher.statistics.watches == 1)
        #expect(watch.log.contains("ignoring symbolic link"))
        await watch.stop()
    }

    @Test func fifosAreIgnoredWithADebugLine() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        #expect(mkfifo(watch.path("out/pipe"), 0o644) == 0)
        try watch.write("out/after.txt")
        await watch.expectExactly(["after.txt"])
        #expect(watch.log.matching("ignoring fifo").contains { $0.hasPrefix("debug") && $0.contains("out/pipe") })
        await watch.stop()
    }

    @Test func deletedAndRecreatedRootIsWatchedAgain() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.write("out/first.txt")
        await watch.expectExactly(["first.txt"], quiet: .milliseconds(100))
        try FileManager.default.removeItem(atPath: watch.path("out"))
        let lost = await watch.wait { watch.log.contains("watched folder is gone") }
        #expect(lost)
        #expect(watch.log.matching("watched folder is gone").allSatisfy { $0.hasPrefix("info") })
        try watch.mkdir("out")
        try watch.write("out/second.txt")
        await watch.expectExactly(["first.txt", "second.txt"])
        #expect(watch.log.contains("watched folder is back"))
        // Watching (not only the scan) resumed: a file written now is found too.
        try watch.write("out/third.txt")
        await watch.expectExactly(["first.txt", "second.txt", "third.txt"])
        #expect(watch.watcher.statistics.watches == 1)
        await watch.stop()
    }

    @Test func unmountedAndRemountedRootIsWatchedAgain() async throws {
        let watch = try WatchHarness(reconcile: .seconds(1), prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/out", withIntermediateDirectories: true)
            try #require(mount("tmpfs", base + "/out", "tmpfs", 0, "size=1m") == 0,
                         "mounting a tmpfs failed (errno \(errno)): this test needs root, as CI runs it")
        }) { [.test("out", $0 + "/out")] }
        defer { _ = umount2(watch.path("out"), Int32(MNT_DETACH)) }
        try await watch.waitUntilScanned()
        try watch.write("out/on-tmpfs.txt")
        await watch.expectExactly(["on-tmpfs.txt"], quiet: .milliseconds(100))

        #expect(umount2(watch.path("out"), 0) == 0)
        // IN_UNMOUNT says "unmounted"; under load the 1 s reconciliation may see the new inode first and
        // say "replaced". Either way the loss is logged and watching resumes below.
        let lost = await watch.wait {
            watch.log.contains("watched folder is gone (unmounted)") || watch.log.contains("watched folder is gone (replaced)")
        }
        #expect(lost)
        // The folder underneath is watched from now on.
        await watch.wait { watch.log.contains("watched folder is back") }
        try watch.write("out/underneath.txt")
        await watch.expectExactly(["on-tmpfs.txt", "underneath.txt"], quiet: .milliseconds(100))

        // Mounting over a watched folder sends no event; reconciliation notices the new inode.
        #expect(mount("tmpfs", watch.path("out"), "tmpfs", 0, "size=1m") == 0)
        try watch.write("out/remounted.txt")
        await watch.expectExactly(["on-tmpfs.txt", "remounted.txt", "underneath.txt"])
        #expect(watch.log.contains("watched folder is gone (replaced)"))
        await watch.stop()
    }

    @Test func rootReplacedByRenameIsWatchedAtItsPathAgain() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.rename("out", "out.old")
        try watch.mkdir("out")
        try watch.write("out/new.txt")
        try watch.write("out.old/stale.txt")
        await watch.expectExactly(["new.txt"])
        await watch.stop()
    }

    @Test func readyMarkerGatesTheFileAndIsNeverReported() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out", include: ["*.edi"], readyMarker: ".done")] }
        try await watch.waitUntilScanned()
        try watch.write("out/a.edi")
        try watch.write("out/b.edi")
        try await Task.sleep(for: .milliseconds(1000))
        #expect(watch.reports.isEmpty, "reported before its marker existed")
        try watch.write("out/a.edi.done", bytes: 0)
        await watch.expectExactly(["a.edi"])
        // A marker that arrives with the file (already present when it settles) works too.
        try watch.write("out/c.edi")
        try watch.write("out/c.edi.done", bytes: 0)
        await watch.expectExactly(["a.edi", "c.edi"])
        #expect(watch.watcher.statistics.pending == 1)
        await watch.stop()
    }

    @Test func filesPresentAtStartAreReportedUnlessTheCallerKnowsThem() async throws {
        let watch = try WatchHarness(prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/out/sub", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: base + "/out/.ferry/sent", withIntermediateDirectories: true)
            for name in ["old1.txt", "old2.txt", "sub/old3.txt", "known.txt", ".ferry/sent/archived.txt"] {
                try WatchHarness.write(base + "/out/" + name)
            }
        }, isKnown: { _, path, _ in path.hasSuffix("/known.txt") }) { [.test("out", $0 + "/out")] }
        await watch.expectExactly(["old1.txt", "old2.txt", "sub/old3.txt"])
        #expect(watch.watcher.statistics.known == 1)
        // .ferry/ is neither reported nor watched.
        #expect(watch.watcher.statistics.watches == 2)
        await watch.stop()
    }

    @Test func eachFileGoesToTheFirstMatchingRuleOnly() async throws {
        let watch = try WatchHarness {
            [.test("edi", $0 + "/shared", recursive: false, include: ["*.edi"]),
             .test("all", $0 + "/shared", include: ["**"], exclude: ["*.log"]),
             .test("nested", $0 + "/shared/inner", recursive: false),
             .test("logs", $0 + "/shared", include: ["*.log"])]
        }
        try await watch.waitUntilScanned()
        try watch.mkdir("shared/inner")
        try watch.write("shared/a.edi")
        try watch.write("shared/b.xml")
        try watch.write("shared/c.log")
        try watch.write("shared/inner/d.edi")
        try watch.write("shared/inner/e.log")
        // Relative paths are relative to the root of the rule that took the file.
        await watch.expectExactly(["a.edi", "b.xml", "c.log", "e.log", "inner/d.edi"])
        let byRule = Dictionary(grouping: watch.reports.map(\.file), by: \.path).mapValues { $0.map(\.ruleID) }
        #expect(byRule[watch.path("shared/a.edi")] == ["edi"])
        #expect(byRule[watch.path("shared/b.xml")] == ["all"])
        #expect(byRule[watch.path("shared/c.log")] == ["logs"])
        #expect(byRule[watch.path("shared/inner/d.edi")] == ["all"])
        #expect(byRule[watch.path("shared/inner/e.log")] == ["nested"])
        let eLog = watch.reports.first { $0.file.ruleID == "nested" }?.file
        #expect(eLog?.relativePath == "e.log")
        // One watch per folder although four rules cover them.
        #expect(watch.watcher.statistics.watches == 2)
        await watch.stop()
    }

    @Test func reloadedRulesWatchNewRootsAndDropOldOnes() async throws {
        let watch = try WatchHarness(prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/second", withIntermediateDirectories: true)
            try WatchHarness.write(base + "/second/waiting.txt")
        }) { [.test("first", $0 + "/first")] }
        try await watch.waitUntilScanned()
        watch.watcher.updateRules([.test("second", watch.path("second"))])
        await watch.expectExactly(["waiting.txt"])
        try watch.write("first/ignored.txt")
        try watch.write("second/new.txt")
        await watch.expectExactly(["new.txt", "waiting.txt"])
        #expect(watch.watcher.statistics.watches == 1)
        await watch.stop()
    }

    @Test func missingRootAtStartIsWatchedOnceItAppears() async throws {
        let watch = try WatchHarness(createRoots: false) { [.test("later", $0 + "/later")] }
        try await watch.waitUntilScanned()
        #expect(watch.log.contains("it does not exist"))
        #expect(watch.watcher.statistics.missingRoots == 1)
        try watch.mkdir("later")
        try watch.write("later/hello.txt")
        await watch.expectExactly(["hello.txt"])
        #expect(watch.watcher.statistics.missingRoots == 0)
        await watch.stop()
    }

    @Test func hardLinkIsFoundWithoutAScanAndReconciliationRepeatsNothing() async throws {
        let watch = try WatchHarness(reconcile: .seconds(1), prepare: { base in
            try WatchHarness.write(base + "/source.dat", bytes: 500)
        }) { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.write("out/plain.txt")
        await watch.expectExactly(["plain.txt"], quiet: .milliseconds(100))
        // A hard link gives only IN_CREATE: no close, no rename. That event alone starts it settling
        // (issue #14, relays), so it is found before any reconciliation (asserted in LinkedFileTests with
        // a 600 s reconcile; here the 1 s reconcile only checks that nothing is reported twice).
        #expect(link(watch.path("source.dat"), watch.path("out/linked.dat")) == 0)
        await watch.wait { watch.reportedPaths.count == 2 }
        // Several more reconciliations report neither file again.
        let scansAfterFind = watch.watcher.statistics.scans
        await watch.wait { watch.watcher.statistics.scans >= scansAfterFind + 2 }
        #expect(watch.reportedPaths == ["linked.dat", "plain.txt"])
        await watch.stop()
    }

    @Test func stoppingFinishesTheStreamAndRemovesEveryWatch() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        #expect(watch.watcher.statistics.watches == 1)
        await watch.stop()
        #expect(watch.watcher.statistics.watches == 0)
        #expect(watch.runError.withLock { $0 } == nil)
    }

    @Test func invalidPatternFailsRunWithTheRuleNamed() async throws {
        let temp = try FerryTestSupportTemp.make()
        let watcher = FolderWatcher(rules: [.test("bad", temp.path, include: ["[a-"])], logger: CapturedLog().logger())
        await #expect { try await watcher.run() } throws: { error in
            (error as? WatchError)?.code == .invalidPattern && "\(error)".contains("rule bad")
        }
    }
}
