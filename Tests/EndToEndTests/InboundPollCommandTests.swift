import Foundation
import FerryTestSupport
import Testing

/// `ferry poll RULE`, with and without a running daemon, as an operator would type it.
struct InboundPollCommandTests {
    @Test func pollWithoutAndThroughTheDaemon() async throws {
        let help = try FerryBinary.run(["poll", "--help"])
        try #require(help.stdout.contains("USAGE: ferry poll"), "this ferry binary has no `poll` command: InboundPoller is not wired into Daemon and the CLI yet (the inbound report has the wiring)")
        let emulator = try Emulator.start()
        let root = try TempDirectory(prefix: "ferry-e2e-poll")
        let inbox = root.path + "/inbox"
        let configPath = root.path + "/rules.yaml"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        let remote = emulator.partnerRoot + "/out/cmd"
        try FileManager.default.createDirectory(atPath: remote, withIntermediateDirectories: true)
        try Data("first".utf8).write(to: URL(fileURLWithPath: remote + "/one.csv"))
        try """
            version: 1
            state_dir: \(root.path)/state
            aws:
              region: \(emulator.region)
              endpoint_url: \(emulator.endpoint)
            connectors:
              partner:
                type: sftp
                connector_id: \(emulator.sftpConnectorId)
            inbound:
              - name: reports
                connector: partner
                remote_directory_path: /out/cmd
                schedule: "0 3 1 1 *"
                min_age: 0s
                local_directory_path: s3://\(emulator.inboundBucket)/reports/
                download_to: \(inbox)

            """.write(toFile: configPath, atomically: true, encoding: .utf8)

        // No daemon: the command polls by itself.
        var result = try FerryBinary.run(["poll", "reports", "--config", configPath], environment: emulator.environment)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("reports: ok: listed 1, requested 1, retrieved 1, downloaded 1, finished 1"), "\(result.stdout)")
        #expect(FileManager.default.contents(atPath: inbox + "/one.csv") == Data("first".utf8))

        // A daemon runs (its cron rule is not due for months): the command goes through it.
        let daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log")
        #expect(await eventually(timeout: 20) { FileManager.default.fileExists(atPath: root.path + "/state/poll-requests") })
        try Data("second".utf8).write(to: URL(fileURLWithPath: remote + "/two.csv"))
        result = try FerryBinary.run(["poll", "reports", "--config", configPath], environment: emulator.environment)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("requested 1"), "\(result.stdout)")
        #expect(FileManager.default.contents(atPath: inbox + "/two.csv") == Data("second".utf8))
        #expect(daemon.log.contains("inbound poll done"), "the daemon, not the command, polled")

        // `ferry status --json`, field by field, for the inbound rule.
        let status = try FerryBinary.run(["status", "--json", "--config", configPath])
        #expect(status.status == 0, "healthy: \(status.stdout)\(status.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect(json["health"] as? String == "healthy")
        let inbound = try #require((json["inbound"] as? [[String: Any]])?.first)
        #expect(inbound["rule"] as? String == "reports")
        #expect(inbound["retrieved24h"] as? Int == 2)
        #expect(inbound["in_progress"] as? Int == 0)
        #expect(inbound["failed"] as? Int == 0)
        #expect(inbound["refused"] as? Int == 0)
        #expect(inbound["last_poll_error"] == nil)
        #expect((inbound["last_poll_result"] as? String)?.contains("requested 1") == true, "\(inbound)")
        #expect(inbound["last_poll_finished"] is String)
        #expect(inbound["next_poll"] is String, "the cron rule's next tick")

        result = try FerryBinary.run(["poll", "nope", "--config", configPath], environment: emulator.environment)
        #expect(result.status != 0)
        #expect(result.stderr.contains("no inbound rule named 'nope'"), "\(result.stderr)")
        #expect(await daemon.stop() == 0)
    }
}
