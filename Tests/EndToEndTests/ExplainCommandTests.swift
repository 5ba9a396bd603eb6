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
        // The partner has no such folder: the send fails REMOTE_DIRECTORY_NOT_FOUND and, with retries: 0, quarantines.
        try scenario.editRules(replacing: "remote_directory_path: \(scenario.remoteDirectory)", with: "remote_directory_path: /no-such-folder")
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

    /// The keys `ferry explain --json` has at its top level and in its `journal` object: a script reads
    /// these, so a field that disappears or is renamed is a breaking change.
    static let topKeys: Set<String> = ["path", "rule", "verdict", "reasons", "journal"]
    static let journalKeys: Set<String> = [
        "id", "rule", "path", "size", "checksum", "state", "detected_at", "bucket", "s3_key", "transfer_id", "submitted_at",
        "completed_at", "finished_at", "updated_at", "after_send", "archive_path", "held_path", "attempts", "last_error",
        "in_doubt", "possible_duplicates",
    ]

    /// Parses an ISO 8601 field of the JSON.
    static func date(_ value: Any?) -> Date? { (value as? String).flatMap { ISO8601DateFormatter().date(from: $0) } }

    /// A file in flight as TransferId X, and files queued behind it: the connector takes one transfer at
    /// a time (max_in_flight: 1) and the emulator's partner takes 8 s a file, so the first file stays
    /// submitted while the next ones wait, uploaded, for their batch.
    @Test func inFlightAndQueuedBehindOtherFiles() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "200ms", connectorExtras: ["max_in_flight: 1"], transferDelayMs: 8000)
        try scenario.start()
        let first = scenario.outbox + "/first.edi"
        try Data("first\n".utf8).write(to: URL(fileURLWithPath: first))
        let submitted = await eventually(timeout: 90) {
            ((try? Self.explain(scenario, first, settled: false))?.json["journal"] as? [String: Any])?["state"] as? String == "submitted"
        }
        #expect(submitted, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        // One batch of three (max_wait 200 ms), behind the transfer in flight.
        for name in ["second.edi", "third.edi", "fourth.edi"] {
            try Data("\(name)\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/" + name))
        }
        let fourth = scenario.outbox + "/fourth.edi"
        let staged = await eventually(timeout: 90) {
            ((try? Self.explain(scenario, fourth, settled: false))?.json["journal"] as? [String: Any])?["state"] as? String == "staged"
        }
        #expect(staged, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")

        var result = try Self.explain(scenario, first)
        #expect(Set(result.json.keys) == Self.topKeys)
        #expect(result.exit == 0)
        #expect(result.json["verdict"] as? String == "sending")
        #expect(result.json["path"] as? String == first)
        #expect(result.json["rule"] as? String == "invoices")
        var journal = try #require(result.json["journal"] as? [String: Any])
        #expect(Set(journal.keys) == Self.journalKeys)
        let transfer = try #require(journal["transfer_id"] as? String)
        #expect(try scenario.emulator.requestLog().contains { $0.operation == "StartFileTransfer" && $0.transferId == transfer },
                "the TransferId is the one AWS answered")
        #expect(journal["state"] as? String == "submitted")
        #expect(journal["rule"] as? String == "invoices")
        #expect(journal["path"] as? String == first)
        #expect(journal["size"] as? Int == 6)
        #expect(journal["bucket"] as? String == scenario.emulator.stagingBucket)
        #expect((journal["s3_key"] as? String)?.hasSuffix("/first.edi") == true, "\(journal["s3_key"] ?? "")")
        let detected = try #require(Self.date(journal["detected_at"]))
        let submittedAt = try #require(Self.date(journal["submitted_at"]))
        #expect(detected <= submittedAt && submittedAt.timeIntervalSinceNow > -300)
        #expect(journal["completed_at"] is NSNull)
        #expect(journal["finished_at"] is NSNull)
        #expect(journal["after_send"] is NSNull)
        #expect(journal["archive_path"] is NSNull)
        #expect(journal["held_path"] is NSNull)
        #expect(journal["attempts"] as? Int == 0)
        #expect(journal["last_error"] is NSNull)
        #expect(journal["in_doubt"] as? Bool == false)
        #expect(journal["possible_duplicates"] as? Int == 0)
        #expect(Self.reasons(result.json).contains("in flight as TransferId \(transfer), submitted "), "\(Self.reasons(result.json))")
        #expect(result.text.contains("WILL BE SENT"), "\(result.text)")

        result = try Self.explain(scenario, fourth)
        #expect(result.exit == 0)
        #expect(result.json["verdict"] as? String == "sending")
        journal = try #require(result.json["journal"] as? [String: Any])
        #expect(journal["state"] as? String == "staged")
        #expect(journal["transfer_id"] is NSNull)
        #expect(journal["submitted_at"] is NSNull)
        let key = try #require(journal["s3_key"] as? String)
        #expect(Self.reasons(result.json).contains("uploaded to s3://\(scenario.emulator.stagingBucket)/\(key); waiting for its batch"),
                "\(Self.reasons(result.json))")
        #expect(Self.reasons(result.json).contains("2 file(s) of the rule are queued ahead of it"), "\(Self.reasons(result.json))")
        result = try Self.explain(scenario, scenario.outbox + "/second.edi")
        #expect(Self.reasons(result.json).contains("nothing of the rule is queued ahead of it"), "\(Self.reasons(result.json))")

        // All four arrive, once each, and then say so.
        let delivered = await eventually(timeout: 90) { scenario.partnerFiles().count == 4 }
        #expect(delivered, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        #expect(await eventually(timeout: 90) { (try? Self.explain(scenario, fourth, settled: false))?.json["verdict"] as? String == "sent" })
        #expect(await scenario.daemon?.stop() == 0)
    }

    /// A batch whose StartFileTransfer answer was lost, under `on_in_doubt: hold`: asked by its original
    /// path or by where it is held, explain says it is in doubt, what that means and what to do; exit 1.
    @Test func inDoubtSaysThePartnerMayHaveIt() async throws {
        let scenario = try OutboundScenario(connectorExtras: ["on_in_doubt: hold"])
        try scenario.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 1)
        try scenario.start()
        let original = scenario.outbox + "/payment.xml"
        try Data("payment run 4711\n".utf8).write(to: URL(fileURLWithPath: original))
        let held = scenario.outbox + "/.ferry/in-doubt/payment.xml"
        #expect(await eventually(timeout: 60) { FileManager.default.fileExists(atPath: held + ".reason") },
                "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")

        var result = try Self.explain(scenario, original)
        #expect(result.exit == 1)
        #expect(Set(result.json.keys) == Self.topKeys)
        #expect(result.json["verdict"] as? String == "not-sent")
        #expect(result.json["rule"] as? String == "invoices")
        let journal = try #require(result.json["journal"] as? [String: Any])
        #expect(Set(journal.keys) == Self.journalKeys)
        #expect(journal["state"] as? String == "in_doubt")
        #expect(journal["in_doubt"] as? Bool == true)
        #expect(journal["held_path"] as? String == held)
        #expect(journal["transfer_id"] is NSNull, "the answer carrying it was lost")
        #expect(journal["size"] as? Int == 17)
        #expect(journal["bucket"] as? String == scenario.emulator.stagingBucket)
        #expect((journal["last_error"] as? String)?.isEmpty == false)
        #expect(journal["finished_at"] is NSNull)
        #expect(Self.reasons(result.json).contains("held in doubt in \(held): StartFileTransfer's answer was lost, so the partner may or may not have it"),
                "\(Self.reasons(result.json))")
        #expect(result.text.contains("NOT SENT"))

        result = try Self.explain(scenario, held)
        #expect(result.exit == 1)
        #expect(result.json["rule"] as? String == "invoices")
        #expect(Self.reasons(result.json).contains("it is held in rule invoices's .ferry/in-doubt/: StartFileTransfer's answer was lost"),
                "\(Self.reasons(result.json))")
        #expect(Self.reasons(result.json).contains("`ferry retry \(held)`"))
        #expect(await scenario.daemon?.stop() == 0)
    }

    /// Not a regular file: a folder inside the watched folder, asked about by name.
    @Test func aFolderIsNotAFileToSend() throws {
        let scenario = try OutboundScenario(ruleExtras: ["recursive: true"])
        try FileManager.default.createDirectory(atPath: scenario.outbox + "/2026", withIntermediateDirectories: true)
        let result = try Self.explain(scenario, scenario.outbox + "/2026")
        #expect(result.exit == 1)
        #expect(result.json["verdict"] as? String == "not-sent")
        #expect(result.json["rule"] as? String == "invoices")
        #expect(result.json["journal"] == nil || result.json["journal"] is NSNull)
        #expect(Self.reasons(result.json).contains("it is not a regular file (a folder): ferry sends regular files only"), "\(Self.reasons(result.json))")
    }
}
