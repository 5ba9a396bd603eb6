import Foundation
import FerryTestSupport
import Testing
@testable import FerryWatch

/// Poll mode on a real FUSE mount. bindfs mounts a real folder (`real`) at `mnt`; files written in
/// `real` reach `mnt` without passing through the mount, as files written by another host reach an NFS
/// or SMB client, and inotify on `mnt` sees none of them. The watcher watches `mnt`.
@Suite("Poll mode on a real FUSE mount (bindfs)", .serialized)
struct PollModeTests {
    /// A harness watching a bindfs mount of a fresh folder; `body` gets the harness and the real folder.
    static func onFuseMount(watchMode: WatchMode = .auto, pollInterval: Duration = .milliseconds(500),
                            settle: Duration = .milliseconds(300), readyMarker: String? = nil,
                            reconcile: Duration = .seconds(600),
                            _ body: (WatchHarness, String) async throws -> Void) async throws {
        let place = try TempDirectory(prefix: "ferry-poll")
        let mount = try BindfsMount(source: place.path + "/real", mountPoint: place.path + "/mnt")
        defer { mount.unmount() }
        let harness = try WatchHarness(reconcile: reconcile) { _ in
            [.test("drop", mount.mountPoint, settle: settle, readyMarker: readyMarker, watchMode: watchMode, pollInterval: pollInterval)]
        }
        do {
            try await harness.waitUntilScanned()
            try await body(harness, mount.source)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
        withExtendedLifetime(place) {}
    }

    @Test func autoPollsFuseAndFindsFilesWrittenBehindTheMount() async throws {
        try await Self.onFuseMount { harness, real in
            let root = harness.watcher.statistics.watchModes.keys.first ?? ""
            let choice = try #require(harness.watcher.statistics.watchModes[root], "no watch mode recorded")
            #expect(choice.mode == .poll)
            #expect(choice.reason == "auto: fuse is a network or FUSE file system")
            #expect(harness.log.contains("with poll every 0.5 seconds (auto: fuse is a network or FUSE file system)"))

            let written = ContinuousClock.now
            try WatchHarness.write(real + "/invoice.edi", bytes: 500)
            try FileManager.default.createDirectory(atPath: real + "/sub/deeper", withIntermediateDirectories: true)
            try WatchHarness.write(real + "/sub/deeper/late.xml", bytes: 300)
            // tmp-then-rename, behind the mount: only the final name is reported.
            try WatchHarness.write(real + "/order.csv.tmp", bytes: 200)
            #expect(rename(real + "/order.csv.tmp", real + "/order.csv") == 0)
            await harness.expectExactly(["invoice.edi", "order.csv", "sub/deeper/late.xml"])
            let latency = (harness.reports.map(\.at).max() ?? written) - written
            let statistics = harness.watcher.statistics
            // Found by poll passes, not by a reconciliation (600 s away) and not by inotify (blind here).
            #expect(statistics.pollPasses > 0)
            #expect(statistics.pollFoldersRead > 0)
            #expect(statistics.watches == 0, "a polled root holds no inotify watches")
            print("poll mode on bindfs: 3 files written behind the mount reported after \(latency) (poll_interval 0.5 s + settle 0.3 s)")
        }
    }

    @Test func readyMarkerWrittenBehindTheMountReleasesTheFile() async throws {
        try await Self.onFuseMount(readyMarker: ".done") { harness, real in
            try WatchHarness.write(real + "/pay.xml", bytes: 100)
            // Unreported while the marker is missing: wait until a later file proves passes went by.
            try WatchHarness.write(real + "/other.txt", bytes: 10)
            try WatchHarness.write(real + "/other.txt.done", bytes: 0)
            #expect(await harness.wait { harness.reportedPaths == ["other.txt"] })
            #expect(!harness.reportedPaths.contains("pay.xml"))
            try WatchHarness.write(real + "/pay.xml.done", bytes: 0)
            await harness.expectExactly(["other.txt", "pay.xml"])
        }
    }

    @Test func slowWriterBehindTheMountIsReportedOnlyWhole() async throws {
        // The writer pauses far less than settle between chunks; in poll mode nothing on this host has
        // the file open (the writer is "another host"), so only stability across settle protects it.
        let chunks = 40, chunk = 1000
        try await Self.onFuseMount(settle: .seconds(4)) { harness, real in
            let writer = Task.detached {
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: real + "/slow.dat").creatingIfNeeded())
                for _ in 0..<chunks {
                    try handle.write(contentsOf: Data(repeating: 66, count: chunk))
                    try await Task.sleep(for: .milliseconds(50))
                }
                try handle.close()
            }
            try await writer.value
            await harness.expectExactly(["slow.dat"])
            #expect(harness.reports.allSatisfy { $0.file.version.size == Int64(chunks * chunk) },
                    "a version other than the whole file was reported: \(harness.reports.map(\.file.version.size))")
        }
    }

    @Test func fileRewrittenInPlaceBehindTheMountIsReportedAgain() async throws {
        try await Self.onFuseMount { harness, real in
            try WatchHarness.write(real + "/report.csv", bytes: 100)
            #expect(await harness.wait { harness.reports.count == 1 })
            let foldersRead = harness.watcher.statistics.pollFoldersRead
            // In place: no create, delete or rename, so the folder's mtime does not change.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: real + "/report.csv"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(repeating: 67, count: 50))
            try handle.close()
            #expect(await harness.wait { harness.reports.count == 2 }, "the rewrite in place was never reported")
            #expect(harness.reports.map(\.file.version.size) == [100, 150])
            #expect(harness.watcher.statistics.pollFilesChecked > 0)
            #expect(harness.watcher.statistics.pollFoldersRead == foldersRead, "found by the tracked-file stat, not a listing")
        }
    }

    /// Documents the blindness poll mode works around: with inotify forced on the FUSE mount, a file
    /// written behind the mount is not seen until the reconciliation scan, while one written through
    /// the mount is seen at once.
    @Test func forcedInotifyMissesFilesWrittenBehindTheMountUntilReconciliation() async throws {
        try await Self.onFuseMount(watchMode: .inotify, reconcile: .seconds(10)) { harness, real in
            let choice = try #require(harness.watcher.statistics.watchModes.values.first)
            #expect(choice.mode == .inotify)
            #expect(choice.reason.contains("inotify cannot see writers on other hosts or behind the mount"))
            let scansBefore = harness.watcher.statistics.scans
            try WatchHarness.write(real + "/behind.edi", bytes: 100)
            try WatchHarness.write(harness.watcher.statistics.watchModes.keys.first! + "/through.edi", bytes: 100)
            #expect(await harness.wait { harness.reportedPaths.contains("through.edi") })
            let scansWhenThroughArrived = harness.watcher.statistics.scans
            // Unless a reconciliation already ran (a very slow machine), the file behind the mount is unseen.
            #expect(!harness.reportedPaths.contains("behind.edi") || scansWhenThroughArrived > scansBefore)
            #expect(await harness.wait(upTo: .seconds(120)) { harness.reportedPaths.contains("behind.edi") })
            #expect(harness.watcher.statistics.scans > scansBefore, "behind.edi can only have been found by a reconciliation scan")
            #expect(harness.watcher.statistics.pollPasses == 0)
        }
    }

    @Test func autoChoosesByFileSystemType() {
        let nfs = FileSystemKind(magic: 0x6969), ext4 = FileSystemKind(magic: 0xEF53), fuse = FileSystemKind(magic: 0x6573_5546)
        #expect(WatchModeChoice.decide(.auto, on: nfs, pollInterval: .seconds(5)).mode == .poll)
        #expect(WatchModeChoice.decide(.auto, on: fuse, pollInterval: .seconds(5)).mode == .poll)
        #expect(WatchModeChoice.decide(.auto, on: ext4, pollInterval: .seconds(5)).mode == .inotify)
        #expect(WatchModeChoice.decide(.auto, on: nil, pollInterval: .seconds(5)).mode == .inotify)
        #expect(WatchModeChoice.decide(.poll, on: ext4, pollInterval: .seconds(5)).mode == .poll)
        #expect(WatchModeChoice.decide(.inotify, on: nfs, pollInterval: .seconds(5)).reason.contains("cannot see"))
        #expect(FileSystemKind(magic: 0x1234).name == "0x1234")
    }

    @Test func nfsAttributeCacheTimeComesFromTheMountOptions() {
        let line = "36 35 0:45 / /srv/out rw,relatime shared:1 - nfs4 erp:/export rw,vers=4.2,rsize=1048576,acregmin=3,acregmax=30,hard"
        #expect(NFSAttributeCache.time(options: line) == .seconds(30))
        #expect(NFSAttributeCache.time(options: "rw,vers=3,actimeo=5") == .seconds(5))
        #expect(NFSAttributeCache.time(options: "rw,noac,vers=3") == .zero)
        #expect(NFSAttributeCache.time(options: "rw,vers=4.2") == .seconds(60))
    }

    /// Passes over an unchanged tree list no folder; a change lists exactly the folder it happened in.
    @Test func unchangedFoldersAreNotListedAgain() async throws {
        let harness = try WatchHarness { base in [.test("tree", base + "/tree", watchMode: .poll, pollInterval: .milliseconds(200))] }
        try await harness.waitUntilScanned()
        for folder in 0..<20 {
            try harness.mkdir("tree/d\(folder)")
            for file in 0..<5 { try harness.write("tree/d\(folder)/f\(file).txt") }
        }
        #expect(await harness.wait { harness.reports.count == 100 })
        // A folder stamped just before its last file arrived is listed once more by the next pass:
        // measure from a pass that started after the reports and whose listings are done.
        let after = harness.watcher.statistics.pollPasses
        #expect(await harness.wait { (harness.watcher.statistics.lastPollPass?.pass ?? 0) > after })
        let settled = harness.watcher.statistics
        #expect(await harness.wait { (harness.watcher.statistics.lastPollPass?.pass ?? 0) >= (settled.lastPollPass?.pass ?? 0) + 3 })
        #expect(harness.watcher.statistics.pollFoldersRead == settled.pollFoldersRead, "a pass listed an unchanged folder")
        try harness.write("tree/d7/new.txt")
        #expect(await harness.wait { harness.reports.count == 101 })
        #expect(harness.watcher.statistics.pollFoldersRead == settled.pollFoldersRead + 1, "only d7 changed")
        await harness.stop()
    }

    /// A reload that changes `watch_mode` switches the folder between watches and passes.
    @Test func reloadSwitchesBetweenInotifyAndPoll() async throws {
        let harness = try WatchHarness { base in [.test("out", base + "/out", watchMode: .inotify)] }
        try await harness.waitUntilScanned()
        #expect(harness.watcher.statistics.watches == 1)
        harness.watcher.updateRules([.test("out", harness.path("out"), watchMode: .poll, pollInterval: .milliseconds(300))])
        #expect(await harness.wait { harness.watcher.statistics.watchModes.values.first?.mode == .poll })
        #expect(await harness.wait { harness.watcher.statistics.watches == 0 }, "the folder's watch stays after switching to poll")
        try harness.write("out/while-polled.txt")
        #expect(await harness.wait { harness.reportedPaths == ["while-polled.txt"] })
        let passes = harness.watcher.statistics.pollPasses
        harness.watcher.updateRules([.test("out", harness.path("out"), watchMode: .inotify)])
        #expect(await harness.wait { harness.watcher.statistics.watchModes.values.first?.mode == .inotify })
        #expect(await harness.wait { harness.watcher.statistics.watches == 1 })
        try harness.write("out/while-watched.txt")
        #expect(await harness.wait { harness.reportedPaths == ["while-polled.txt", "while-watched.txt"] })
        #expect(harness.watcher.statistics.pollPasses <= passes + 1, "passes go on after switching back to inotify")
        await harness.stop()
    }

    @Test func pollModeOnALocalFolderFindsFilesWithoutWatches() async throws {
        let harness = try WatchHarness { base in [.test("local", base + "/out", watchMode: .poll, pollInterval: .milliseconds(300))] }
        try await harness.waitUntilScanned()
        #expect(harness.watcher.statistics.watchModes.values.first?.reason.hasPrefix("watch_mode: poll") == true)
        try harness.mkdir("out/a")
        try harness.write("out/a/x.txt")
        try harness.write("out/y.txt")
        await harness.expectExactly(["a/x.txt", "y.txt"])
        #expect(harness.watcher.statistics.watches == 0)
        await harness.stop()
    }
}

private extension URL {
    /// Creates the (empty) file first, so `FileHandle(forWritingTo:)` can open it.
    func creatingIfNeeded() -> URL {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        return self
    }
}
