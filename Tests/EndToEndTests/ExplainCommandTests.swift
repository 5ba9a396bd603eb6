import Foundation
import FerryTestSupport
import Testing

/// Issue #16, `ferry explain PATH`: which rule owns a file or why none does, and where it stands, in
/// plain words; `--json` for scripts; exit 0 when it will be or was sent, 1 otherwise.
struct ExplainCommandTests {
    /// `ferry explain PATH` and `ferry explain PATH --json`; `settled` says the file's state is not
    /// changing between the two calls, so both must exit alike.
    static func explain(_ scenario: OutboundScenario, _ path: String, settled: Bool = true) throws -> (exit: Int32, text: String, json: [String: Any]) {
        let text = try FerryBinary.run(["explain", path, "--config", scenario.configPath])
        let json = try FerryBinary.run(["explain", path, "--json", "--config", scenario.configPath])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any] ?? [:]
        if settled { #expect(text.status == json.status, "text and --json exit alike: \(text.stdout)") }
        return (json.status, text.stdout, object)
    }

    static func reasons(_ json: [String: Any]) -> String { (json["reasons"] as? [String] ?? []).joined(separator: "\n") }

    @Test func whyNoRuleTakesAFile() throws {
        let scenario = try OutboundScenario(ruleExtras: ["include: [\"*.edi\", \"*.xml\"]", "exclude: [\"*.skip.edi\"]"])
        let outbox = scenario.outbox
        let outside = scenario.root.path + "/elsewhere.edi"
        try Data("x".utf8).write(to: URL(fileURLWithPath: outside))
        var result = try Self.explain(scenario, outside)
        #expect(result.exit == 1)
        #expect(result.json["verdict"] as? String == "not-sent")
        #expect(result.json["path"] as? String == outside)
        #expect(result.json["rule"] == nil || result.json["rule"] is NSNull)
        #expect(Self.reasons(result.json).contains("outside every watched folder"))

        for (name, expected) in [(".hidden.edi", "hidden or temporary name, ignored by default (pattern .*)"),
                                 ("upload.edi.part", "(pattern *.part)"),
                                 ("report.skip.edi", "excluded by the rule's pattern *.skip.edi"),
                                 ("notes.txt", "matches none of the rule's include patterns (*.edi, *.xml)")] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: outbox + "/" + name))
            result = try Self.explain(scenario, outbox + "/" + name)
            #expect(result.exit == 1, "\(name)")
            #expect(Self.reasons(result.json).contains(expected), "\(name): \(Self.reasons(result.json))")
            #expect(result.text.contains("NOT SENT"), "\(result.text)")
        }
        try FileManager.default.createDirectory(atPath: outbox + "/sub", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: outbox + "/sub/deep.edi"))
        result = try Self.explain(scenario, outbox + "/sub/deep.edi")
        #expect(result.exit == 1)
        #expect(Self.reasons(result.json).contains("not its subfolders (recursive: false)"))

        try FileManager.default.createSymbolicLink(atPath: outbox + "/link.edi", withDestinationPath: outside)
        result = try Self.explain(scenario, outbox + "/link.edi")
        #expect(result.exit == 1)
        #expect(Self.reasons(result.json).contains("symbolic link (\(outbox)/link.edi)"))

        #expect(mkfifo(outbox + "/pipe.edi", 0o600) == 0)
        result = try Self.explain(scenario, outbox + "/pipe.edi")
        #expect(result.exit == 1)
        #expect(Self.reasons(result.json).contains("not a regular file (a fifo)"))
    }

    @Test func whereAFileStandsOnItsWay() async throws {
        let scenario = try OutboundScenario(ruleExtras: ["ready_marker: .done"], settle: "2s")
        try scenario.start()
        // Open for writing: held open by this test.
        let held = scenario.outbox + "/held.edi"
        let fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        var result = try Self.explain(scenario, held, settled: false)
        #expect(result.exit == 0)
        #expect(result.json["verdict"] as? String == "sending")
        #expect(result.json["rule"] as? String == "invoices")
        #expect(Self.reasons(result.json).contains("open for writing by a process"), "\(Self.reasons(result.json))")
        close(fd)
        // Settling: just written.
        try Data("fresh\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/fresh.edi"))
        result = try Self.explain(scenario, scenario.outbox + "/fresh.edi", settled: false)
        #expect(Self.reasons(result.json).contains("it is settling"), "\(Self.reasons(result.json))")
        // Waiting for its marker, once settled.
        try await Task.sleep(for: .seconds(2.5))
        result = try Self.explain(scenario, scenario.outbox + "/fresh.edi")
        #expect(result.exit == 0)
        #expect(Self.reasons(result.json).contains("waits for its ready marker \(scenario.outbox)/fresh.edi.done"), "\(Self.reasons(result.json))")
        result = try Self.explain(scenario, scenario.outbox + "/fresh.edi.done")
        #expect(result.exit == 1)
        #expect(Self.reasons(result.json).contains("it is the ready marker of fresh.edi"))
        // Sent and archived.
        try Data().write(to: URL(fileURLWithPath: scenario.outbox + "/fresh.edi.done"))
        let archived = await eventually(timeout: 60) {
            let r = try? Self.explain(scenario, scenario.outbox + "/fresh.edi", settled: false)
            return (r?.json["journal"] as? [String: Any])?["state"] as? String == "done"
        }
        #expect(archived, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        result = try Self.explain(scenario, scenario.outbox + "/fresh.edi")
        #expect(result.exit == 0)
        #expect(result.json["verdict"] as? String == "sent")
        let journal = try #require(result.json["journal"] as? [String: Any])
        let transfer = try #require(journal["transfer_id"] as? String)
        let archivePath = try #require(journal["archive_path"] as? String)
        #expect(archivePath.contains("/.ferry/sent/") && archivePath.hasSuffix("/fresh.edi"))
        #expect(journal["rule"] as? String == "invoices")
        #expect(journal["size"] as? Int == 6)
        #expect(journal["path"] as? String == scenario.outbox + "/fresh.edi")
        #expect(Self.reasons(result.json).contains("as TransferId \(transfer) and archived to \(archivePath)"), "\(Self.reasons(result.json))")
        // The archived copy itself.
        result = try Self.explain(scenario, archivePath)
        #expect(result.exit == 0)
        #expect(Self.reasons(result.json).contains("rule invoices's archive"))
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test func quarantinedAndHeldFilesSayWhyAndWhatToDo() async throws {
        let scenario = try OutboundScenario(retries: 0)
        try scenario.editRules(replacing: "connector_id: \(scenario.emulator.sftpConnectorId)", with: "connector_id: c-00000000000000000")
        try scenario.start()
        try Data("refused\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/refused.edi"))
        let quarantined = scenario.outbox + "/.ferry/failed/refused.edi"
        #expect(await eventually(timeout: 60) { FileManager.default.fileExists(atPath: quarantined + ".reason") })
        var result = try Self.explain(scenario, quarantined)
        #expect(result.exit == 1)
        #expect(result.json["verdict"] as? String == "not-sent")
        #expect(Self.reasons(result.json).contains("quarantined in rule invoices's .ferry/failed/"), "\(Self.reasons(result.json))")
        #expect(Self.reasons(result.json).contains("ferry retry \(quarantined)"))
        // Asked by its original path, the journal says the same.
        result = try Self.explain(scenario, scenario.outbox + "/refused.edi")
        #expect(result.exit == 1)
        #expect((result.json["journal"] as? [String: Any])?["state"] as? String == "quarantined")
        #expect(Self.reasons(result.json).contains("quarantined"), "\(Self.reasons(result.json))")
        #expect(await scenario.daemon?.stop() == 0)
    }
}
