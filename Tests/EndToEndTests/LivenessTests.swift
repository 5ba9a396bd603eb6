import Foundation
import Testing
import FerryTestSupport

/// Liveness (#16, must show 6): systemd's watchdog is pinged only while every loop moves. A journal on a
/// frozen file system (a real ext4 loop mount, `fsfreeze -f`) stops the outbound loop inside SQLite:
/// the pings must stop, `ferry status` must name the stuck loops without hanging on the journal itself,
/// and once the file system thaws the pings resume and the file waiting goes out.
@Suite(.serialized) struct LivenessTests {
    @Test func aFrozenJournalStopsThePingsAndStatusNamesTheStuckLoops() async throws {
        let scenario = try OutboundScenario()
        let state = try LoopMount(image: scenario.root.path + "/state.img", mountPoint: scenario.stateDir)
        defer { state.unmount() }
        let socket = try NotifySocket(path: scenario.root.path + "/notify.sock")
        // WATCHDOG_USEC=4 s: a ping every 2 s, and a loop on one piece of work for 2 s counts as stuck.
        scenario.daemon = try FerryDaemon(config: scenario.configPath,
                                          environment: scenario.emulator.environment.merging(
                                            ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "4000000"]) { $1 },
                                          logPath: scenario.root.path + "/ferry.log")
        defer {
            // Thawed before the daemon is stopped: a process blocked on a frozen file system cannot exit.
            state.thaw()
            scenario.daemon?.stop(timeout: 10)
            scenario.daemon = nil
        }
        let startup = socket.collect(timeout: 30) { $0.contains("WATCHDOG=1") }
        #expect(startup.joined().contains("WATCHDOG=1"), "pings while healthy; got \(startup)")
        try scenario.drop(1, prefix: "before")
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["before-0.edi"] != nil })

        try state.freeze()
        try scenario.drop(1, prefix: "frozen")
        // The file settles (300 ms), the outbound loop journals it and blocks in the kernel. Within a few
        // seconds the pings stop and STATUS= names what is stuck.
        let stuckAnnounced = socket.collect(timeout: 30) { $0.contains("STATUS=STUCK") }
        let announcement = try #require(stuckAnnounced.last { $0.contains("STATUS=STUCK") }, "no STUCK status; got \(stuckAnnounced)")
        #expect(announcement.contains("journal"), "\(announcement)")
        // Then nothing but status lines for three ping intervals: systemd would restart ferry.
        let whileStuck = socket.collect(timeout: 6) { _ in false }
        #expect(!whileStuck.contains { $0.contains("WATCHDOG=1") }, "pings kept coming while the journal was frozen: \(whileStuck)")
        #expect(scenario.partnerFiles()["frozen-0.edi"] == nil)

        // `ferry status` answers (it must not open the frozen journal), exits 1 and names the loops.
        let status = try runWithTimeout(FerryBinary.path, ["status", "--json", "--config", scenario.configPath], seconds: 20, unblock: state.thaw)
        #expect(status.status == 1, "status exit \(status.status): \(status.output)")
        let json = try #require((try? JSONSerialization.jsonObject(with: Data(status.output.utf8))) as? [String: Any], "\(status.output)")
        let stuck = (json["stuck"] as? [[String: Any]] ?? []).compactMap { $0["loop"] as? String }
        #expect(stuck.contains("journal"), "stuck loops: \(stuck)")
        // Which loops reach the journal first depends on timing (the watcher asking whether a file is
        // known, the intake journaling it, the tracker recording the last transfer); at least one of the
        // pipeline's loops must be named as waiting on it.
        let pipelineLoops = stuck.filter { $0 != "journal" && $0 != "task pool" }
        #expect(!pipelineLoops.isEmpty, "a pipeline loop waits for the journal: \(stuck)")
        let problems = json["problems"] as? [String] ?? []
        #expect(problems.contains { $0.contains("loop 'journal' stuck") }, "\(problems)")
        let text = try runWithTimeout(FerryBinary.path, ["status", "--config", scenario.configPath], seconds: 20, unblock: state.thaw)
        #expect(text.output.contains("DEGRADED") && text.output.contains("loop 'journal' stuck"), "\(text.output)")

        state.thaw()
        let resumed = socket.collect(timeout: 30) { $0.contains("WATCHDOG=1") }
        #expect(resumed.contains { $0.contains("WATCHDOG=1") }, "pings resume after the thaw; got \(resumed)")
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["frozen-0.edi"] != nil }, "the file waiting goes out")
        #expect(await eventually(timeout: 30) {
            (try? runWithTimeout(FerryBinary.path, ["status", "--config", scenario.configPath], seconds: 20).status) == 0
        }, "status healthy again")
    }

    /// Runs a command; if it has not exited after `seconds`, calls `unblock` (thawing the file system:
    /// a process blocked on a frozen one cannot even be killed) and kills it, so a hang fails the test.
    func runWithTimeout(_ executable: String, _ arguments: [String], seconds: Double,
                        unblock: () -> Void = {}) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let outputPath = NSTemporaryDirectory() + "ferry-liveness-\(UUID().uuidString).out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = try #require(FileHandle(forWritingAtPath: outputPath))
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        var hung = false
        if process.isRunning {
            hung = true
            unblock()
            process.terminate()
        }
        process.waitUntilExit()
        try? output.close()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (hung ? -1 : process.terminationStatus, hung ? "HUNG for \(seconds) s: " + text : text)
    }
}
