import FerryAWS
import FerryStore
import Foundation
import Logging
import Testing
import FerryTestSupport

/// Regression tests of issue #13: each reproduces one way the outbound promise (whole, once, or loudly
/// not) was broken, against the real binary and the emulator.
@Suite(.serialized) struct OutboundPromiseTests {
    // MARK: Helpers

    /// Mounts a tmpfs of `size` at `path` (created); fails with the reason when mounting is impossible.
    static func mountTmpfs(_ path: String, size: String, readOnly: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let result = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)\(readOnly ? ",ro" : "")", "tmpfs", path])
        guard result == 0 else {
            throw Failure("cannot mount a tmpfs at \(path) (exit \(result)): these tests need root and mount(8) — run them as root")
        }
    }

    static func unmount(_ path: String) {
        _ = try? run("/bin/umount", ["-l", path])
    }

    /// Fills the file system holding `folder` with a filler file until it is full.
    static func fill(_ folder: String) -> String {
        let filler = folder + "/filler"
        _ = try? run("/bin/sh", ["-c", "dd if=/dev/zero of='\(filler)' bs=4k 2>/dev/null; sync"])
        return filler
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func log(_ scenario: OutboundScenario) -> String { String(scenario.daemon?.log.suffix(4000) ?? "") }

    // MARK: 2. Lost answers are in doubt, never silent duplicates

    /// Seen: a lost answer every third StartFileTransfer turned 60 files into 90 sends with
    /// possible_duplicates = 0. Now there is one request per journaled submission, and every file of a
    /// batch whose answer was lost is resent and reported (on_in_doubt: resend, the default).
    @Test func lostAnswersAreResentAndEveryDuplicateIsReported() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "300ms")
        try scenario.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 3)
        try scenario.start()
        let written = try scenario.drop(60, prefix: "lost")
        #expect(await eventually(timeout: 180, interval: 0.5) {
            let partner = scenario.partnerFiles()
            return written.allSatisfy { partner[$0.key] == $0.value }
        }, "every file arrives; log:\n\(log(scenario))")
        #expect(await eventually(timeout: 60, interval: 0.5) {
            ((try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox)) ?? []).filter { $0 != ".ferry" }.isEmpty
        }, "and is archived")
        // What the partner really received: each StartFileTransfer that reached the emulator (answered or not) sent its paths.
        let requests = try scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" }
        var deliveries: [String: Int] = [:]
        for path in requests.flatMap({ $0.paths ?? [] }) { deliveries[String(path.split(separator: "/").last ?? ""), default: 0] += 1 }
        let duplicates = deliveries.values.reduce(0) { $0 + max($1 - 1, 0) }
        let lost = requests.filter { $0.fault == "lost_answer" }.count
        let reported = try scenario.status().json["possible_duplicates"] as? Int ?? -1
        print("lost answers: \(requests.count) StartFileTransfer requests, \(lost) answers lost, \(duplicates) files sent twice, \(reported) reported")
        #expect(lost > 0, "the fault was injected")
        // A lost batch is either found on the partner by the listing (not resent, not reported) or resent
        // and reported; lost_answer does the work, so every resend is a real second delivery.
        #expect(duplicates == reported, "every duplicate is reported and every report is a duplicate: \(duplicates) vs \(reported)")
        let daemonLog = scenario.daemon?.log ?? ""
        #expect(daemonLog.contains("the partner may receive these files twice") || daemonLog.contains("already on the partner"))
    }

    /// The issue's "for SFTP, where cheap, first list the remote directory and treat a same-name
    /// same-size file as sent": every StartFileTransfer answer is lost after the work was done, so each
    /// batch is in doubt. A file the lost transfer delivered is found by StartDirectoryListing (same
    /// name, same size, written since the batch was journaled), recorded as sent and archived — not sent
    /// again and not reported. One the listing did not see yet is resent and reported, and then really
    /// arrives twice: every report is a real duplicate and every duplicate is reported.
    @Test func inDoubtFilesFoundOnThePartnerAreNeitherResentNorReported() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "300ms")
        try scenario.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 1)
        try scenario.start()
        let written = try scenario.drop(12, prefix: "found")
        #expect(await eventually(timeout: 180, interval: 0.5) {
            let partner = scenario.partnerFiles()
            return written.allSatisfy { partner[$0.key] == $0.value }
        }, "every file arrives; log:\n\(log(scenario))")
        // Every answer is lost, so a file leaves the outbox only once a listing has found it.
        #expect(await eventually(timeout: 120, interval: 0.5) {
            ((try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox)) ?? []).filter { $0 != ".ferry" }.isEmpty
        }, "each file is archived once found on the partner; log:\n\(log(scenario))")
        var deliveries: [String: Int] = [:]
        for delivery in try scenario.emulator.deliveries() { deliveries[String(delivery.remotePath.split(separator: "/").last ?? ""), default: 0] += 1 }
        let extra = deliveries.values.reduce(0) { $0 + max($1 - 1, 0) }
        let reported = try scenario.status().json["possible_duplicates"] as? Int ?? -1
        let daemonLog = scenario.daemon?.log ?? ""
        let listings = try scenario.emulator.requestLog().filter { $0.operation == "StartDirectoryListing" && $0.status == 200 }.count
        print("in doubt, listed: \(listings) listings, \(extra) extra deliveries, \(reported) reported, deliveries \(deliveries.sorted { $0.key < $1.key })")
        #expect(listings > 0, "the partner's folder was listed")
        #expect(daemonLog.contains("already on the partner"), "some files were found by the listing")
        #expect(extra == reported, "every duplicate is reported and every report is a duplicate: \(extra) extra deliveries, \(reported) reported")
        // A file never named in a possible-duplicate warning reached the partner exactly once.
        let warned = daemonLog.split(separator: "\n").filter { $0.contains("may receive these files twice") }
        for name in written.keys where !warned.contains(where: { $0.contains(name) }) {
            #expect(deliveries[name] == 1, "\(name) was not reported, so it must arrive once: \(deliveries[name] ?? 0)")
        }
        #expect(deliveries.count == written.count, "nothing else was delivered")
    }

    /// A partner folder holding more than StartDirectoryListing's default of 1,000 entries: the in-doubt
    /// check asked without MaxItems, so a file listed after the first thousand could never be found, and
    /// every in-doubt batch there was resent and reported. It now asks for AWS's most, 10,000.
    @Test func inDoubtFilesAreFoundInAPartnerFolderOfMoreThanAThousandFiles() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "300ms")
        // Older files of the partner's, listed before ferry's (listings are in name order).
        let folder = scenario.emulator.partnerRoot + scenario.remoteDirectory
        for index in 0..<1_500 {
            try Data("old \(index)\n".utf8).write(to: URL(fileURLWithPath: folder + String(format: "/a-old-%04d.edi", index)))
        }
        try scenario.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 1)
        try scenario.start()
        let written = try scenario.drop(4, prefix: "zz-found")
        #expect(await eventually(timeout: 120, interval: 0.5) {
            ((try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox)) ?? []).filter { $0 != ".ferry" }.isEmpty
        }, "each file is archived once found on the partner or resent; log:\n\(log(scenario))")
        let daemonLog = scenario.daemon?.log ?? ""
        let listings = try scenario.emulator.requestLog().filter { $0.operation == "StartDirectoryListing" && $0.status == 200 }
        #expect(!listings.isEmpty, "the partner's folder was listed")
        #expect(daemonLog.contains("already on the partner"), "files beyond the listing's first thousand entries are found; log:\n\(log(scenario))")
        #expect(written.keys.allSatisfy { scenario.partnerFiles()[$0] != nil })
    }

    /// `on_in_doubt: hold`: a batch whose answer was lost is set aside in `.ferry/in-doubt/` with a
    /// reason, status is degraded, nothing is resent until `ferry retry`.
    @Test func holdSetsInDoubtFilesAsideUntilRetry() async throws {
        let scenario = try OutboundScenario(connectorExtras: ["on_in_doubt: hold"])
        try scenario.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 1)
        try scenario.start()
        let data = Data("payment run 4711\n".utf8)
        try data.write(to: URL(fileURLWithPath: scenario.outbox + "/payment.xml"))
        let held = scenario.outbox + "/.ferry/in-doubt/payment.xml"
        #expect(await eventually(timeout: 60) { FileManager.default.fileExists(atPath: held + ".reason") }, "log:\n\(log(scenario))")
        #expect(FileManager.default.contents(atPath: held) == data)
        let reason = (try? String(contentsOfFile: held + ".reason", encoding: .utf8)) ?? ""
        #expect(reason.contains("the partner may or may not have this file"), "\(reason)")
        let status = try scenario.status()
        #expect(status.exit == 1, "degraded")
        #expect(try scenario.outboundStatus()["in_doubt"] as? Int == 1)
        try scenario.emulator.setFaults(rate: 0, kinds: [], latencyMs: 0)
        try await Task.sleep(for: .seconds(3))
        #expect(try scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" }.count == 1, "held: not resent by itself")
        let retry = try FerryBinary.run(["retry", "--allow-root", "--config", scenario.configPath])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(await eventually(timeout: 60) { (try? scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" }.count) == 2 },
                "released by ferry retry; log:\n\(log(scenario))")
        #expect(await eventually(timeout: 30) { (try? scenario.status().exit) == 0 })
    }

    // MARK: 10. Refusals count toward retries

    /// A StartFileTransfer that AWS refuses because it does not know the connector id (a typo, a deleted
    /// connector) is the connector's problem, not the file's: every file would fail alike. The file is
    /// held — not quarantined, even with `retries: 0` — and `ferry status` is degraded naming the
    /// connector; once the rules name the right connector (a reload), the held file goes, once.
    @Test func anUnknownConnectorIdHoldsFilesUntilTheRulesAreFixed() async throws {
        let scenario = try OutboundScenario(retries: 0)
        let good = "connector_id: \(scenario.emulator.sftpConnectorId)"
        let bad = "connector_id: c-00000000000000000"
        try scenario.editRules(replacing: good, with: bad)
        try scenario.start()
        let data = Data("held\n".utf8)
        try data.write(to: URL(fileURLWithPath: scenario.outbox + "/held.edi"))
        func problems() -> String { ((try? scenario.status().json["problems"]) as? [String] ?? []).joined(separator: "\n") }
        #expect(await eventually(timeout: 60) { problems().contains("AWS does not know connector c-00000000000000000") },
                "status: \(problems()); log:\n\(log(scenario))")
        #expect(try scenario.status().exit == 1, "degraded while the connector is unknown")
        let refused = try scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.errorCode == "ResourceNotFoundException" }
        #expect(!refused.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: scenario.outbox + "/.ferry/failed/held.edi"), "held, not quarantined")
        #expect(try scenario.outboundStatus()["quarantined"] as? Int == 0)
        try scenario.editRules(replacing: bad, with: good)
        scenario.daemon?.signal(SIGHUP)
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()["held.edi"] == data }, "log:\n\(log(scenario))")
        #expect(await eventually(timeout: 30) { (try? scenario.status().exit) == 0 }, "status: \(problems())")
        let sent = try scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.status == 200 }
        #expect(sent.count == 1, "sent once after the fix")
    }

    // MARK: 9. Outcomes that can no longer be learned

    /// A transfer AWS no longer knows (ResourceNotFound from ListFileTransferResults) was polled forever,
    /// holding an in-flight slot; its files are quarantined with "outcome unknown" and never resent.
    @Test func transferAWSNoLongerKnowsIsQuarantinedAndNotResent() async throws {
        let scenario = try OutboundScenario()
        let name = "forgotten.edi"
        try Data("sent long ago, maybe\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/" + name))
        let (journal, file, _) = try await scenario.journalStaged(name, upload: true)
        let batch = try journal.createBatch(rule: "invoices", connector: "partner", connectorID: scenario.emulator.sftpConnectorId,
                                            remoteDirectory: scenario.remoteDirectory, fileIDs: [file.id])
        try journal.markSubmitted(batch: batch, transferID: "00000000-aaaa-bbbb-cccc-forgotten000")
        try scenario.start()
        let reason = scenario.outbox + "/.ferry/failed/\(name).reason"
        #expect(await eventually(timeout: 30) { FileManager.default.fileExists(atPath: reason) }, "log:\n\(log(scenario))")
        let text = (try? String(contentsOfFile: reason, encoding: .utf8)) ?? ""
        #expect(text.contains("outcome unknown: the partner may or may not have it"), "\(text)")
        try await Task.sleep(for: .seconds(3))
        #expect(try scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" }.isEmpty, "never resent automatically")
        #expect(try scenario.status().exit == 1, "degraded while it is quarantined")
    }

    // MARK: 10b. SEND_FILE_NOT_FOUND uploads again

    /// The staged object expired: the send fails SEND_FILE_NOT_FOUND. Resending the same key can never
    /// work; the local file is uploaded again and delivered.
    @Test func missingStagedCopyIsUploadedAgain() async throws {
        let scenario = try OutboundScenario(retries: 2)
        let name = "expired.edi"
        let data = Data("staged copy expired\n".utf8)
        try data.write(to: URL(fileURLWithPath: scenario.outbox + "/" + name))
        _ = try await scenario.journalStaged(name, upload: false)
        try scenario.start()
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()[name] == data }, "log:\n\(log(scenario))")
        #expect(!FileManager.default.fileExists(atPath: scenario.outbox + "/.ferry/failed/\(name)"))
    }

    // MARK: 12. ferry retry moves before it journals

    /// `ferry retry` journaled `retried` before moving the file back; when the move failed the file was
    /// orphaned (no longer counted, not found by a second retry).
    @Test func retryWhoseMoveFailsLeavesTheFileQuarantined() async throws {
        let scenario = try OutboundScenario(retries: 0)
        // The partner has no such folder: the send fails REMOTE_DIRECTORY_NOT_FOUND and, with retries: 0, quarantines.
        try scenario.editRules(replacing: "remote_directory_path: \(scenario.remoteDirectory)", with: "remote_directory_path: /no-such-folder")
        try scenario.start()
        try Data("blocked\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/blocked.edi"))
        let quarantined = scenario.outbox + "/.ferry/failed/blocked.edi"
        #expect(await eventually(timeout: 60) { FileManager.default.fileExists(atPath: quarantined + ".reason") }, "log:\n\(log(scenario))")
        await scenario.daemon?.stop()
        // The outbox read-only: the move back must fail.
        #expect(try Self.run("/bin/mount", ["--bind", scenario.outbox, scenario.outbox]) == 0)
        defer { Self.unmount(scenario.outbox) }
        #expect(try Self.run("/bin/mount", ["-o", "remount,ro,bind", scenario.outbox]) == 0)
        let failed = try FerryBinary.run(["retry", "--allow-root", "--config", scenario.configPath])
        #expect(failed.status != 0, "the move fails: \(failed.stdout) \(failed.stderr)")
        Self.unmount(scenario.outbox)
        let journal = try Journal(directory: scenario.stateDir, logger: Logger(label: "test"))
        #expect(try journal.quarantined().count == 1, "still quarantined, still counted")
        let again = try FerryBinary.run(["retry", "--allow-root", "--config", scenario.configPath])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("1 file put back"), "a second retry finds it: \(again.stdout)")
        #expect(FileManager.default.fileExists(atPath: scenario.outbox + "/blocked.edi"))
    }

    // MARK: 7. Identity corner cases

    /// A file moved back from `.ferry/sent/` into the outbox was ignored forever (its version was known
    /// as sent); it is a new arrival and is sent again.
    @Test func fileMovedBackFromTheArchiveIsSentAgain() async throws {
        let scenario = try OutboundScenario()
        try scenario.start()
        let data = Data("send me again\n".utf8)
        try data.write(to: URL(fileURLWithPath: scenario.outbox + "/again.edi"))
        #expect(await eventually(timeout: 60) { (try? scenario.sendCounts()["again.edi"]) == 1 }, "log:\n\(log(scenario))")
        let sentFolder = scenario.outbox + "/.ferry/sent"
        var archived: String?
        #expect(await eventually(timeout: 30) {
            archived = (FileManager.default.enumerator(atPath: sentFolder)?.allObjects as? [String])?.first { $0.hasSuffix("again.edi") }
            return archived != nil
        })
        let source = try #require(archived.map { sentFolder + "/" + $0 })
        #expect(rename(source, scenario.outbox + "/again.edi") == 0)
        #expect(await eventually(timeout: 60) { (try? scenario.sendCounts()["again.edi"]) == 2 }, "moved back = sent again; log:\n\(log(scenario))")
    }

    /// With `after_send: keep`, renaming the rule resent its whole folder at the next start: identity
    /// must not depend on the rule's name.
    @Test func renamingAKeepRuleResendsNothing() async throws {
        let scenario = try OutboundScenario(afterSend: "keep")
        try scenario.start()
        try scenario.drop(3, prefix: "kept")
        #expect(await eventually(timeout: 60) { (try? scenario.sendCounts().count) == 3 }, "log:\n\(log(scenario))")
        await scenario.daemon?.stop()
        try scenario.editRules(replacing: "- name: invoices", with: "- name: invoices-renamed")
        try scenario.start()
        #expect(await eventually(timeout: 20) { scenario.daemon?.log.contains("ferry started") == true })
        try await Task.sleep(for: .seconds(4))
        let counts = try scenario.sendCounts()
        #expect(counts.count == 3 && counts.values.allSatisfy { $0 == 1 }, "resent after a rename: \(counts)")
    }

    // MARK: 4. Symlinked parents

    /// Replacing `/data/tenantA` by a symlink to `/data/tenantB` made rule A send tenant B's payroll to
    /// A's partner. A root reached through a link is lost (status degraded), never re-attached.
    @Test func parentSwappedForALinkToAnotherTenantSendsNothingOfIt() async throws {
        // No event reaches the old watch after the swap: the reconciliation scan is what looks again.
        let scenario = try OutboundScenario(topExtras: ["reconcile_interval: 2s"])
        let data = scenario.root.path + "/data"
        let tenantA = data + "/tenantA", tenantB = data + "/tenantB"
        try FileManager.default.createDirectory(atPath: tenantA + "/outbox", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tenantB + "/outbox", withIntermediateDirectories: true)
        try scenario.editRules(replacing: "watch: \(scenario.outbox)", with: "watch: \(tenantA)/outbox")
        try scenario.start()
        try Data("tenant A invoice\n".utf8).write(to: URL(fileURLWithPath: tenantA + "/outbox/a.edi"))
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()["a.edi"] != nil }, "log:\n\(log(scenario))")
        // tenantA is moved away and replaced by a link to tenantB, whose outbox holds B's payroll.
        #expect(rename(tenantA, data + "/tenantA.old") == 0)
        #expect(symlink(tenantB, tenantA) == 0)
        try Data("tenant B payroll\n".utf8).write(to: URL(fileURLWithPath: tenantB + "/outbox/payroll-b.edi"))
        #expect(await eventually(timeout: 30) { ((try? scenario.status().json["problems"] as? [String]) ?? []).contains { $0.contains("missing or lost") } },
                "status says the folder is lost; log:\n\(log(scenario))")
        try await Task.sleep(for: .seconds(3))
        #expect(scenario.partnerFiles()["payroll-b.edi"] == nil, "another tenant's file was sent")
        #expect(FileManager.default.fileExists(atPath: tenantB + "/outbox/payroll-b.edi"), "and never archived")
        #expect(try scenario.status().exit == 1)
    }

    // MARK: 5. Ready markers

    /// The marker was unlinked even when the data file had changed: a corrected file and its new marker,
    /// written while the first was in flight, were stranded. Only the marker seen with the sent version goes.
    @Test func newMarkerOfACorrectedFileSurvivesTheFirstSend() async throws {
        let scenario = try OutboundScenario(ruleExtras: ["ready_marker: .done"], transferDelayMs: 1500, settle: "3s")
        try scenario.start()
        let path = scenario.outbox + "/order.edi"
        try Data("first version\n".utf8).write(to: URL(fileURLWithPath: path))
        try Data().write(to: URL(fileURLWithPath: path + ".done"))
        #expect(await eventually(timeout: 30) { (try? scenario.startFileTransferCalls()) == 1 }, "log:\n\(log(scenario))")
        // While the first is in flight: the corrected file and a new marker, both renamed into place.
        let corrected = Data("corrected version\n".utf8)
        try corrected.write(to: URL(fileURLWithPath: path + ".tmp"))
        #expect(rename(path + ".tmp", path) == 0)
        try Data().write(to: URL(fileURLWithPath: path + ".done.tmp"))
        #expect(rename(path + ".done.tmp", path + ".done") == 0)
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()["order.edi"] == corrected },
                "the corrected file is sent; log:\n\(log(scenario))")
        #expect(await eventually(timeout: 30) { !FileManager.default.fileExists(atPath: path + ".done") }, "its marker goes after its own send")
    }

    // MARK: 8. Archive on a full second file system

    /// An archive_dir on a full file system kept a truncated copy under the file's real name. The copy
    /// goes to a temporary name first; status shows the failing after_send, and it succeeds once space
    /// returns, without a restart.
    @Test func archiveOnAFullFileSystemNeverLeavesATruncatedCopy() async throws {
        let root = try TempDirectory(prefix: "ferry-archive")
        let archive = root.path + "/archive"
        try Self.mountTmpfs(archive, size: "256k")
        defer { Self.unmount(archive) }
        let scenario = try OutboundScenario(ruleExtras: ["archive_dir: \(archive)"])
        let filler = Self.fill(archive)
        try scenario.start()
        var data = Data()
        while data.count < 100_000 { data.append(contentsOf: Array("payroll line \(data.count)\n".utf8)) }
        try data.write(to: URL(fileURLWithPath: scenario.outbox + "/payroll.edi"))
        #expect(await eventually(timeout: 60) { (try? scenario.outboundStatus()["after_send_failing"] as? Int) == 1 },
                "status shows the failing after_send; log:\n\(log(scenario))")
        #expect(try scenario.status().exit == 1, "degraded")
        let names = (FileManager.default.enumerator(atPath: archive)?.allObjects as? [String]) ?? []
        #expect(!names.contains { $0.hasSuffix("payroll.edi") }, "no copy under the real name while the disk is full: \(names)")
        #expect(FileManager.default.contents(atPath: scenario.outbox + "/payroll.edi") == data, "the original stays")
        try FileManager.default.removeItem(atPath: filler)
        var archived: Data?
        #expect(await eventually(timeout: 60) {
            let found = ((FileManager.default.enumerator(atPath: archive)?.allObjects as? [String]) ?? []).first { $0.hasSuffix("payroll.edi") }
            archived = found.flatMap { FileManager.default.contents(atPath: archive + "/" + $0) }
            return archived != nil && !FileManager.default.fileExists(atPath: scenario.outbox + "/payroll.edi")
        }, "archived once space returns, no restart; log:\n\(log(scenario))")
        #expect(archived == data, "the archived copy is whole")
        #expect(await eventually(timeout: 10) { (try? scenario.status().exit) == 0 })
    }

    // MARK: 6. A full journal disk

    /// When journaling detected files failed (state_dir full), they were never sent until a restart while
    /// status said nothing. They are retried; status says the journal's disk is full; they go once space returns.
    @Test func filesDetectedWhileTheJournalDiskIsFullGoOnceSpaceReturns() async throws {
        let scenario = try OutboundScenario()
        try Self.mountTmpfs(scenario.stateDir, size: "8m")
        defer { Self.unmount(scenario.stateDir) }
        try scenario.start()
        #expect(await eventually(timeout: 20) { scenario.daemon?.log.contains("ferry started") == true })
        try await Task.sleep(for: .seconds(1))
        // A checkpointed WAL is reused from its start, so ferry's next writes would fit in blocks it
        // already has however full the disk is. Truncated (as a checkpoint with a size limit, or an
        // operator's `sqlite3 journal.db 'PRAGMA wal_checkpoint(TRUNCATE)'`, leaves it), the next
        // journal write needs new blocks, and the full disk refuses them.
        #expect(try Self.run("/usr/bin/env", ["python3", "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30); print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone())",
            scenario.stateDir + "/journal.db"]) == 0, "python3 could not truncate the journal's WAL (python3 comes with `make deps`)")
        let filler = Self.fill(scenario.stateDir)
        let written = try scenario.drop(5, prefix: "full")
        #expect(await eventually(timeout: 30) {
            ((try? scenario.status().json["problems"] as? [String]) ?? []).contains { $0.contains("full") }
        }, "status names the full journal disk; log:\n\(log(scenario))")
        #expect(try scenario.status().exit == 1)
        #expect(try scenario.sendCounts().isEmpty)
        try FileManager.default.removeItem(atPath: filler)
        #expect(await eventually(timeout: 60) { scenario.partnerFiles().count == written.count }, "sent without a restart; log:\n\(log(scenario))")
        #expect(await eventually(timeout: 10) { (try? scenario.status().exit) == 0 })
    }

    // MARK: 15. A state_dir the unit cannot write

    /// A read-only state_dir (as outside the unit's ReadWritePaths) made systemd restart ferry every 5 s;
    /// `ferry run` exits 78 (which the unit does not restart) and names the drop-in to add.
    @Test func readOnlyStateDirExits78NamingTheDropIn() async throws {
        let scenario = try OutboundScenario()
        try Self.mountTmpfs(scenario.stateDir, size: "1m", readOnly: true)
        defer { Self.unmount(scenario.stateDir) }
        let result = try FerryBinary.run(["run", "--config", scenario.configPath], environment: scenario.emulator.environment)
        #expect(result.status == 78, "\(result.stderr)")
        #expect(result.stderr.contains("ReadWritePaths=\(scenario.stateDir)"), "\(result.stderr)")
        #expect(result.stderr.contains("systemctl edit ferry"))
    }

    // MARK: 1. after_send only on a quiescent version

    /// A sent file that a process opened for writing meanwhile was archived under the writer's feet; it
    /// stays until the writer closes it.
    @Test func sentFileOpenForWritingIsNotArchivedUntilClosed() async throws {
        let scenario = try OutboundScenario(transferDelayMs: 2000)
        try scenario.start()
        let path = scenario.outbox + "/held.edi"
        try Data("held open\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(await eventually(timeout: 30) { (try? scenario.startFileTransferCalls()) == 1 }, "log:\n\(log(scenario))")
        // A writer opens it (appending nothing yet) while the transfer runs, and holds it 6 s.
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", "exec 3>>'\(path)'; sleep 6"]
        try writer.run()
        #expect(await eventually(timeout: 30) { scenario.partnerFiles()["held.edi"] != nil })
        try await Task.sleep(for: .seconds(2))
        #expect(FileManager.default.fileExists(atPath: path), "not archived while open for writing; log:\n\(log(scenario))")
        writer.waitUntilExit()
        #expect(await eventually(timeout: 30) { !FileManager.default.fileExists(atPath: path) }, "archived once closed")
    }

    /// A file rewritten while its first version was in flight: the new version is sent, the log says
    /// "changed after it was sent", and the new version is not archived as the old one.
    @Test func fileChangedAfterItWasSentIsSentAgainWithAWarning() async throws {
        let scenario = try OutboundScenario(transferDelayMs: 1500)
        try scenario.start()
        let path = scenario.outbox + "/changing.edi"
        try Data("version one\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(await eventually(timeout: 30) { (try? scenario.startFileTransferCalls()) == 1 }, "log:\n\(log(scenario))")
        let second = Data("version two, longer\n".utf8)
        try second.write(to: URL(fileURLWithPath: path))
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()["changing.edi"] == second && (try? scenario.sendCounts()["changing.edi"]) == 2 },
                "log:\n\(log(scenario))")
        #expect(scenario.daemon?.log.contains("changed after it was sent") == true)
    }
}
