import Foundation
import FerryTestSupport
import Testing

/// Issue #15, "Reload misdelivers" and "Reload splits the budget": a SIGHUP that changes a running
/// connector's `connector_id` or `requests_per_second` applies at once, for every file not yet
/// submitted, and nothing is lost or sent twice across it.
struct ConnectorReloadTests {
    /// A second SFTP connector to the same partner, made through the emulator's CreateConnector (as an
    /// operator would make a replacement connector in AWS); returns its id.
    static func createSecondConnector(_ emulator: Emulator, like connectorID: String) throws -> String {
        let script = """
            import boto3, os, sys
            t = boto3.client("transfer", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
            c = t.describe_connector(ConnectorId=sys.argv[1])["Connector"]
            print(t.create_connector(Url=c["Url"], AccessRole=c["AccessRole"], SftpConfig=c["SftpConfig"])["ConnectorId"])
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, connectorID]
        process.environment = emulator.environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let id = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(process.terminationStatus == 0 && id.hasPrefix("c-"), "CreateConnector through boto3 failed (is boto3 installed? `make deps`): \(id)")
        return id
    }

    static func rules(root: String, outbox: String, emulator: Emulator, connectorID: String, rate: Int, maxFiles: Int) -> String {
        emulator.rulesHeader(stateDir: root + "/state", connectorID: connectorID, connectorLines: ["requests_per_second: \(rate)"]) + """
        outbound:
          - name: invoices
            watch: \(outbox)
            connector: partner
            remote_directory_path: /inbound
            settle: 200ms
            batch: { max_files: \(maxFiles), max_wait: 200ms }
            after_send: archive

        """
    }

    @Test func aReloadThatChangesTheConnectorIdSendsLaterFilesThroughTheNewConnectorAndLosesNothing() async throws {
        let emulator = try Emulator.start(transferDelayMs: 20)
        let replacement = try Self.createSecondConnector(emulator, like: emulator.sftpConnectorId)
        let root = try TempDirectory(prefix: "ferry-e2e-reload-connector")
        let outbox = root.path + "/outbox"
        let configPath = root.path + "/rules.yaml"
        try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: emulator.partnerRoot + "/inbound", withIntermediateDirectories: true)
        try Self.rules(root: root.path, outbox: outbox, emulator: emulator, connectorID: emulator.sftpConnectorId, rate: 20, maxFiles: 3)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log")
        #expect(await eventually(timeout: 30) { daemon.log.contains("ferry started") })

        func drop(_ names: [String]) throws {
            for name in names { try Data("payload of \(name)\n".utf8).write(to: URL(fileURLWithPath: outbox + "/" + name)) }
        }
        let before = (0..<15).map { "before-\($0).edi" }
        let after = (0..<15).map { "after-\($0).edi" }
        // A burst, and the reload while part of it is still waiting to be sent.
        try drop(before)
        #expect(await eventually(timeout: 60) { ((try? emulator.deliveries()) ?? []).count >= 3 })
        try Self.rules(root: root.path, outbox: outbox, emulator: emulator, connectorID: replacement, rate: 20, maxFiles: 3)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        let noticed = await eventually(timeout: 30) { daemon.log.contains("connector changed by reload") }
        #expect(noticed, "the reload's notice naming the old and new connector id is missing; log:\n\(daemon.log.suffix(2000))")
        let notice = daemon.log.split(separator: "\n").first { $0.contains("connector changed by reload") }.map(String.init) ?? ""
        #expect(notice.contains(emulator.sftpConnectorId) && notice.contains(replacement), "the notice names both ids: \(notice)")
        try drop(after)

        let everything = Set(before + after)
        func delivered() -> [Emulator.Delivery] { ((try? emulator.deliveries()) ?? []).filter { everything.contains(($0.remotePath as NSString).lastPathComponent) } }
        let complete = await eventually(timeout: 120) { Set(delivered().map { ($0.remotePath as NSString).lastPathComponent }) == everything }
        #expect(complete, "delivered \(delivered().count) of \(everything.count); log:\n\(daemon.log.suffix(3000))")
        try await Task.sleep(for: .seconds(2))
        let deliveries = delivered()
        var counts: [String: Int] = [:]
        for delivery in deliveries { counts[(delivery.remotePath as NSString).lastPathComponent, default: 0] += 1 }
        #expect(counts.values.allSatisfy { $0 == 1 }, "each file delivered once: \(counts.filter { $0.value != 1 })")
        // Files dropped after the reload go only through the replacement connector.
        let afterThroughOld = deliveries.filter { $0.connectorId != replacement && ($0.remotePath as NSString).lastPathComponent.hasPrefix("after-") }
        #expect(afterThroughOld.isEmpty, "files dropped after the reload went through the old connector: \(afterThroughOld.map(\.remotePath))")
        // Every transfer submitted before the reload was tracked to its end against its own connector:
        // nothing is quarantined as "outcome unknown".
        #expect(!FileManager.default.fileExists(atPath: outbox + "/.ferry/failed"), "files were quarantined: \(daemon.log.suffix(2000))")
        #expect(await daemon.stop() == 0)
    }

    /// A connector that a reload adds gets its own connector service, whose tracking loop runs although
    /// the daemon's group of parts was fixed at start ("connectors added by reload" runs it): its files
    /// are sent, tracked to COMPLETED and archived, like those of a connector the daemon started with.
    @Test func aConnectorAddedByAReloadTracksItsTransfersToTheEnd() async throws {
        let emulator = try Emulator.start(transferDelayMs: 20)
        let root = try TempDirectory(prefix: "ferry-e2e-reload-added")
        let outbox = root.path + "/outbox"
        let second = root.path + "/second"
        let configPath = root.path + "/rules.yaml"
        for folder in [outbox, second, emulator.partnerRoot + "/inbound/second"] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let base = Self.rules(root: root.path, outbox: outbox, emulator: emulator, connectorID: emulator.sftpConnectorId, rate: 20, maxFiles: 3)
        try base.write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log")
        #expect(await eventually(timeout: 30) { daemon.log.contains("ferry started") })
        let added = [
            "  second:", "    type: sftp", "    connector_id: \(emulator.sftpConnectorId)", "    staging: s3://\(emulator.stagingBucket)/second/",
            "outbound:", "  - name: second-out", "    watch: \(second)", "    connector: second", "    remote_directory_path: /inbound/second",
            "    settle: 200ms", "    batch: { max_files: 3, max_wait: 200ms }", "    after_send: archive", "",
        ].joined(separator: "\n")
        try base.replacingOccurrences(of: "outbound:\n", with: added).write(toFile: configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(await eventually(timeout: 30) { daemon.log.contains("rules reloaded") }, "log:\n\(daemon.log.suffix(2000))")
        let names = (0..<5).map { "added-\($0).edi" }
        for name in names { try Data("payload of \(name)\n".utf8).write(to: URL(fileURLWithPath: second + "/" + name)) }
        func archived() -> Set<String> {
            let files = FileManager.default.enumerator(atPath: second + "/.ferry/sent")?.allObjects as? [String] ?? []
            return Set(files.map { ($0 as NSString).lastPathComponent })
        }
        // Archived only after the tracker saw each transfer COMPLETED.
        let done = await eventually(timeout: 60) { archived().isSuperset(of: names) }
        #expect(done, "archived \(archived().sorted()); log:\n\(daemon.log.suffix(3000))")
        let delivered = ((try? emulator.deliveries()) ?? []).map(\.remotePath).filter { $0.hasPrefix("/inbound/second/") }
        #expect(Set(delivered.map { ($0 as NSString).lastPathComponent }) == Set(names) && delivered.count == names.count, "\(delivered)")
        #expect(await daemon.stop() == 0)
    }

    @Test func aReloadThatLowersTheRateAppliesToTheNextCalls() async throws {
        let emulator = try Emulator.start()
        let root = try TempDirectory(prefix: "ferry-e2e-reload-rate")
        let outbox = root.path + "/outbox"
        let configPath = root.path + "/rules.yaml"
        try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: emulator.partnerRoot + "/inbound", withIntermediateDirectories: true)
        try Self.rules(root: root.path, outbox: outbox, emulator: emulator, connectorID: emulator.sftpConnectorId, rate: 50, maxFiles: 1)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log")
        #expect(await eventually(timeout: 30) { daemon.log.contains("ferry started") })
        try Self.rules(root: root.path, outbox: outbox, emulator: emulator, connectorID: emulator.sftpConnectorId, rate: 1, maxFiles: 1)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(await eventually(timeout: 30) { daemon.log.contains("rules reloaded") })
        let names = (0..<8).map { "slow-\($0).edi" }
        for name in names { try Data("payload of \(name)\n".utf8).write(to: URL(fileURLWithPath: outbox + "/" + name)) }
        func starts() -> [Double] {
            ((try? emulator.requestLog()) ?? []).filter { $0.operation == "StartFileTransfer" && $0.status == 200 }.map(\.ts).sorted()
        }
        #expect(await eventually(timeout: 120) { starts().count >= names.count }, "log:\n\(daemon.log.suffix(2000))")
        // One file per call at 1 call per second (burst 1): any window of w seconds holds at most
        // w + 1 calls. At the old rate of 50 the eight calls would have come within a second.
        let times = starts()
        for (index, start) in times.enumerated() {
            let inWindow = times[index...].prefix { $0 < start + 3 }.count
            #expect(inWindow <= 4, "\(inWindow) StartFileTransfer calls within 3 s after the rate was lowered to 1/s: \(times)")
        }
        #expect(await daemon.stop() == 0)
    }
}

/// Issue #15 must-show 1: an inbound and an outbound rule on one connector, both with more work than the
/// budget, and reloads during the burst: the connector's Start* calls stay within one
/// `requests_per_second` budget in every window, and never more than `max_in_flight` transfers are
/// unfinished (the emulator refuses a fourth pending transfer with ThrottlingException, so it checks).
struct ConnectorBudgetTests {
    @Test func bothDirectionsShareOneBudgetAcrossReloads() async throws {
        let maxInFlight = 3
        let rate = 2
        let emulator = try Emulator.start(transferDelayMs: 100, maxPending: maxInFlight)
        let root = try TempDirectory(prefix: "ferry-e2e-budget")
        let outbox = root.path + "/outbox"
        let inbox = root.path + "/inbox"
        let configPath = root.path + "/rules.yaml"
        for folder in [outbox, inbox, emulator.partnerRoot + "/inbound", emulator.partnerRoot + "/out/budget"] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let inboundNames = (0..<40).map { "report-\($0).csv" }
        for name in inboundNames { try Data("report \(name)\n".utf8).write(to: URL(fileURLWithPath: emulator.partnerRoot + "/out/budget/" + name)) }
        func rules(settle: String) -> String {
            emulator.rulesHeader(stateDir: root.path + "/state", connectorLines: ["requests_per_second: \(rate)", "max_in_flight: \(maxInFlight)"]) + """
            outbound:
              - name: invoices
                watch: \(outbox)
                connector: partner
                remote_directory_path: /inbound
                settle: \(settle)
                batch: { max_files: 1, max_wait: 100ms }
            inbound:
              - name: reports
                connector: partner
                remote_directory_path: /out/budget
                schedule: every 1s
                min_age: 0s
                local_directory_path: s3://\(emulator.inboundBucket)/reports/
                download_to: \(inbox)

            """
        }
        try rules(settle: "200ms").write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log")
        #expect(await eventually(timeout: 30) { daemon.log.contains("ferry started") })
        let outboundNames = (0..<30).map { "invoice-\($0).edi" }
        for name in outboundNames { try Data("invoice \(name)\n".utf8).write(to: URL(fileURLWithPath: outbox + "/" + name)) }
        // Three reloads during the burst, each with a different settle so each is a real change.
        for (index, settle) in ["300ms", "250ms", "200ms"].enumerated() {
            try await Task.sleep(for: .seconds(1.5))
            try rules(settle: settle).write(toFile: configPath, atomically: true, encoding: .utf8)
            daemon.signal(SIGHUP)
            #expect(await eventually(timeout: 30) { daemon.log.components(separatedBy: "rules reloaded").count - 1 >= index + 1 })
        }
        func sent() -> Set<String> {
            Set(((try? emulator.deliveries()) ?? []).map { ($0.remotePath as NSString).lastPathComponent })
        }
        func placed() -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: inbox)) ?? []) }
        let done = await eventually(timeout: 180) { sent().isSuperset(of: outboundNames) && placed().isSuperset(of: inboundNames) }
        #expect(done, "sent \(sent().count), placed \(placed().count); log:\n\(daemon.log.suffix(3000))")
        #expect(await daemon.stop() == 0)

        let log = try emulator.requestLog()
        let starts = log.filter { ["StartFileTransfer", "StartDirectoryListing"].contains($0.operation ?? "") }
        // A token bucket of `rate` per second with a burst of `rate`: at most rate × w + rate calls in
        // any w-second window. Before the shared budget, reloads let each direction spend its own.
        let window = 5.0
        let times = starts.map(\.ts).sorted()
        let allowed = Int(Double(rate) * window) + rate
        var worst = 0
        for (index, start) in times.enumerated() { worst = max(worst, times[index...].prefix { $0 < start + window }.count) }
        #expect(worst <= allowed, "\(worst) Start* calls within \(window) s; one budget allows \(allowed)")
        let overQueue = log.filter { $0.errorCode == "ThrottlingException" }
        #expect(overQueue.isEmpty, "\(overQueue.count) StartFileTransfer calls found \(maxInFlight) transfers already unfinished")
        print("connector budget: \(starts.count) Start* calls, at most \(worst) in any \(Int(window)) s (allowed \(allowed)); over-queue refusals: \(overQueue.count)")
    }
}

/// Issue #15 must-show 4: a ThrottlingException with `RetryAfterSeconds: 4` holds the connector's whole
/// request budget: no Start* call reaches the service sooner than 4 s after the throttled answer.
struct ConnectorThrottlingTests {
    @Test func retryAfterSecondsHoldsOffEveryCallOfTheConnector() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "100ms")
        try scenario.editRules(replacing: "batch: { max_files: 10, max_wait: 100ms }", with: "batch: { max_files: 1, max_wait: 100ms }")
        try scenario.emulator.setFaults(rate: 1.0, kinds: ["throttle"], latencyMs: 0, operations: ["StartFileTransfer"], retryAfterSeconds: 4)
        try scenario.start()
        var written = try scenario.drop(1, prefix: "first")
        func calls() -> [Emulator.RequestRecord] {
            ((try? scenario.emulator.requestLog()) ?? []).filter { $0.operation == "StartFileTransfer" }
        }
        let throttled = await eventually(timeout: 60, interval: 0.01) { calls().contains { $0.errorCode == "ThrottlingException" } }
        #expect(throttled, "no StartFileTransfer was throttled; log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        try scenario.emulator.setFaults(rate: 0, kinds: [], latencyMs: 0)
        // New files after the throttled answer: their batches are ready well within the 4 s and must
        // still wait for them (the throttled batch itself waits in any case).
        written.merge(try scenario.drop(3, prefix: "later")) { $1 }
        #expect(await eventually(timeout: 90) { scenario.partnerFiles().count == written.count }, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        #expect(scenario.partnerFiles() == written)
        let log = calls()
        let first = try #require(log.first { $0.errorCode == "ThrottlingException" })
        // Calls already on their way when the throttled answer left may arrive just after it (ferry had
        // not read the answer yet); 250 ms covers them. Anything later and sooner than 4 s ignored the wait.
        let early = log.filter { $0.ts > first.ts + 0.25 && $0.ts < first.ts + 4 }
        #expect(early.isEmpty, "\(early.count) StartFileTransfer calls within 4 s of a throttled answer that asked for 4 s: \(log.map { ($0.ts - first.ts, $0.errorCode ?? "ok") })")
        #expect(await scenario.daemon?.stop() == 0)
    }
}
