import Foundation
import Testing
import FerryConfig
import FerryTestSupport

/// `watch_mode` and `poll_interval` (issue #17).
struct WatchModeKeyTests {
    static func rules(_ extras: String, watch: String = "/srv/out") -> String {
        """
        version: 1
        aws: { region: us-east-1 }
        connectors:
          acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/out/ }
        outbound:
          - name: invoices
            watch: \(watch)
            connector: acme
        \(extras)
        """
    }

    @Test func defaultsAreAutoAndFiveSeconds() throws {
        let rule = try #require(RulesLoader.load(yaml: Self.rules(""), path: "r.yaml").rules?.outbound.first)
        #expect(rule.watchMode == .auto)
        #expect(rule.pollInterval == .seconds(5))
    }

    @Test func valuesAreRead() throws {
        let rule = try #require(RulesLoader.load(yaml: Self.rules("    watch_mode: poll\n    poll_interval: 750ms"), path: "r.yaml").rules?.outbound.first)
        #expect(rule.watchMode == .poll)
        #expect(rule.pollInterval == .milliseconds(750))
    }

    @Test func badValuesAreErrorsAtTheirPosition() {
        let result = RulesLoader.load(yaml: Self.rules("    watch_mode: polling\n    poll_interval: 10ms"), path: "r.yaml")
        #expect(result.rules == nil)
        #expect(result.errors.map(\.description) == [
            "r.yaml:9:17: error: 'watch_mode' must be one of auto, inotify, poll, got 'polling'",
            "r.yaml:10:20: error: 'poll_interval' must be at least 100ms: each poll pass stats every watched folder",
        ])
    }

    @Test func pollIntervalWithInotifyIsAWarning() throws {
        let result = RulesLoader.load(yaml: Self.rules("    watch_mode: inotify\n    poll_interval: 1s"), path: "r.yaml")
        #expect(result.rules != nil)
        #expect(result.warnings.map(\.description) == ["r.yaml:10:5: warning: 'poll_interval' is ignored because 'watch_mode' is inotify"])
    }

    /// `ferry validate` passes a probe that reads the folder's real file system type (the e2e test
    /// runs it on a bindfs mount); here the probe names the file system, to check the message.
    @Test func forcedInotifyOnANetworkFileSystemIsAWarning() throws {
        let folder = try TempDirectory(prefix: "ferry-rules")
        let path = folder.path + "/rules.yaml"
        try Self.rules("    watch_mode: inotify").write(toFile: path, atomically: true, encoding: .utf8)
        let onNFS = RulesLoader.load(path: path) { _ in ("nfs", true) }
        #expect(onNFS.rules != nil)
        #expect(onNFS.warnings.map(\.description) == [
            "\(path):9:17: warning: 'watch_mode: inotify' on /srv/out, which is on nfs: inotify sees only changes made through this host's kernel, so files written by other hosts (or behind a FUSE mount) wait for the reconciliation scan; use 'watch_mode: auto' or 'poll'",
        ])
        #expect(RulesLoader.load(path: path) { _ in ("ext4", false) }.warnings.isEmpty)
        try Self.rules("").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(RulesLoader.load(path: path) { _ in ("nfs", true) }.warnings.isEmpty, "auto needs no warning: it polls there")
    }
}
