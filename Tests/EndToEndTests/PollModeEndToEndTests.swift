import Foundation
import Testing
import FerryTestSupport

/// Issue #17 end to end: `ferry run` watches a real FUSE mount (bindfs over a local folder) while
/// files are written behind the mount, in the real folder, as another host writes to an NFS or SMB
/// export. inotify never hears of those files; the poll mode must find them.
@Suite(.serialized) struct PollModeEndToEndTests {
    /// An outbound scenario whose outbox is a bindfs mount of `<root>/real`.
    final class MountedScenario: @unchecked Sendable {
        let scenario: OutboundScenario
        let mount: BindfsMount
        /// Where "the other host" writes.
        var behind: String { mount.source }

        init(ruleExtras: [String], topExtras: [String] = [], settle: String = "1s") throws {
            scenario = try OutboundScenario(afterSend: "archive", ruleExtras: ruleExtras, topExtras: topExtras, settle: settle)
            mount = try BindfsMount(source: scenario.root.path + "/real", mountPoint: scenario.outbox)
        }

        /// Writes a file behind the mount (never through it) and returns its bytes.
        @discardableResult
        func writeBehind(_ name: String, size: Int = 200) throws -> Data {
            var data = Data("\(name)\n".utf8)
            while data.count < size { data.append(contentsOf: Array("line \(data.count) of \(name)\n".utf8)) }
            try data.write(to: URL(fileURLWithPath: behind + "/" + name))
            return data
        }

        func finish() async {
            _ = await scenario.daemon?.stop()
            mount.unmount()
        }
    }

    @Test func autoPicksPollOnFuseAndSendsFilesWrittenBehindTheMount() async throws {
        let setup = try MountedScenario(ruleExtras: ["watch_mode: auto", "poll_interval: 1s"])
        let scenario = setup.scenario
        try scenario.start()
        // The choice and its reason: in the log at start, and in `ferry status` (text and JSON).
        let said = "watching \(scenario.outbox) with poll every 1.0 seconds (auto: fuse is a network or FUSE file system)"
        #expect(await eventually(timeout: 60) { scenario.daemon?.log.contains(said) == true },
                "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        #expect(await eventually(timeout: 30) { ((try? scenario.outboundStatus())?["watching"] as? [String: Any])?["mode"] as? String == "poll" })
        let watching = try scenario.outboundStatus()["watching"] as? [String: Any] ?? [:]
        #expect(watching["reason"] as? String == "auto: fuse is a network or FUSE file system")
        #expect(watching["poll_interval_seconds"] as? Double == 1)
        let text = try FerryBinary.run(["status", "--config", scenario.configPath]).stdout
        #expect(text.contains("invoices              poll every 1s (auto: fuse is a network or FUSE file system)"), "\(text)")
        // And `ferry explain` for a file there names it too.
        let explained = try FerryBinary.run(["explain", scenario.outbox + "/any.edi", "--config", scenario.configPath]).stdout
        #expect(explained.contains("watched by poll every 1.0 s (auto: fuse is a network or FUSE file system)"), "\(explained)")

        let started = Date()
        var written: [String: Data] = [:]
        for index in 0..<5 { written["behind-\(index).edi"] = try setup.writeBehind("behind-\(index).edi") }
        // temp name, then rename, behind the mount: only the final name is sent.
        let renamed = try setup.writeBehind("renamed.edi.tmp")
        #expect(rename(setup.behind + "/renamed.edi.tmp", setup.behind + "/renamed.edi") == 0)
        written["renamed.edi"] = renamed
        #expect(await eventually(timeout: 120) { scenario.partnerFiles().count >= written.count },
                "arrived: \(scenario.partnerFiles().keys.sorted()); log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let elapsed = Date().timeIntervalSince(started)
        #expect(scenario.partnerFiles() == written, "the partner's files differ from those written behind the mount")
        #expect(try scenario.sendCounts().values.allSatisfy { $0 == 1 })
        // Archived through the mount (after_send acts on the sent version, through directory fds).
        #expect(await eventually(timeout: 60) {
            ((try? FileManager.default.contentsOfDirectory(atPath: setup.behind)) ?? []).filter { $0 != ".ferry" }.isEmpty
        }, "left behind: \((try? FileManager.default.subpathsOfDirectory(atPath: setup.behind)) ?? []); log:\n\(scenario.daemon?.log.split(separator: "\n").filter { $0.contains("after_send") || $0.contains("archive") || $0.contains("error") }.suffix(20).joined(separator: "\n") ?? "")")
        print("poll mode e2e on bindfs: \(written.count) files written behind the mount were at the partner \(String(format: "%.1f", elapsed)) s later (poll_interval 1 s + settle 1 s, then upload and transfer through the emulator); reconcile_interval is 10 min")
        await setup.finish()
    }

    @Test func slowWriterBehindTheMountIsNeverSentHalfWritten() async throws {
        // Pauses of 50 ms, far below settle (4 s): stability across settle is the only protection here,
        // since the writer is not on "this host" as far as the mount is concerned.
        let setup = try MountedScenario(ruleExtras: ["watch_mode: auto", "poll_interval: 500ms"], settle: "4s")
        let scenario = setup.scenario
        try scenario.start()
        #expect(await eventually(timeout: 60) { scenario.daemon?.log.contains("with poll every") == true })
        let path = setup.behind + "/slow.edi"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var whole = Data()
        for index in 0..<60 {
            let chunk = Data(String(repeating: "chunk \(index) ", count: 40).utf8)
            try handle.write(contentsOf: chunk)
            whole.append(chunk)
            try await Task.sleep(for: .milliseconds(50))
        }
        try handle.close()
        #expect(await eventually(timeout: 120) { scenario.partnerFiles()["slow.edi"] != nil })
        #expect(scenario.partnerFiles()["slow.edi"] == whole, "the partner got \(scenario.partnerFiles()["slow.edi"]?.count ?? 0) of \(whole.count) bytes")
        #expect(try scenario.sendCounts()["slow.edi"] == 1)
        await setup.finish()
    }

    /// The blindness poll mode works around, documented: with `watch_mode: inotify` forced on the FUSE
    /// mount, a file written behind the mount is sent only after the reconciliation scan, while one
    /// written through the mount goes at once. `ferry validate` warns about the configuration.
    @Test func forcedInotifyMissesFilesBehindTheMountUntilReconciliation() async throws {
        let reconcile = 20.0
        let setup = try MountedScenario(ruleExtras: ["watch_mode: inotify"], topExtras: ["reconcile_interval: \(Int(reconcile))s"])
        let scenario = setup.scenario
        let validate = try FerryBinary.run(["validate", scenario.configPath])
        #expect(validate.status == 0)
        #expect(validate.stderr.contains("warning: 'watch_mode: inotify' on \(scenario.outbox), which is on fuse: inotify sees only changes made through this host's kernel"),
                "ferry validate said: \(validate.stderr)")

        let daemonStarted = Date()
        try scenario.start()
        #expect(await eventually(timeout: 60) { scenario.daemon?.log.contains("with inotify (watch_mode: inotify on fuse; inotify cannot see writers") == true },
                "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        try await Task.sleep(for: .seconds(1))
        let behind = try setup.writeBehind("behind.edi")
        let through = Data("written through the mount\n".utf8)
        try through.write(to: URL(fileURLWithPath: scenario.outbox + "/through.edi"))
        #expect(await eventually(timeout: 120) { scenario.partnerFiles()["through.edi"] != nil })
        let throughArrived = Date()
        // The first reconciliation cannot come before the daemon has run reconcile_interval; until
        // then the file behind the mount is invisible to inotify.
        if throughArrived.timeIntervalSince(daemonStarted) < reconcile {
            #expect(scenario.partnerFiles()["behind.edi"] == nil, "a file written behind the mount was seen without a reconciliation")
        }
        // Whole, not just present: the partner's SFTP server creates the file before writing its bytes.
        #expect(await eventually(timeout: 240) { scenario.partnerFiles()["behind.edi"] == behind },
                "behind.edi never arrived; log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let behindArrived = Date()
        #expect(behindArrived.timeIntervalSince(daemonStarted) >= reconcile, "only the reconciliation scan can have found it")
        #expect(scenario.partnerFiles()["behind.edi"] == behind)
        print("forced inotify on bindfs: through.edi at the partner after \(String(format: "%.1f", throughArrived.timeIntervalSince(daemonStarted))) s, behind.edi only after \(String(format: "%.1f", behindArrived.timeIntervalSince(daemonStarted))) s (reconcile_interval \(Int(reconcile)) s)")
        await setup.finish()
    }
}
