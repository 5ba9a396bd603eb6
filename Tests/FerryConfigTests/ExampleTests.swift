import Foundation
import Testing
import FerryConfig

enum Repository {
    /// The package root, found from this file's path (Tests/FerryConfigTests/…).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
    }
}

@Test func exampleRulesValidateCleanly() throws {
    let result = RulesLoader.load(path: Repository.root.appendingPathComponent("rules.example.yaml").path)
    #expect(result.diagnostics.map(\.description) == [])
    let rules = try #require(result.rules)
    #expect(rules.connectors.map(\.name) == ["acme", "globex"])
    #expect(rules.outbound.map(\.name) == ["invoices", "orders-to-globex", "relay-reports"])
    #expect(rules.inbound.map(\.name) == ["reports"])

    let acme = try #require(rules.connector(named: "acme"))
    #expect(acme.type == .sftp)
    #expect(acme.staging == S3Location(bucket: "acme-staging", prefix: "outbound/"))
    #expect(acme.aws == AWSSettings(region: "us-east-1", maxAttempts: 3))
    #expect(acme.onInDoubt == .resend)
    #expect(rules.retention == .seconds(90 * 86_400))
    let globex = try #require(rules.connector(named: "globex"))
    #expect(globex.staging?.transferPath == "/globex-staging/edi/")
    #expect(globex.onInDoubt == .hold, "the example's payment partner holds in-doubt batches")
    // A connector's aws section overrides the top level key by key; max_attempts comes from the top.
    #expect(globex.aws == AWSSettings(region: "eu-west-1", profile: "globex", endpointURL: "https://transfer.eu-west-1.amazonaws.com",
                                      caBundle: "/etc/ssl/certs/ca-certificates.crt", maxAttempts: 3))

    let invoices = rules.outbound[0]
    #expect(invoices.include == ["*.edi", "*.xml"])
    #expect(invoices.batchMaxFiles == 10 && invoices.batchMaxWait == .seconds(1))
    #expect(invoices.settle == .seconds(2))
    let orders = rules.outbound[1]
    #expect(orders.readyMarker == ".done" && orders.afterSend == .delete && orders.recursive)

    let reports = rules.inbound[0]
    #expect(reports.afterRetrieve == .move("/outbound/reports/archive"))
    #expect(reports.localDirectoryPath.transferPath == "/acme-inbound/reports/")
    #expect(reports.downloadTo == "/srv/ferry/inbox/reports")
    guard case .every(let interval) = reports.schedule else {
        Issue.record("schedule should be every 5m")
        return
    }
    #expect(interval == .seconds(300))
}

@Test func omittedKeysTakeTheDocumentedDefaults() throws {
    let yaml = """
    version: 1
    aws: { region: us-east-1 }
    connectors:
      acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: /acme-staging }
    outbound:
      - { name: out, watch: /srv/out/, connector: acme }
    inbound:
      - { name: in, connector: acme, remote_directory_path: /out, local_directory_path: s3://acme-in }
    """
    let result = RulesLoader.load(yaml: yaml, path: "rules.yaml")
    #expect(result.diagnostics.isEmpty)
    let rules = try #require(result.rules)
    #expect(rules.stateDir == "/var/lib/ferry")
    #expect(rules.metricsFile == nil)
    #expect(rules.reconcileInterval == .seconds(600))
    #expect(rules.retention == .seconds(90 * 86_400))
    let acme = rules.connectors[0]
    #expect(acme.maxInFlight == 100 && acme.requestsPerSecond == 3 && acme.keepStaged == false)
    #expect(acme.onInDoubt == .resend)
    #expect(acme.staging == S3Location(bucket: "acme-staging", prefix: ""))
    #expect(acme.aws.maxAttempts == 3 && acme.aws.profile == nil && acme.aws.endpointURL == nil && acme.aws.caBundle == nil)
    let out = rules.outbound[0]
    #expect(out.watch == "/srv/out")
    #expect(!out.recursive && out.include.isEmpty && out.exclude.isEmpty && out.remoteDirectoryPath == nil)
    #expect(out.settle == .seconds(2) && out.readyMarker == nil && out.batchMaxFiles == 10 && out.batchMaxWait == .seconds(1))
    #expect(out.afterSend == .archive && out.archiveDir == nil && out.retries == 5)
    let inbound = rules.inbound[0]
    #expect(inbound.minAge == .seconds(60) && inbound.downloadTo == nil && inbound.onConflict == .rename)
    #expect(inbound.afterRetrieve == .keep && inbound.maxItems == 1000)
    guard case .every(let interval) = inbound.schedule else {
        Issue.record("default schedule should be every 5m")
        return
    }
    #expect(interval == .seconds(300))
}

/// docs/rules.md documents each key in a table row starting with its dotted path in backticks.
@Test func docsDocumentExactlyTheKeysTheParserAccepts() throws {
    let docs = try Repository.text("docs/rules.md")
    var documented: [String] = []
    for line in docs.split(separator: "\n") where line.hasPrefix("| `") {
        let cell = line.dropFirst(3).prefix { $0 != "`" }
        documented.append(String(cell))
    }
    let accepted = RulesSchema.acceptedKeys
    #expect(Set(documented).subtracting(accepted).sorted() == [], "documented but not accepted")
    #expect(Set(accepted).subtracting(documented).sorted() == [], "accepted but not documented")
    #expect(documented.count == Set(documented).count, "a key is documented twice")
}

/// The example shows every key, so a user can copy any of them from it.
@Test func exampleShowsEveryAcceptedKey() throws {
    let example = try Repository.text("rules.example.yaml")
    let shown = Set(example.split(separator: "\n").flatMap { line -> [String] in
        let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return code.split(whereSeparator: { " {},-".contains($0) }).filter { $0.hasSuffix(":") }.map { String($0.dropLast()) }
    })
    for key in RulesSchema.acceptedKeys {
        let leaf = String(key.split(separator: ".").last!)
        if leaf == "<name>" { continue }
        #expect(shown.contains(leaf), "rules.example.yaml does not show '\(key)'")
    }
}
