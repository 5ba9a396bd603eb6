import Foundation
import Testing
import FerryTestSupport

/// What an operator reaches for: `ferry status`, `ferry retry`, the metrics file.
@Suite(.serialized) struct OperationsTests {
    @Test func statusShowsAQuarantinedFileAndRetryPutsItBack() async throws {
        let metrics = try TempDirectory(prefix: "ferry-metrics")
        let metricsFile = metrics.path + "/ferry.prom"
        let scenario = try OutboundScenario(retries: 1, topExtras: ["metrics_file: \(metricsFile)"])
        let blocked = scenario.emulator.partnerRoot + "/inbound/blocked.edi"
        try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: true)

        let stopped = try scenario.status()
        #expect(stopped.exit == 2, "no daemon: exit 2")
        #expect(stopped.json["health"] as? String == "not_running")

        try scenario.start()
        try Data("good\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/good.edi"))
        try Data("blocked\n".utf8).write(to: URL(fileURLWithPath: scenario.outbox + "/blocked.edi"))
        let quarantined = scenario.outbox + "/.ferry/failed/blocked.edi"
        #expect(await eventually(timeout: 60) { FileManager.default.fileExists(atPath: quarantined + ".reason") })
        #expect(await eventually(timeout: 30) { (try? scenario.outboundStatus()["completed24h"] as? Int) == 1 })

        let degraded = try scenario.status()
        #expect(degraded.exit == 1, "a quarantined file makes ferry degraded")
        #expect(degraded.json["health"] as? String == "degraded")
        #expect((degraded.json["daemon_pid"] as? Int ?? 0) > 0)
        #expect(degraded.json["possible_duplicates"] as? Int == 0)
        let rule = try scenario.outboundStatus()
        #expect(rule["quarantined"] as? Int == 1)
        #expect(rule["completed24h"] as? Int == 1)
        #expect(rule["waiting"] as? Int == 0)
        #expect(rule["staged"] as? Int == 0)
        #expect(rule["in_flight"] as? Int == 0)
        #expect(rule["failed"] as? Int == 0)
        #expect(rule["oldest_waiting_path"] == nil)

        // The operator fixes the partner side, then retries.
        try FileManager.default.removeItem(atPath: blocked)
        let refused = try FerryBinary.run(["retry", "--rule", "invoices", "--config", scenario.configPath])
        #expect(refused.status != 0 && refused.stderr.contains("--allow-root"), "as root, retry refuses without --allow-root: \(refused.stderr)")
        #expect(FileManager.default.fileExists(atPath: quarantined), "a refused retry moves nothing")
        let retry = try FerryBinary.run(["retry", "--rule", "invoices", "--allow-root", "--config", scenario.configPath])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(retry.stdout.contains("1 file put back in the queue"), "\(retry.stdout)")
        #expect(!FileManager.default.fileExists(atPath: quarantined))
        #expect(!FileManager.default.fileExists(atPath: quarantined + ".reason"))
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()["blocked.edi"] == Data("blocked\n".utf8) },
                "log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        #expect(await eventually(timeout: 30) { (try? scenario.outboundStatus()["completed24h"] as? Int) == 2 })
        let healthy = try scenario.status()
        #expect(healthy.exit == 0)
        #expect(healthy.json["health"] as? String == "healthy")
        #expect(try scenario.outboundStatus()["quarantined"] as? Int == 0)

        // The metrics file, as node_exporter's textfile collector reads it (written every 15 s and at stop).
        await scenario.daemon?.stop()
        let text = (try? String(contentsOfFile: metricsFile, encoding: .utf8)) ?? ""
        #expect(text.contains("ferry_files_sent_total{rule=\"invoices\"} 2"), "metrics:\n\(text)")
        #expect(text.contains("ferry_files_quarantined_total{rule=\"invoices\"} 1"))
        #expect(text.contains("ferry_files_failed_total{code=\""))
        #expect(text.contains("ferry_aws_requests_total{operation=\"StartFileTransfer\"}"))
        #expect(text.contains("ferry_queue_files{rule=\"invoices\",state=\"detected\"} 0"))
        #expect(text.contains("# TYPE ferry_bytes_sent_total counter"))
        #expect(text.contains("ferry_inotify_overflows_total 0"))
        #expect(text.contains("ferry_watch_scans_total "))
        #expect(!FileManager.default.fileExists(atPath: metricsFile + ".ferry-tmp"), "replaced atomically")
    }
}
