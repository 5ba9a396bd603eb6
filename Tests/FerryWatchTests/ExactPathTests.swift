import FerrySystem
import Foundation
import FerryTestSupport
import Testing
@testable import FerryWatch

/// Issue #13: names are bytes, and no path component is ever a symbolic link.
@Suite struct ExactPathTests {
    /// Linux names are bytes: NFC "café" and NFD "café" are two files, although Swift's `String ==`
    /// calls them equal. Both must be reported, promptly, each once.
    @Test func unicodeTwinsAreTwoFilesReportedSeparately() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        let composed = "caf\u{E9}.edi"
        let decomposed = "cafe\u{301}.edi"
        #expect(composed == decomposed, "Swift String equality is canonical equivalence; the test relies on it")
        try watch.write("out/" + composed, bytes: 111)
        try watch.write("out/" + decomposed, bytes: 222)
        // Folders too: twin folder names are two folders with their own files.
        try watch.mkdir("out/dir\u{E9}")
        try watch.mkdir("out/dire\u{301}")
        try watch.write("out/dir\u{E9}/a.edi", bytes: 333)
        try watch.write("out/dire\u{301}/b.edi", bytes: 444)
        // Well within the 600 s reconciliation: the second twin must not wait for it.
        await watch.wait(upTo: .seconds(60)) { watch.reports.count >= 4 }
        try await Task.sleep(for: .milliseconds(800))
        let reported = watch.reports.map { [UInt8]($0.file.relativePath.utf8) }
        let expected = [composed, decomposed, "dir\u{E9}/a.edi", "dire\u{301}/b.edi"].map { [UInt8]($0.utf8) }
        #expect(reported.count == 4, "reported: \(watch.reports.map(\.file.relativePath))")
        #expect(Set(reported) == Set(expected))
        let sizes = Dictionary(watch.reports.map { ([UInt8]($0.file.relativePath.utf8), $0.file.version.size) }) { a, _ in a }
        #expect(sizes[[UInt8](composed.utf8)] == 111)
        #expect(sizes[[UInt8](decomposed.utf8)] == 222)
        #expect(sizes[[UInt8]("dire\u{301}/b.edi".utf8)] == 444)
        #expect(watch.watcher.statistics.watches == 3)
        await watch.stop()
    }

    /// The tenant's folder is replaced by a link to another tenant's tree while watched: nothing of the
    /// other tenant is ever reported, not after reconciliations, not by re-attaching through the link.
    @Test func rootWhoseParentBecomesASymlinkIsLostAndNeverFollowed() async throws {
        let watch = try WatchHarness(reconcile: .seconds(1), prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/tenantB/outbox", withIntermediateDirectories: true)
            try WatchHarness.write(base + "/tenantB/outbox/payroll-b.csv", bytes: 2048)
        }) { [.test("a", $0 + "/tenantA/outbox")] }
        try await watch.waitUntilScanned()
        try watch.write("tenantA/outbox/a.csv")
        await watch.expectExactly(["a.csv"], quiet: .milliseconds(100))

        try watch.rename("tenantA", "tenantA.old")
        #expect(symlink(watch.path("tenantB"), watch.path("tenantA")) == 0)
        // Written into the moved-away folder, whose watch still exists, under a path that now names B.
        try watch.write("tenantA.old/outbox/stale.csv")
        try watch.write("tenantB/outbox/new-b.csv")
        let lost = await watch.wait { watch.log.contains("symbolic link") && watch.watcher.statistics.missingRoots == 1 }
        #expect(lost, "log: \(watch.log.lines.withLock { $0 })")
        // Several reconciliations and root checks later, still nothing from B.
        try await Task.sleep(for: .milliseconds(3500))
        try watch.write("tenantB/outbox/later-b.csv")
        try await Task.sleep(for: .milliseconds(1500))
        #expect(watch.reportedPaths == ["a.csv"])
        #expect(watch.watcher.statistics.missingRoots == 1)
        #expect(watch.watcher.statistics.watches == 0)
        #expect(watch.watcher.statistics.lastProblem?.contains(watch.path("tenantA")) == true)
        #expect(watch.log.matching("symbolic link").allSatisfy { !$0.hasPrefix("error") && !$0.hasPrefix("warning") })
        await watch.stop()
    }

    @Test func rootThroughASymlinkedParentAtStartIsNeverWatched() async throws {
        let watch = try WatchHarness(reconcile: .seconds(1), createRoots: false, prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/real/outbox", withIntermediateDirectories: true)
            try WatchHarness.write(base + "/real/outbox/payroll.csv")
            guard symlink(base + "/real", base + "/link") == 0 else { throw POSIXError(.EIO) }
        }) { [.test("linked", $0 + "/link/outbox")] }
        try await watch.waitUntilScanned()
        try watch.write("real/outbox/later.csv")
        try await Task.sleep(for: .milliseconds(2500))
        #expect(watch.reports.isEmpty)
        #expect(watch.watcher.statistics.watches == 0)
        #expect(watch.watcher.statistics.missingRoots == 1)
        let lines = watch.log.matching("symbolic link")
        #expect(lines.contains { $0.hasPrefix("info") && $0.contains(watch.path("link")) }, "log: \(watch.log.lines.withLock { $0 })")
        #expect(watch.watcher.statistics.lastProblem?.contains("symbolic link") == true)
        await watch.stop()
    }
}

/// The no-link opener itself, both with openat2 and with the per-component fallback older kernels get.
@Suite struct SafeOpenTests {
    @Test func aLinkInAnyComponentIsRefusedByBothWays() throws {
        let temp = try FerryTestSupportTemp.make()
        let base = temp.path
        try FileManager.default.createDirectory(atPath: base + "/real/outbox", withIntermediateDirectories: true)
        try WatchHarness.write(base + "/real/outbox/a.edi")
        #expect(symlink(base + "/real", base + "/link") == 0)
        #expect(symlink(base + "/real/outbox/a.edi", base + "/real/outbox/b.edi") == 0)
        let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC
        let openers: [(String, (Int32, String) throws -> Int32)] = [
            ("openat2", { try SafeOpen.below($0, $1, flags: flags) }),
            ("component-wise", { try SafeOpen.componentWise($0, $1, flags: flags) }),
        ]
        let root = open(base + "/real", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(root >= 0)
        defer { close(root) }
        for (name, opener) in openers {
            let good = try opener(AT_FDCWD, base + "/real/outbox/a.edi")
            close(good)
            let below = try opener(root, "outbox/a.edi")
            close(below)
            for refused in [base + "/link/outbox/a.edi", base + "/real/outbox/b.edi"] {
                #expect(throws: WatchError.self, "\(name) opened \(refused)") { close(try opener(AT_FDCWD, refused)) }
            }
            #expect(throws: WatchError.self, "\(name) opened a link below the root") { close(try opener(root, "outbox/b.edi")) }
        }
        if case .failure(.symbolicLink(let link)) = RootHandle.open(base + "/link/outbox") {
            #expect(link == base + "/link")
        } else {
            Issue.record("a root through a linked parent was opened")
        }
    }
}

/// The engine's way to open what the watcher reported.
@Suite struct LinkFreeFileTests {
    @Test func opensTheReportedVersionAndRefusesALinkedParent() throws {
        let temp = try FerryTestSupportTemp.make()
        let base = temp.path
        try FileManager.default.createDirectory(atPath: base + "/tenantB/outbox", withIntermediateDirectories: true)
        try WatchHarness.write(base + "/tenantB/outbox/pay.csv", bytes: 321)
        let fd = try LinkFreeFile.openForReading(base + "/tenantB/outbox/pay.csv")
        defer { close(fd) }
        let version = try FileVersion(fileDescriptor: fd)
        #expect(version.size == 321)
        #expect(try WriteActivity.isOpenForWriting(fileDescriptor: fd) == false)

        #expect(symlink(base + "/tenantB", base + "/tenantA") == 0)
        #expect { try LinkFreeFile.openForReading(base + "/tenantA/outbox/pay.csv") } throws: { error in
            let error = error as? WatchError
            return error?.code == .symbolicLink && error?.message.contains(base + "/tenantA") == true
        }
        #expect { try LinkFreeFile.openForReading("relative/pay.csv") } throws: { ($0 as? WatchError)?.errno == .invalidArgument }
    }

    /// A folder an ordinary user cannot search: the open fails with the call's own EACCES, carried as
    /// the error's cause with the permissions advice.
    @Test func openingBelowAnUnreadableFolderReportsPermissionDenied() throws {
        let temp = try TempDirectory()
        try FileManager.default.createDirectory(atPath: temp.path + "/outbox", withIntermediateDirectories: true)
        try WatchHarness.write(temp.path + "/outbox/pay.csv", bytes: 3)
        #expect(chmod(temp.path + "/outbox", 0o000) == 0)
        defer { chmod(temp.path + "/outbox", 0o755) }
        let path = temp.path + "/outbox/pay.csv"
        let error = try WithoutRootAccess.run { () -> WatchError? in
            do throws(WatchError) {
                close(try LinkFreeFile.openForReading(path))
                return nil
            } catch {
                return error
            }
        }
        #expect(error?.code == .systemCall)
        #expect(error?.errno == .permissionDenied)
        #expect(error?.cause?.errno == .permissionDenied)
        #expect(error?.message.contains("Permission denied (errno 13) — give the ferry user read/write access") == true, "\(String(describing: error))")
    }
}
