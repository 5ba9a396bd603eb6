import Foundation
import FerryTestSupport
import Testing

/// Issue #16 must-show 5: alerts end to end, with a real HTTP receiver (python http.server on
/// 127.0.0.1) and a real command (a shell script recording its stdin and environment), against the
/// emulator: a quarantine, an in-doubt batch and a connector recovering each produce exactly the event
/// docs/alerts.md documents; a hanging receiver does not hold up sending; a burst is folded.
struct AlertTests {
    /// A folder where the alert command leaves `<n>.json` (its stdin) and `<n>.env` (FERRY_* variables).
    final class CommandRecorder: @unchecked Sendable {
        let directory: TempDirectory
        let script: String
        var output: String { directory.path + "/calls" }

        init() throws {
            directory = try TempDirectory(prefix: "alert-command")
            script = directory.path + "/record-alert.sh"
            try FileManager.default.createDirectory(atPath: directory.path + "/calls", withIntermediateDirectories: true)
            try """
                #!/bin/sh
                n="$1/$(date +%s%N)-$$"
                cat > "$n.tmp"
                printf '%s\\n%s\\n%s\\n' "$FERRY_EVENT" "$FERRY_RULE" "$FERRY_PATH" > "$n.env"
                mv "$n.tmp" "$n.json"
                """.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
        }

        /// Each call's event (parsed) and its FERRY_EVENT, FERRY_RULE, FERRY_PATH, oldest first.
        var calls: [(event: [String: Any], raw: Data, env: [String])] {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
            return names.compactMap { name in
                let base = output + "/" + String(name.dropLast(5))
                guard let raw = FileManager.default.contents(atPath: base + ".json"),
                      let event = try? JSONSerialization.jsonObject(with: raw) as? [String: Any],
                      let env = try? String(contentsOfFile: base + ".env", encoding: .utf8) else { return nil }
                return (event, raw, env.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init))
            }
        }
    }

    /// The fields docs/alerts.md documents for the event, from its table.
    static func documentedFields() throws -> [String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/alerts.md"), encoding: .utf8)
        let section = try #require(text.components(separatedBy: "## The event\n").dropFirst().first)
        let lines: [Substring] = section.split(separator: "\n")
        let table = lines.drop { !$0.hasPrefix("|") }.prefix { $0.hasPrefix("|") }
        var fields: [String] = []
        for line in table where line.hasPrefix("| `") {
            fields.append(String(line.dropFirst(3).prefix { $0 != "`" }))
        }
        return fields
    }

    static func events(_ receiver: WebhookReceiver) -> [[String: Any]] {
        receiver.requests.compactMap { try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any] }
    }

    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// Checks one event field by field against the documented shape: exactly the documented keys,
    /// each with the expected value (or, for `message`, the expected phrases).
    static func check(_ event: [String: Any], kind: String, rule: String?, paths: [String], connector: String?, messageContains: [String],
                      folded: Int = 0, version: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(event.keys.sorted() == (try documentedFields()).sorted(), "keys: \(event.keys.sorted())", sourceLocation: sourceLocation)
        #expect(event["event"] as? String == kind, sourceLocation: sourceLocation)
        if let rule { #expect(event["rule"] as? String == rule, sourceLocation: sourceLocation) } else { #expect(event["rule"] is NSNull, sourceLocation: sourceLocation) }
        #expect(event["paths"] as? [String] == paths, "\(event["paths"] ?? "")", sourceLocation: sourceLocation)
        if let connector { #expect(event["connector"] as? String == connector, sourceLocation: sourceLocation) } else { #expect(event["connector"] is NSNull, sourceLocation: sourceLocation) }
        let message = event["message"] as? String ?? ""
        for phrase in messageContains { #expect(message.contains(phrase), "message: \(message)", sourceLocation: sourceLocation) }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let time = (event["time"] as? String).flatMap { formatter.date(from: $0) }
        #expect(time.map { abs($0.timeIntervalSinceNow) < 600 } == true, "time: \(event["time"] ?? "")", sourceLocation: sourceLocation)
        #expect((event["time"] as? String)?.hasSuffix("Z") == true, sourceLocation: sourceLocation)
        #expect(event["host"] as? String == hostName, sourceLocation: sourceLocation)
        #expect(event["ferry_version"] as? String == version, sourceLocation: sourceLocation)
        #expect(event["folded"] as? Int == folded, sourceLocation: sourceLocation)
    }

    /// Adds a second outbound rule, `broken`, whose files go to a folder the partner does not have: with
    /// `retries: 0` each one is quarantined at its first failure.
    static func addBrokenRule(_ scenario: OutboundScenario) throws -> String {
        let folder = scenario.root.path + "/broken-outbox"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let text = try String(contentsOfFile: scenario.configPath, encoding: .utf8)
        try (text + """
              - name: broken
                watch: \(folder)
                connector: partner
                remote_directory_path: /no-such-folder
                settle: 300ms
                batch: { max_files: 10, max_wait: 500ms }
                retries: 0

            """).write(toFile: scenario.configPath, atomically: true, encoding: .utf8)
        return folder
    }

    static func start(_ scenario: OutboundScenario, window: String? = nil) throws {
        var environment = scenario.emulator.environment
        if let window { environment["FERRY_TEST_NOTIFY_MIN_INTERVAL"] = window }
        scenario.daemon = try FerryDaemon(config: scenario.configPath, environment: environment, logPath: scenario.root.path + "/ferry.log",
                                          extraArguments: ["--log-level", "debug"])
    }

    static func version() throws -> String {
        let out = try FerryBinary.run(["version"]).stdout
        let words: [Substring] = out.split(whereSeparator: { $0 == " " || $0 == "\n" })
        return words.first { $0.first?.isNumber == true }.map(String.init) ?? ""
    }

    @Test func quarantineInDoubtAndConnectorRecoveryEachSendTheDocumentedEvent() async throws {
        let receiver = try WebhookReceiver()
        let command = try CommandRecorder()
        let secrets = try TempDirectory(prefix: "alert-secrets")
        let token = "tok-\(UUID().uuidString)"
        try "# bearer token for the alert receiver\nAuthorization: Bearer \(token)\nX-Ferry-Test: alerts\n"
            .write(toFile: secrets.path + "/webhook.headers", atomically: true, encoding: .utf8)
        let scenario = try OutboundScenario(topExtras: [
            "notify:",
            "  command: [\(command.script), \(command.output)]",
            "  command_timeout: 20s",
            "  webhook: { url: \"\(receiver.url)\", headers_file: \(secrets.path)/webhook.headers, timeout: 5s }",
        ], connectorExtras: ["on_in_doubt: hold"])
        let broken = try Self.addBrokenRule(scenario)
        let validate = try FerryBinary.run(["validate", "--config", scenario.configPath])
        #expect(validate.status == 0, "\(validate.stdout) \(validate.stderr)")
        let version = try Self.version()
        #expect(!version.isEmpty)
        let connectorId = scenario.emulator.sftpConnectorId

        // 1. The connector is ERRORED at start, then ACTIVE again: degraded, then recovered.
        try scenario.emulator.setConnectorStatus(connectorId, "ERRORED", errorMessage: "The partner's host key changed")
        try Self.start(scenario)
        func event(_ kind: String) -> [String: Any]? { Self.events(receiver).first { $0["event"] as? String == kind } }
        #expect(await eventually(timeout: 60) { event("connector_degraded") != nil }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        try Self.check(try #require(event("connector_degraded")), kind: "connector_degraded", rule: nil, paths: [], connector: "partner",
                       messageContains: ["ERRORED", "The partner's host key changed"], version: version)
        try scenario.emulator.setConnectorStatus(connectorId, "ACTIVE")
        #expect(await eventually(timeout: 60) { event("connector_recovered") != nil }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        try Self.check(try #require(event("connector_recovered")), kind: "connector_recovered", rule: nil, paths: [], connector: "partner",
                       messageContains: ["usable again", "ERRORED"], version: version)

        // 2. A file the partner cannot take (its folder is missing) is quarantined.
        try Data("invoice 4711\n".utf8).write(to: URL(fileURLWithPath: broken + "/inv-4711.edi"))
        let quarantined = broken + "/.ferry/failed/inv-4711.edi"
        #expect(await eventually(timeout: 90) { event("file_quarantined") != nil }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        #expect(FileManager.default.fileExists(atPath: quarantined))
        try Self.check(try #require(event("file_quarantined")), kind: "file_quarantined", rule: "broken", paths: [quarantined], connector: "partner",
                       messageContains: ["REMOTE_DIRECTORY_NOT_FOUND", "ferry retry \(quarantined)"], version: version)

        // 3. StartFileTransfer's answer is lost: the batch is in doubt and held (on_in_doubt: hold).
        try scenario.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 1)
        try Data("payment run 4711\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/payment.xml"))
        #expect(await eventually(timeout: 90) { event("batch_in_doubt") != nil }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        try Self.check(try #require(event("batch_in_doubt")), kind: "batch_in_doubt", rule: "invoices", paths: [scenario.outbox + "/payment.xml"],
                       connector: "partner", messageContains: ["outcome", "unknown", "on_in_doubt: hold", "ferry retry"], version: version)
        try scenario.emulator.setFaults(rate: 0, kinds: [], latencyMs: 0)

        // The command got the same documents, one per alert, with FERRY_EVENT / FERRY_RULE / FERRY_PATH.
        let kinds = ["connector_degraded", "connector_recovered", "file_quarantined", "batch_in_doubt"]
        #expect(await eventually(timeout: 30) { command.calls.count >= kinds.count }, "command calls: \(command.calls.map(\.env))")
        let calls = command.calls
        #expect(calls.map { $0.event["event"] as? String ?? "" } == kinds)
        #expect(calls.map(\.env) == [["connector_degraded", "", ""], ["connector_recovered", "", ""],
                                     ["file_quarantined", "broken", quarantined], ["batch_in_doubt", "invoices", scenario.outbox + "/payment.xml"]])
        let posted = receiver.requests
        #expect(posted.map(\.body) == calls.map(\.raw), "the webhook and the command get the same bytes")
        // The headers file's headers arrive; its token never reaches the log.
        #expect(posted.allSatisfy { $0.headers["authorization"] == "Bearer \(token)" && $0.headers["x-ferry-test"] == "alerts" })
        #expect(posted.allSatisfy { $0.headers["content-type"] == "application/json" && $0.path == "/ferry-alerts" })
        let daemonLog: String = scenario.daemon?.log ?? ""
        #expect(!daemonLog.contains(token), "the bearer token was logged")
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test func aHangingReceiverDoesNotHoldUpSending() async throws {
        let receiver = try WebhookReceiver(hanging: true)
        let metrics = try TempDirectory(prefix: "alert-metrics")
        let scenario = try OutboundScenario(batchMaxWait: "300ms", topExtras: [
            "metrics_file: \(metrics.path)/ferry.prom",
            "notify:",
            "  webhook: { url: \"\(receiver.url)\", timeout: 2s }",
        ])
        let broken = try Self.addBrokenRule(scenario)
        try Self.start(scenario, window: "1s")
        // Quarantines raise alerts, and every POST of them hangs until its timeout.
        for index in 0..<4 { try Data("bad \(index)\n".utf8).write(to: URL(fileURLWithPath: broken + "/bad-\(index).edi")) }
        #expect(await eventually(timeout: 90) { receiver.acceptedConnections >= 1 }, "no alert reached the receiver; log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        // While the receiver hangs, a burst of files is sent in full.
        let written = try scenario.drop(40, prefix: "while-hanging")
        #expect(await eventually(timeout: 120) { scenario.partnerFiles() == written },
                "\(scenario.partnerFiles().count) of \(written.count) delivered; log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        #expect(FileManager.default.fileExists(atPath: broken + "/.ferry/failed/bad-0.edi"))
        // The notifier's failures are logged and counted.
        func failures() -> Double {
            let text = (try? String(contentsOfFile: metrics.path + "/ferry.prom", encoding: .utf8)) ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix("ferry_alert_failures_total{channel=\"webhook\"}") }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        }
        #expect(await eventually(timeout: 60) { failures() >= 1 }, "metrics:\n\((try? String(contentsOfFile: metrics.path + "/ferry.prom", encoding: .utf8)) ?? "none")")
        let daemonLog: String = scenario.daemon?.log ?? ""
        #expect(daemonLog.contains("alert not delivered"), "log:\n\(daemonLog.suffix(3000))")
        #expect(daemonLog.contains("no answer within 2"), "log:\n\(daemonLog.suffix(3000))")
        print("hanging receiver: \(written.count) files delivered while \(receiver.acceptedConnections) alert POSTs hung; \(Int(failures())) webhook failures counted")
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test func aBurstOfQuarantinesIsOneAlertThenOneWithTheFoldedCount() async throws {
        let receiver = try WebhookReceiver()
        let scenario = try OutboundScenario(topExtras: ["notify:", "  webhook: { url: \"\(receiver.url)\" }"])
        let broken = try Self.addBrokenRule(scenario)
        try Self.start(scenario, window: "15s")
        var names: [String] = []
        for index in 0..<6 {
            let name = "burst-\(index).edi"
            try Data("burst \(index)\n".utf8).write(to: URL(fileURLWithPath: broken + "/" + name))
            names.append(broken + "/.ferry/failed/" + name)
        }
        func quarantines() -> [[String: Any]] { Self.events(receiver).filter { $0["event"] as? String == "file_quarantined" } }
        #expect(await eventually(timeout: 120) { quarantines().count >= 2 }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        #expect(names.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        // Nothing more comes: the window after the summary has nothing in it.
        try await Task.sleep(for: .seconds(3))
        let alerts = quarantines()
        #expect(alerts.count == 2, "\(alerts)")
        #expect(alerts.map { $0["folded"] as? Int ?? -1 } == [0, 5])
        let first = alerts.first?["paths"] as? [String] ?? []
        let rest = alerts.last?["paths"] as? [String] ?? []
        #expect(first.count == 1 && rest.count == 5 && Set(first + rest) == Set(names), "\(first) \(rest)")
        #expect(alerts.allSatisfy { $0["rule"] as? String == "broken" })
        #expect(await scenario.daemon?.stop() == 0)
    }

    /// SIGHUP applies new notify settings to the next alert: here a rule gets its own webhook, which
    /// replaces the top-level one for that rule's events.
    @Test func aReloadSendsTheNextAlertWhereTheNewRulesSay() async throws {
        let first = try WebhookReceiver()
        let second = try WebhookReceiver()
        let scenario = try OutboundScenario(topExtras: ["notify:", "  webhook: { url: \"\(first.url)\" }"])
        let broken = try Self.addBrokenRule(scenario)
        try Self.start(scenario, window: "1s")
        func quarantines(_ receiver: WebhookReceiver) -> [String] {
            Self.events(receiver).filter { $0["event"] as? String == "file_quarantined" }.flatMap { $0["paths"] as? [String] ?? [] }
        }
        try Data("before\n".utf8).write(to: URL(fileURLWithPath: broken + "/before.edi"))
        #expect(await eventually(timeout: 90) { quarantines(first) == [broken + "/.ferry/failed/before.edi"] }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")

        let text = try String(contentsOfFile: scenario.configPath, encoding: .utf8)
        try (text + "    notify: { webhook: { url: \"\(second.url)\" } }\n").write(toFile: scenario.configPath, atomically: true, encoding: .utf8)
        let validate = try FerryBinary.run(["validate", "--config", scenario.configPath])
        #expect(validate.status == 0, "\(validate.stdout) \(validate.stderr)")
        scenario.daemon?.signal(SIGHUP)
        #expect(await eventually(timeout: 30) { scenario.daemon?.log.contains("rules reloaded") == true })
        // Past the first alert's one-second window, so the next one is not folded into a summary.
        try await Task.sleep(for: .seconds(2))
        try Data("after\n".utf8).write(to: URL(fileURLWithPath: broken + "/after.edi"))
        #expect(await eventually(timeout: 90) { quarantines(second) == [broken + "/.ferry/failed/after.edi"] }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        try await Task.sleep(for: .seconds(2))
        #expect(quarantines(first) == [broken + "/.ferry/failed/before.edi"], "the old destination got nothing more")
        #expect(await scenario.daemon?.stop() == 0)
    }

    /// A batch a crash left `submitting` is in doubt at the next start and resent (on_in_doubt: resend):
    /// one `batch_in_doubt`, then one `possible_duplicate` naming the file.
    @Test func aResentBatchIsInDoubtThenAPossibleDuplicate() async throws {
        let receiver = try WebhookReceiver()
        let scenario = try OutboundScenario(topExtras: ["notify:", "  webhook: { url: \"\(receiver.url)\" }"])
        let name = "crashed-mid-submit.edi"
        let path = scenario.outbox + "/" + name
        try Data("sent once, maybe twice\n".utf8).write(to: URL(fileURLWithPath: path))
        let (journal, file, _) = try await scenario.journalStaged(name, upload: true)
        _ = try journal.createBatch(rule: "invoices", connector: "partner", connectorID: scenario.emulator.sftpConnectorId,
                                    remoteDirectory: scenario.remoteDirectory, fileIDs: [file.id])
        try Self.start(scenario)
        func event(_ kind: String) -> [String: Any]? { Self.events(receiver).first { $0["event"] as? String == kind } }
        #expect(await eventually(timeout: 90) { event("possible_duplicate") != nil }, "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let version = try Self.version()
        try Self.check(try #require(event("batch_in_doubt")), kind: "batch_in_doubt", rule: "invoices", paths: [path], connector: "partner",
                       messageContains: ["ferry stopped before StartFileTransfer's answer was journaled", "on_in_doubt: resend"], version: version)
        try Self.check(try #require(event("possible_duplicate")), kind: "possible_duplicate", rule: "invoices", paths: [path], connector: "partner",
                       messageContains: ["may receive them twice"], version: version)
        #expect(Self.events(receiver).map { $0["event"] as? String ?? "" } == ["batch_in_doubt", "possible_duplicate"])
        #expect(await scenario.daemon?.stop() == 0)
    }

    /// `ferry validate` reports notify mistakes as `file:line:col: error:` and exits 78 (EX_CONFIG).
    @Test func validateNamesNotifyMistakesWithTheirPosition() throws {
        let scenario = try OutboundScenario(topExtras: ["notify:", "  command: ferry-alert", "  webhook: { url: \"file:///tmp/x\" }"])
        let result = try FerryBinary.run(["validate", "--config", scenario.configPath])
        #expect(result.status == 78)
        let output = result.stdout + result.stderr
        #expect(output.contains("\(scenario.configPath):4:12: error: 'command' must start with an absolute path"), "\(output)")
        #expect(output.contains("\(scenario.configPath):5:19: error: 'url' must be an http:// or https:// URL with a host, got 'file:///tmp/x'"), "\(output)")
    }
}
