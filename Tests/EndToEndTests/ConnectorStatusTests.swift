import Foundation
import FerryTestSupport
import Testing

/// Issue #15 must-show 3: DescribeConnector drives whether a connector gets work. PENDING → no
/// StartFileTransfer, `ferry status` exits 1 and says PENDING; ERRORED → status shows the ErrorMessage;
/// ACTIVE again → the queue drains. And a connector of another type than the rules say is held too.
struct ConnectorStatusTests {
    @Test func aPendingOrErroredConnectorGetsNoWorkAndStatusSaysWhyUntilItIsActive() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "200ms")
        try scenario.emulator.setConnectorStatus(scenario.emulator.sftpConnectorId, "PENDING")
        try scenario.start()
        let written = try scenario.drop(5)
        func problems() -> String {
            ((try? scenario.status().json["problems"]) as? [String] ?? []).joined(separator: "\n")
        }
        let saysPending = await eventually(timeout: 30) { problems().contains("PENDING") }
        #expect(saysPending, "status never said PENDING: \(problems()); log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        #expect(try scenario.status().exit == 1)
        // Long enough for the files to settle, upload and batch (settle 300 ms, max_wait 200 ms) many
        // times over: had they been submitted, the emulator would have logged it.
        try await Task.sleep(for: .seconds(4))
        #expect(try scenario.startFileTransferCalls() == 0, "StartFileTransfer was called on a PENDING connector")
        let connectors = try scenario.status().json["connectors"] as? [[String: Any]] ?? []
        #expect(connectors.first?["status"] as? String == "PENDING", "status --json connectors: \(connectors)")
        #expect(connectors.first?["egress_ip_addresses"] as? [String] == ["127.0.0.1"])
        // Held files are queued, each behind the ones journaled before it (`ferry explain`).
        var ahead: [Int] = []
        for name in written.keys {
            let explained = try FerryBinary.run(["explain", scenario.outbox + "/" + name, "--config", scenario.configPath]).stdout
            if explained.contains("nothing of the rule is queued ahead of it") { ahead.append(0) }
            if let range = explained.range(of: #"(\d+) file\(s\) of the rule are queued ahead of it"#, options: .regularExpression) {
                ahead.append(Int(explained[range].split(separator: " ")[0]) ?? -1)
            }
        }
        #expect(ahead.sorted() == Array(0..<written.count), "places in the queue: \(ahead)")

        try scenario.emulator.setConnectorStatus(scenario.emulator.sftpConnectorId, "ERRORED", errorMessage: "The secret for the partner's credentials was not found")
        let showsError = await eventually(timeout: 30) { problems().contains("The secret for the partner's credentials was not found") }
        #expect(showsError, "status never showed the ErrorMessage: \(problems())")
        #expect(try scenario.startFileTransferCalls() == 0, "StartFileTransfer was called on an ERRORED connector")
        let text = try FerryBinary.run(["status", "--config", scenario.configPath]).stdout
        #expect(text.contains("ERRORED") && text.contains("SERVICE_MANAGED 127.0.0.1"), "status text:\n\(text)")

        try scenario.emulator.setConnectorStatus(scenario.emulator.sftpConnectorId, "ACTIVE")
        let drained = await eventually(timeout: 60) { scenario.partnerFiles().count == written.count }
        #expect(drained, "the queue did not drain once ACTIVE; log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        #expect(scenario.partnerFiles() == written)
        #expect(await eventually(timeout: 30) { (try? scenario.status().exit) == 0 }, "status: \(problems())")
        let log = scenario.daemon?.log ?? ""
        #expect(log.contains("connector not usable") && log.contains("connector usable again"))
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test func aConnectorOfAnotherTypeThanTheRulesSayIsHeldAndNamed() async throws {
        // The rules call the AS2 connector an SFTP one.
        let scenario = try OutboundScenario(batchMaxWait: "200ms")
        try scenario.editRules(replacing: "connector_id: \(scenario.emulator.sftpConnectorId)", with: "connector_id: \(scenario.emulator.as2ConnectorId)")
        try scenario.start()
        _ = try scenario.drop(2)
        let named = await eventually(timeout: 30) {
            ((try? scenario.status().json["problems"]) as? [String] ?? []).contains { $0.contains("AS2 connector in AWS, but the rules say `type: sftp`") }
        }
        #expect(named, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        try await Task.sleep(for: .seconds(2))
        #expect(try scenario.startFileTransferCalls() == 0)
        let test = try FerryBinary.run(["test-connection", "partner", "--config", scenario.configPath], environment: scenario.emulator.environment)
        #expect(test.status == 1 && test.stdout.contains("rules say `type: sftp`"), "test-connection: \(test.stdout) \(test.stderr)")
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test func testConnectionShowsStatusEgressAndThePartnersHostKey() throws {
        let scenario = try OutboundScenario()
        let test = try FerryBinary.run(["test-connection", "partner", "--config", scenario.configPath], environment: scenario.emulator.environment)
        #expect(test.status == 0, "\(test.stdout) \(test.stderr)")
        #expect(test.stdout.contains("SFTP connector, status ACTIVE"), "\(test.stdout)")
        #expect(test.stdout.contains("egress: SERVICE_MANAGED, addresses 127.0.0.1"), "\(test.stdout)")
        #expect(test.stdout.contains("partner host key: ssh-ed25519 "), "\(test.stdout)")
    }
}
