import Foundation
import Testing
import FerryConfig
import FerryTestSupport

/// `notify:` at the top level and per rule (issue #16, alerts): everything that would fail only when the
/// first alert is due is an error at `ferry validate`, at its file:line:col.
struct NotifyKeyTests {
    static func rules(top: String = "", rule: String = "") -> String {
        """
        version: 1
        aws: { region: us-east-1 }
        \(top)
        connectors:
          acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/out/ }
        outbound:
          - name: invoices
            watch: /srv/out
            connector: acme
        \(rule)
        inbound:
          - name: reports
            connector: acme
            remote_directory_path: /out
            local_directory_path: s3://acme-in/reports/
        """
    }

    @Test func topLevelAndRuleOverrideAreRead() throws {
        let directory = try TempDirectory(prefix: "notify-keys")
        let headers = directory.path + "/webhook.headers"
        try "# the token\nAuthorization: Bearer s3cr3t\nX-Team: ops\n".write(toFile: headers, atomically: true, encoding: .utf8)
        let yaml = Self.rules(
            top: "notify:\n  command: [/usr/local/bin/ferry-alert, --to, ops]\n  command_timeout: 5s\n  webhook: { url: https://alerts.example/ferry, headers_file: \(headers), timeout: 3s }",
            rule: "    notify: { command: /usr/local/bin/page-finance }")
        let result = RulesLoader.load(yaml: yaml, path: "r.yaml")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let rules = try #require(result.rules)
        let top = try #require(rules.notify)
        #expect(top.command == ["/usr/local/bin/ferry-alert", "--to", "ops"])
        #expect(top.commandTimeout == .seconds(5))
        #expect(top.webhook == NotifySettings.Webhook(url: "https://alerts.example/ferry", headersFile: headers, timeout: .seconds(3)))
        // The rule's own settings replace the top-level ones for its events; other rules and events about
        // no rule use the top-level ones.
        #expect(rules.notifySettings(forRule: "invoices") == NotifySettings(command: ["/usr/local/bin/page-finance"]))
        #expect(rules.notifySettings(forRule: "reports") == top)
        #expect(rules.notifySettings(forRule: nil) == top)
        let read = try NotifyHeaders.read(path: headers)
        #expect(read.map(\.name) == ["Authorization", "X-Team"] && read.map(\.value) == ["Bearer s3cr3t", "ops"])
    }

    @Test func mistakesAreErrorsAtTheirPositionAndNeverQuoteTheHeadersFile() throws {
        let directory = try TempDirectory(prefix: "notify-keys")
        let malformed = directory.path + "/bad.headers"
        try "Authorization Bearer s3cr3t\n".write(toFile: malformed, atomically: true, encoding: .utf8)
        let yaml = Self.rules(
            top: "notify:\n  command: ferry-alert\n  webhok: {}\n  webhook: { url: ftp://alerts.example/ferry, headers_file: \(directory.path)/missing.headers }",
            rule: "    notify: { webhook: { url: https://alerts.example/x, headers_file: \(malformed) } }")
        let result = RulesLoader.load(yaml: yaml, path: "r.yaml")
        #expect(result.rules == nil)
        #expect(result.errors.map(\.description) == [
            "r.yaml:4:12: error: 'command' must start with an absolute path (no shell or PATH lookup is used), got 'ferry-alert'; write e.g. /usr/local/bin/ferry-alert",
            "r.yaml:5:3: error: unknown key 'webhok' in 'notify' of the rules file; did you mean 'webhook'?",
            "r.yaml:6:19: error: 'url' must be an http:// or https:// URL with a host, got 'ftp://alerts.example/ferry'",
            "r.yaml:6:61: error: 'headers_file' \(directory.path)/missing.headers: the file does not exist; create it with lines such as 'Authorization: Bearer <token>'",
            "r.yaml:13:71: error: 'headers_file' \(malformed): line 1 is not a 'Name: value' header line (its contents are not shown, it may hold a secret)",
        ])
        #expect(!result.diagnostics.map(\.description).joined().contains("s3cr3t"))
    }

    @Test func anEmptyNotifyAndAnUnknownRuleKeyAreErrors() {
        let result = RulesLoader.load(yaml: Self.rules(top: "notify: {}", rule: "    notify: { command: /bin/true, url: https://x.example/ }"), path: "r.yaml")
        #expect(result.errors.map(\.description) == [
            "r.yaml:3:9: error: 'notify' of the rules file needs a 'command', a 'webhook', or both",
            "r.yaml:10:35: error: unknown key 'url' in 'notify' of outbound rule 'invoices'; it belongs inside 'webhook:'",
        ])
    }
}
