import Foundation
import Testing
@testable import FerryWatch

/// A kernel setting under /proc/sys, changed for one test and always put back.
struct Sysctl {
    let name: String
    var path: String { "/proc/sys/" + name.replacingOccurrences(of: ".", with: "/") }

    func read() throws -> Int {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(path) holds \(text)")
    }

    func write(_ value: Int) throws {
        do {
            try "\(value)\n".write(toFile: path, atomically: false, encoding: .utf8)
        } catch {
            Issue.record("cannot set \(name): these tests change kernel limits and must run as root (CI does): \(error)")
            throw error
        }
    }
}

/// Watches held by this user right now (the limit is per user), summed over its processes' inotify descriptors.
func inotifyWatchesInUse() -> Int {
    var total = 0
    let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    for pid in processes where Int(pid) != nil {
        var info = stat()
        guard stat("/proc/\(pid)", &info) == 0, info.st_uid == getuid() else { continue }
        let fdinfo = "/proc/\(pid)/fdinfo"
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: fdinfo)) ?? [] {
            guard let text = try? String(contentsOfFile: fdinfo + "/" + fd, encoding: .utf8) else { continue }
            total += text.components(separatedBy: "\n").filter { $0.hasPrefix("inotify wd:") }.count
        }
    }
    return total
}

/// Tests that lower global inotify limits: serialized so they never overlap, each restoring the value.
@Suite(.serialized) struct KernelLimitTests {
    @Test func burstThatOverflowsTheQueueStillYieldsEveryFileOnce() async throws {
        let queue = Sysctl(name: "fs.inotify.max_queued_events")
        let original = try queue.read()
        // The limit is copied into an inotify instance when it is created, so it only needs to be low
        // while the watcher starts.
        let watch = try await KernelLimitGate.exclusive {
            try queue.write(256)
            defer { try? queue.write(original) }
            let watch = try WatchHarness(logLevel: .info, gated: false) {
                [.test("burst", $0 + "/burst", settle: .milliseconds(500))]
            }
            try await watch.waitUntilScanned()
            return watch
        }
        #expect(try queue.read() == original)

        let count = 20_000
        var expected: [String] = []
        expected.reserveCapacity(count)
        for folder in 0..<4 { try watch.mkdir("burst/f\(folder)") }
        for index in 0..<count {
            let name = "f\(index % 4)/file\(index).dat"
            try watch.write("burst/" + name, bytes: 64)
            expected.append(name)
        }
        await watch.expectExactly(expected, quiet: .seconds(2), timeout: .seconds(180))
        let statistics = watch.watcher.statistics
        #expect(statistics.overflows >= 1, "the queue never overflowed, so this test proved nothing")
        #expect(statistics.reported == count)
        #expect(watch.log.contains("inotify queue overflowed; rescanning"))
        await watch.stop()
    }

    @Test func watchLimitNamesTheSysctlAndTheRootKeepsWorkingByScanning() async throws {
        let limit = Sysctl(name: "fs.inotify.max_user_watches")
        let original = try limit.read()
        let temp = try FerryTestSupportTemp.make()
        // Far more folders than the headroom left below, so watches other processes free meanwhile
        // cannot make room for all of them.
        for index in 0..<400 {
            try FileManager.default.createDirectory(atPath: temp.path + "/root/sub\(index)", withIntermediateDirectories: true)
        }
        let (watch, lowered) = try await KernelLimitGate.exclusive {
            let lowered = inotifyWatchesInUse() + 10
            try limit.write(lowered)
            defer { try? limit.write(original) }
            let watch = try WatchHarness(fallbackScan: .milliseconds(300), logLevel: .info, gated: false) { _ in
                [.test("limited", temp.path + "/root", settle: .milliseconds(200))]
            }
            let fellBack = await watch.wait(upTo: .seconds(20)) { watch.watcher.statistics.pollingRoots == 1 }
            try #require(fellBack, "the watcher never hit the lowered watch limit")
            return (watch, lowered)
        }
        #expect(try limit.read() == original)

        let problem = try #require(watch.watcher.statistics.lastProblem)
        #expect(problem.contains("fs.inotify.max_user_watches (now \(lowered))"))
        #expect(problem.contains("sysctl fs.inotify.max_user_watches=524288"))
        #expect(problem.contains("scans \(temp.path)/root every"))
        #expect(watch.log.matching("fs.inotify.max_user_watches").contains { $0.hasPrefix("info") })
        // Its watches were released rather than left half-working.
        #expect(watch.watcher.statistics.watches == 0)

        try WatchHarness.write(temp.path + "/root/top.txt")
        try WatchHarness.write(temp.path + "/root/sub7/deep.txt")
        try FileManager.default.createDirectory(atPath: temp.path + "/root/new/inner", withIntermediateDirectories: true)
        try WatchHarness.write(temp.path + "/root/new/inner/later.txt")
        await watch.wait { watch.reports.count >= 3 }
        try await Task.sleep(for: .seconds(1))
        #expect(watch.reports.map(\.file.relativePath).sorted() == ["new/inner/later.txt", "sub7/deep.txt", "top.txt"])
        await watch.stop()
    }

    @Test func tenThousandIdleFoldersCauseNoWakeupsBesidesReconciliation() async throws {
        let watch = try WatchHarness(reconcile: .seconds(1), logLevel: .info, prepare: { base in
            for outer in 0..<100 {
                for inner in 0..<100 {
                    try FileManager.default.createDirectory(atPath: "\(base)/idle/d\(outer)/e\(inner)", withIntermediateDirectories: true)
                }
            }
        }) { [.test("idle", $0 + "/idle")] }
        try await watch.waitUntilScanned()
        let watching = await watch.wait(upTo: .seconds(60)) { watch.watcher.statistics.watches == 10_101 }
        try #require(watching, "expected 10,101 watches, have \(watch.watcher.statistics.watches)")
        let thread = try #require(watch.watcher.readerThreadProcPath)
        func timeslices() throws -> Int {
            let fields = try String(contentsOfFile: thread + "/schedstat", encoding: .utf8).split(separator: " ")
            return try #require(Int(fields[2].trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let before = watch.watcher.statistics
        let slicesBefore = try timeslices()
        try await Task.sleep(for: .milliseconds(3500))
        let after = watch.watcher.statistics
        let slicesAfter = try timeslices()

        let timerFires = after.timerWakeups - before.timerWakeups
        let reconciliations = after.scans - before.scans
        // The reader thread slept in poll() the whole time: reconciliation scans read folders, which
        // generates no event the watch subscribes to.
        #expect(slicesAfter == slicesBefore, "the inotify reader thread ran \(slicesAfter - slicesBefore) times while idle")
        #expect(after.readerWakeups == before.readerWakeups)
        // Every timer fire was a reconciliation: no per-folder or per-file timers exist.
        #expect(timerFires == reconciliations)
        #expect(timerFires >= 1)
        #expect(after.reported == 0)
        await watch.stop()
    }
}
