import Foundation
import Testing
import FerrySystem
import FerryTestSupport
@testable import FerryWatch

/// A writer in another process, as an application is: a shell opens the file for appending, writes a
/// header, then holds the file open without writing until the test opens its gate, writes the rest
/// and exits (which closes the file). The pause is as long as the test wants, longer than any settle.
final class PausingWriter {
    let path: String
    let gate: String
    private let process: Process
    static let header = "HEADER;"
    static let rest = String(repeating: "payroll line;", count: 160)

    init(path: String) throws {
        self.path = path
        gate = path + ".gate-\(UUID().uuidString)"
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec 3>>\"$1\"; printf %s \"$2\" >&3; while [ ! -e \"$3\" ]; do sleep 0.05; done; printf %s \"$4\" >&3",
                             "writer", path, Self.header, gate, Self.rest]
        try process.run()
    }

    var fullSize: Int64 { Int64(Self.header.utf8.count + Self.rest.utf8.count) }

    /// Waits until the header is on disk, so the file exists and is held open. The deadline is generous:
    /// the module suites run in parallel on small CI machines, where starting a shell has been seen to
    /// take longer than 10 s; it bounds a hang, it does not measure anything.
    func waitForHeader() async throws {
        let end = ContinuousClock.now.advanced(by: .seconds(90))
        while ContinuousClock.now < end {
            var info = stat()
            if stat(path, &info) == 0, info.st_size >= Int64(Self.header.utf8.count) { return }
            if !process.isRunning {
                Issue.record("the writer exited (status \(process.terminationStatus)) before writing its header to \(path)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("the writer never wrote its header to \(path) in 90 s")
    }

    /// Lets the writer write the rest and exit; returns once it has.
    func finish() async throws {
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        try? FileManager.default.removeItem(atPath: gate)
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(atPath: gate)
    }
}

/// Issue #13, half-sent files: a file that any process holds open for writing is never reported,
/// however it was found and however long the writer pauses.
@Suite struct OpenWriterTests {
    @Test func fileOpenForWritingAtStartIsReportedOnlyAfterTheWriterCloses() async throws {
        var writer: PausingWriter?
        let watch = try WatchHarness(reconcile: .seconds(1)) { base in
            try FileManager.default.createDirectory(atPath: base + "/out", withIntermediateDirectories: true)
            writer = try PausingWriter(path: base + "/out/payroll.csv")
        } rules: { [.test("out", $0 + "/out")] }
        let running = try #require(writer)
        try await running.waitForHeader()
        try await watch.waitUntilScanned()
        // The start-up scan and the reconciliations after it all find the file open and unchanged.
        try await Task.sleep(for: .milliseconds(2500))
        #expect(watch.reports.isEmpty, "reported while the writer still held it open")
        // The settle check that found it open counts it; under load (CI: every module's tests at once on
        // two cores) it may come after those 2.5 s, so it is waited for.
        #expect(await eventually(timeout: 60, interval: 0.05) { watch.watcher.statistics.stillOpenForWriting > 0 },
                "the settle check never found the file open for writing")
        #expect(watch.reports.isEmpty, "reported while the writer still held it open")
        try await running.finish()
        await watch.expectExactly(["payroll.csv"])
        #expect(watch.reports.first?.file.version.size == running.fullSize)
        await watch.stop()
    }

    @Test func attribChangeOnAnOpenFileDoesNotReportIt() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        let writer = try PausingWriter(path: watch.path("out/payroll.csv"))
        try await writer.waitForHeader()
        // chmod and touch give IN_ATTRIB, which makes the file a candidate like a close does.
        #expect(chmod(watch.path("out/payroll.csv"), 0o640) == 0)
        try await Task.sleep(for: .milliseconds(600))
        #expect(utimes(watch.path("out/payroll.csv"), nil) == 0)
        try await Task.sleep(for: .milliseconds(1500))
        #expect(watch.reports.isEmpty, "reported while the writer still held it open")
        try await writer.finish()
        await watch.expectExactly(["payroll.csv"])
        #expect(watch.reports.first?.file.version.size == writer.fullSize)
        await watch.stop()
    }

    @Test func openFileMovedIntoTheFolderIsReportedOnlyAfterTheWriterCloses() async throws {
        let watch = try WatchHarness(prepare: { base in
            try FileManager.default.createDirectory(atPath: base + "/staging", withIntermediateDirectories: true)
        }) { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        let writer = try PausingWriter(path: watch.path("staging/payroll.csv"))
        try await writer.waitForHeader()
        try watch.rename("staging/payroll.csv", "out/payroll.csv")
        try await Task.sleep(for: .milliseconds(2000))
        #expect(watch.reports.isEmpty, "reported while the writer still held it open")
        try await writer.finish()
        await watch.expectExactly(["payroll.csv"])
        #expect(watch.reports.first?.file.version.size == writer.fullSize)
        await watch.stop()
    }
}

extension OpenWriterTests {
    /// The engine declines a report when its own check finds a writer; recheck(path:) brings the same
    /// version back once the writer is gone, although the writer changed nothing.
    @Test func recheckReportsTheSameVersionAgainOnceNobodyWrites() async throws {
        let watch = try WatchHarness { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.write("out/pay.csv", bytes: 500)
        await watch.expectExactly(["pay.csv"], quiet: .milliseconds(200))
        // A writer opens it and holds it without writing; the engine saw it and declined.
        let fd = open(watch.path("out/pay.csv"), O_WRONLY | O_CLOEXEC)
        try #require(fd >= 0)
        watch.watcher.recheck(path: watch.path("out/pay.csv"))
        try await Task.sleep(for: .milliseconds(1200))
        #expect(watch.reports.count == 1, "reported again while open for writing")
        close(fd)
        await watch.expectExactly(["pay.csv", "pay.csv"])
        #expect(Set(watch.reports.map(\.file.version)).count == 1)
        await watch.stop()
    }
}

extension OpenWriterTests {
    /// As root the kernel always grants leases, so the refusal a unit without CAP_LEASE gets (EACCES on
    /// a file another user owns) is injected here, with the watcher's own wording for it.
    @Test func withoutLeasesFilesCompleteByStabilityAndTheOperatorIsToldOnce() async throws {
        let watch = try WatchHarness(logLevel: .info, writeCheck: { relative, folder, display in
            let refused = WatchActivityRefusal.eacces(display)
            return .unanswerable(FileStatus.of(relative, in: folder)?.version, refused)
        }) { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        try watch.write("out/a.edi")
        try watch.write("out/b.edi")
        await watch.expectExactly(["a.edi", "b.edi"])
        let statistics = watch.watcher.statistics
        #expect(statistics.writeCheckUnavailable)
        #expect(statistics.completedWithoutWriteCheck == 2)
        #expect(statistics.lastProblem?.contains("CAP_LEASE") == true)
        #expect(statistics.lastProblem?.contains("unchanged for their settle time") == true)
        let lines = watch.log.matching("CAP_LEASE")
        #expect(lines.count == 1, "said once, not per file: \(lines)")
        #expect(lines.allSatisfy { $0.hasPrefix("info") })
        await watch.stop()
    }
}

enum WatchActivityRefusal {
    static func eacces(_ path: String) -> WatchError {
        WriteActivity.refusal(WatchError(SystemError("fcntl(F_SETLEASE)", path: path, errno: .permissionDenied)),
                              path: path, owner: 65534)
    }
}

/// The public check the engine makes on its own read-only descriptor before upload and after_send.
@Suite struct WriteActivityTests {
    @Test func aWriterInThisProcessOrAnotherIsSeenAndAClosedOneIsNot() async throws {
        let temp = try FerryTestSupportTemp.make()
        let path = temp.path + "/payroll.csv"
        let writer = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        try #require(writer >= 0)
        let reader = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        try #require(reader >= 0)
        defer { close(reader) }
        #expect(try WriteActivity.isOpenForWriting(fileDescriptor: reader))
        close(writer)
        #expect(try WriteActivity.isOpenForWriting(fileDescriptor: reader) == false)

        let other = try PausingWriter(path: path)
        try await other.waitForHeader()
        #expect(try WriteActivity.isOpenForWriting(fileDescriptor: reader))
        try await other.finish()
        #expect(try WriteActivity.isOpenForWriting(fileDescriptor: reader) == false)
    }

    @Test func sigioCannotKillTheProcessOnceAnyCheckRan() throws {
        let temp = try FerryTestSupportTemp.make()
        try WatchHarness.write(temp.path + "/a.edi")
        let reader = open(temp.path + "/a.edi", O_RDONLY | O_CLOEXEC)
        try #require(reader >= 0)
        defer { close(reader) }
        _ = try WriteActivity.isOpenForWriting(fileDescriptor: reader)
        #expect(WriteActivity.sigioIsHarmless)
        var current = sigaction()
        #expect(sigaction(SIGIO, nil, &current) == 0)
        // SIG_IGN is the C pointer value 1; function pointers are not Equatable in Swift.
        #expect(unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self))
    }

    @Test func aWritableDescriptorIsRefusedWithAnActionableError() throws {
        let temp = try FerryTestSupportTemp.make()
        let fd = open(temp.path + "/a.edi", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect { try WriteActivity.isOpenForWriting(fileDescriptor: fd) } throws: { error in
            (error as? WatchError)?.code == .notReadOnly && "\(error)".contains("O_RDONLY")
        }
    }
}
