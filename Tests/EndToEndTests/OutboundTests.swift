import Foundation
import Testing
import FerryTestSupport

/// The main job, end to end: ferry binary + emulator (signatures checked) + OpenSSH partner.
@Suite(.serialized) struct OutboundTests {
    @Test(arguments: [1, 10, 11, 1000])
    func droppedFilesArriveOnceByteIdentical(count: Int) async throws {
        let scenario = try OutboundScenario(afterSend: "archive")
        try scenario.start()
        let written = try scenario.drop(count)
        let arrived = await eventually(timeout: count > 100 ? 240 : 60) { scenario.partnerFiles().count >= count }
        #expect(arrived, "only \(scenario.partnerFiles().count) of \(count) arrived; log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let partner = scenario.partnerFiles()
        for (name, data) in written {
            #expect(partner[name] == data, "\(name) differs or is missing on the partner")
        }
        // Archived (after_send: archive) once the transfer completed: the outbox holds only .ferry/.
        #expect(await eventually(timeout: 30) {
            ((try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox)) ?? []).filter { $0 != ".ferry" }.isEmpty
        })
        // Archiving is two renames (into .ferry/claim, then into .ferry/sent): the outbox can be empty
        // while the last file is between the two, so the archive is waited for, not read once.
        let archivedNames = { ((try? FileManager.default.subpathsOfDirectory(atPath: scenario.outbox + "/.ferry/sent")) ?? []).filter { $0.hasSuffix(".edi") } }
        #expect(await eventually(timeout: 30) { archivedNames().count == count },
                "\(archivedNames().count) of \(count) archived; claimed: \((try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox + "/.ferry/claim")) ?? [])")
        let counts = try scenario.sendCounts()
        #expect(counts.count == count)
        #expect(counts.values.allSatisfy { $0 == 1 }, "a file was sent twice: \(counts.filter { $0.value > 1 })")
        #expect(try scenario.startFileTransferCalls() == (count + 9) / 10)
        // The staged copies go in one DeleteObjects after the local after_send: the archive can be
        // complete a moment before they are gone, so they are waited for.
        var staged = try await scenario.stagedKeys()
        let deadline = Date().addingTimeInterval(30)
        while !staged.isEmpty, Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            staged = try await scenario.stagedKeys()
        }
        #expect(staged.isEmpty, "staged copies are deleted once sent (keep_staged: false): \(staged.prefix(5))")
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test(arguments: ["delete", "keep"])
    func afterSendDeleteAndKeep(mode: String) async throws {
        let scenario = try OutboundScenario(afterSend: mode)
        try scenario.start()
        let written = try scenario.drop(3)
        #expect(await eventually(timeout: 60) { scenario.partnerFiles().count == 3 })
        if mode == "delete" {
            #expect(await eventually(timeout: 30) { written.keys.allSatisfy { !FileManager.default.fileExists(atPath: scenario.outbox + "/" + $0) } })
            #expect(!FileManager.default.fileExists(atPath: scenario.outbox + "/.ferry/sent"))
        } else {
            // Give after_send time to (wrongly) act, then check the files are untouched and sent once.
            try await Task.sleep(for: .seconds(3))
            for (name, data) in written {
                #expect(FileManager.default.contents(atPath: scenario.outbox + "/" + name) == data)
            }
            #expect(try scenario.sendCounts().values.allSatisfy { $0 == 1 })
        }
        // Restarting must not send kept files again: the journal knows these versions.
        await scenario.daemon?.stop()
        try scenario.start()
        try await Task.sleep(for: .seconds(3))
        #expect(try scenario.startFileTransferCalls() == 1)
    }

    @Test func hostileLocalNamesArriveWithTheSameNames() async throws {
        let scenario = try OutboundScenario()
        try scenario.start()
        let names = ["with space.edi", "ünïcödé-façture.edi", "hash#1.edi", "per%cent.edi", "plus+sign.edi", "semi;colon&amp=.edi"]
        for name in names {
            try Data("payload of \(name)\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/" + name))
        }
        #expect(await eventually(timeout: 60) { scenario.partnerFiles().count == names.count },
                "arrived: \(scenario.partnerFiles().keys.sorted()); log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let partner = scenario.partnerFiles()
        for name in names {
            #expect(partner[name] == Data("payload of \(name)\n".utf8), "\(name) did not arrive intact")
        }
    }

    @Test func failedFileIsRetriedThenQuarantinedAndTheBatchIsUnaffected() async throws {
        let scenario = try OutboundScenario(retries: 2)
        // The partner cannot store a file where a folder of that name exists: that one file fails.
        try FileManager.default.createDirectory(atPath: scenario.emulator.partnerRoot + "/inbound/blocked.edi", withIntermediateDirectories: true)
        try scenario.start()
        try Data("ok 1\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/good-1.edi"))
        try Data("blocked\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/blocked.edi"))
        try Data("ok 2\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/good-2.edi"))
        let reason = scenario.outbox + "/.ferry/failed/blocked.edi.reason"
        #expect(await eventually(timeout: 90) { FileManager.default.fileExists(atPath: reason) },
                "no reason file; log:\n\(scenario.daemon?.log.suffix(4000) ?? "")")
        let text = (try? String(contentsOfFile: reason, encoding: .utf8)) ?? ""
        #expect(text.contains("attempts: 3"), "retries: 2 means three attempts in all:\n\(text)")
        #expect(text.contains("failure: "))
        #expect(FileManager.default.contents(atPath: scenario.outbox + "/.ferry/failed/blocked.edi") == Data("blocked\n".utf8))
        #expect(scenario.partnerFiles()["good-1.edi"] == Data("ok 1\n".utf8))
        #expect(scenario.partnerFiles()["good-2.edi"] == Data("ok 2\n".utf8))
        let counts = try scenario.sendCounts()
        #expect(counts["blocked.edi"] == 3)
        #expect(counts["good-1.edi"] == 1)
        #expect(counts["good-2.edi"] == 1)
    }
}
