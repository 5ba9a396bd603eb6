import Foundation
import Testing
import FerryTestSupport

/// `ferry run` under systemd: the notify protocol, SIGHUP reloads, SIGTERM.
@Suite(.serialized) struct DaemonLifecycleTests {
    @Test func speaksTheNotifyProtocol() async throws {
        let scenario = try OutboundScenario()
        let socket = try NotifySocket(path: scenario.root.path + "/notify.sock")
        scenario.daemon = try FerryDaemon(config: scenario.configPath,
                                          environment: scenario.emulator.environment.merging(
                                            ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000"]) { $1 },
                                          logPath: scenario.root.path + "/ferry.log")
        let startup = socket.collect(timeout: 30) { $0.contains("WATCHDOG=1") }
        let joined = startup.joined(separator: "\n")
        #expect(joined.contains("READY=1"), "got: \(startup)")
        #expect(joined.contains("STATUS=1 outbound, 0 inbound rules;"), "got: \(startup)")
        #expect(joined.contains("WATCHDOG=1"), "WATCHDOG_USEC=1s means a ping every 0.5 s; got: \(startup)")
        // READY comes only once the watches are set up: a file dropped right after is found.
        try Data("after ready\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/after-ready.edi"))
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["after-ready.edi"] != nil })
        let pings = socket.collect(timeout: 2) { _ in false }.filter { $0.contains("WATCHDOG=1") }
        #expect(pings.count >= 2, "pings keep coming: \(pings.count) in 2 s")
        scenario.daemon?.signal(SIGTERM)
        let shutdown = socket.collect(timeout: 30) { $0.contains("STOPPING=1") }
        #expect(shutdown.contains { $0.contains("STOPPING=1") })
        #expect(await scenario.daemon?.waitForExit(timeout: 30) == 0, "one SIGTERM drains and exits 0")
    }

    @Test func brokenReloadKeepsTheRunningRulesAndGoodReloadAddsAndRemoves() async throws {
        let scenario = try OutboundScenario()
        try scenario.start()
        try Data("first\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/first.edi"))
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["first.edi"] != nil })
        let good = try String(contentsOfFile: scenario.configPath, encoding: .utf8)

        // A broken file: every error logged with its line:column, and the old rules keep working.
        let broken = good.replacingOccurrences(of: "    after_send: archive", with: "    after_sent: archive\n    retries: lots")
        try broken.write(toFile: scenario.configPath, atomically: true, encoding: .utf8)
        scenario.daemon?.signal(SIGHUP)
        #expect(await eventually(timeout: 10) { scenario.daemon?.log.contains("reload refused") == true })
        let log = scenario.daemon?.log ?? ""
        // Positions as an editor shows them: 1-based line of each bad key in the file just written.
        let lines = broken.components(separatedBy: "\n")
        let sent = try #require(lines.firstIndex { $0.hasPrefix("    after_sent:") }) + 1
        #expect(log.contains("\(scenario.configPath):\(sent):5: error: unknown key 'after_sent' in this outbound rule; did you mean 'after_send'?"), "log:\n\(log.suffix(2000))")
        #expect(log.contains("\(scenario.configPath):\(sent + 1):14: error: 'retries' must be a whole number from 0 to 100, got 'lots'"))
        #expect(log.contains("\(scenario.configPath):\(sent + 2):5: error: duplicate key 'retries' (first defined at \(sent + 1):5)"))
        try Data("second\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/second.edi"))
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["second.edi"] != nil }, "the running rules still send")

        // A good file that removes `invoices` and adds `reports` watching another folder.
        let reports = scenario.root.path + "/reports"
        try FileManager.default.createDirectory(atPath: reports, withIntermediateDirectories: true)
        let replaced = good.replacingOccurrences(of: "  - name: invoices\n    watch: \(scenario.outbox)",
                                                 with: "  - name: reports\n    watch: \(reports)")
        #expect(replaced != good)
        try replaced.write(toFile: scenario.configPath, atomically: true, encoding: .utf8)
        scenario.daemon?.signal(SIGHUP)
        #expect(await eventually(timeout: 10) { scenario.daemon?.log.contains("rules reloaded") == true })
        try Data("report\n".utf8).write(to: URL(fileURLWithPath: reports + "/report.edi"))
        try Data("ignored now\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/third.edi"))
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["report.edi"] != nil }, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        try await Task.sleep(for: .seconds(2))
        #expect(scenario.partnerFiles()["third.edi"] == nil, "the removed rule no longer sends")
        #expect(FileManager.default.fileExists(atPath: scenario.outbox + "/third.edi"))
        #expect(scenario.daemon?.process.isRunning == true)
    }
}
