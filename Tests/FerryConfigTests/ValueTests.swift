import Foundation
import Testing
import FerryConfig

@Test(arguments: [("500ms", Duration.milliseconds(500)), ("2s", .seconds(2)), ("5m", .seconds(300)), ("1h", .seconds(3600)),
                  ("1h30m", .seconds(5400)), ("1d", .seconds(86_400)), ("0s", .zero)])
func durationsParse(text: String, expected: Duration) throws {
    #expect(try ValueSyntax.duration(text).get() == expected)
}

@Test(arguments: ["", "5", "2 s", "1.5s", "2sec", "m5", "30m1h", "-1s", "1s1s"])
func malformedDurationsAreRefused(text: String) {
    #expect(throws: ValueError.self) { try ValueSyntax.duration(text).get() }
}

@Test func sizesParse() throws {
    #expect(try ValueSyntax.size("64MiB").get() == 64 * 1024 * 1024)
    #expect(try ValueSyntax.size("1GiB").get() == 1 << 30)
    #expect(try ValueSyntax.size("500KB").get() == 500_000)
    #expect(try ValueSyntax.size("1024").get() == 1024)
    #expect(throws: ValueError.self) { try ValueSyntax.size("64 furlongs").get() }
    #expect(throws: ValueError.self) { try ValueSyntax.size("MiB").get() }
    #expect(throws: ValueError.self) { try ValueSyntax.size("99999999999TiB").get() }
}

@Test func s3LocationsAcceptBothSpellings() throws {
    #expect(try ValueSyntax.s3Location("s3://my-bucket/a/b").get() == S3Location(bucket: "my-bucket", prefix: "a/b/"))
    #expect(try ValueSyntax.s3Location("/my-bucket/a/b/").get() == S3Location(bucket: "my-bucket", prefix: "a/b/"))
    #expect(try ValueSyntax.s3Location("s3://my-bucket").get().prefix == "")
    #expect(try ValueSyntax.s3Location("s3://my.bucket.name/").get().description == "s3://my.bucket.name/")
    for bad in ["my-bucket/x", "s3://My-Bucket/", "s3://ab/", "s3://bucket-s3alias/", "s3://a..b/", "s3://b/x//y"] {
        #expect(throws: ValueError.self, "\(bad)") { try ValueSyntax.s3Location(bad).get() }
    }
}

@Test func connectorIdsAreCheckedExactly() {
    #expect(ValueSyntax.isConnectorId("c-0123456789abcdef0"))
    #expect(!ValueSyntax.isConnectorId("c-0123456789abcdef"))
    #expect(!ValueSyntax.isConnectorId("c-0123456789abcdefg"))
    #expect(!ValueSyntax.isConnectorId("s-0123456789abcdef0"))
}

private func utc(_ text: String) -> Date {
    ISO8601DateFormatter().date(from: text)!
}

private func nextFire(_ expression: String, after: String, zone: String = "UTC") throws -> Date {
    try CronExpression(expression).next(after: utc(after), in: TimeZone(identifier: zone)!)
}

@Test func cronNextHandlesTrickyExpressions() throws {
    #expect(try nextFire("*/15 * * * *", after: "2026-11-27T10:07:30Z") == utc("2026-11-27T10:15:00Z"))
    // Strictly after: a time exactly on a match moves to the next one.
    #expect(try nextFire("*/15 * * * *", after: "2026-11-27T10:15:00Z") == utc("2026-11-27T10:30:00Z"))
    // Only leap years have 29 February.
    #expect(try nextFire("0 0 29 feb *", after: "2025-03-01T00:00:00Z") == utc("2028-02-29T00:00:00Z"))
    // Both day fields restricted: either matches (Friday 27 Nov 2026 → Monday 30 Nov, before 1 Dec).
    #expect(try nextFire("0 9 1 * mon", after: "2026-11-27T12:00:00Z") == utc("2026-11-30T09:00:00Z"))
    // A day-of-month starting with '*' makes both required: the first Monday on an odd day is 7 Dec.
    #expect(try nextFire("0 12 */2 * mon", after: "2026-11-27T12:00:00Z") == utc("2026-12-07T12:00:00Z"))
    // Weekdays only: Friday night → Monday.
    #expect(try nextFire("0 22 * * 1-5", after: "2026-11-27T23:00:00Z") == utc("2026-11-30T22:00:00Z"))
    // 7 is Sunday too.
    #expect(try nextFire("0 0 * * 7", after: "2026-11-27T00:00:00Z") == utc("2026-11-29T00:00:00Z"))
    // Year wrap.
    #expect(try nextFire("59 23 31 dec *", after: "2026-12-31T23:59:00Z") == utc("2027-12-31T23:59:00Z"))
    // Month ranges with steps and names: January and March.
    #expect(try nextFire("0 0 1 jan-mar/2 *", after: "2027-01-01T00:00:00Z") == utc("2027-03-01T00:00:00Z"))
    #expect(try nextFire("@hourly", after: "2026-11-27T10:59:59Z") == utc("2026-11-27T11:00:00Z"))
    // In a time zone: 06:00 in Berlin (UTC+1 in winter) is 05:00 UTC.
    #expect(try nextFire("0 6 * * *", after: "2026-11-27T06:00:00Z", zone: "Europe/Berlin") == utc("2026-11-28T05:00:00Z"))
}

@Test func cronAcrossDaylightSavingChangesMovesForward() throws {
    // 02:30 does not exist in New York on 8 March 2026 and happens twice on 1 November 2026.
    for after in ["2026-03-08T06:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T06:31:00Z"] {
        for expression in ["30 2 * * *", "*/7 * * * *", "0 * * * *"] {
            let start = utc(after)
            let next = try CronExpression(expression).next(after: start, in: TimeZone(identifier: "America/New_York")!)
            #expect(next > start, "\(expression) after \(after)")
            #expect(next.timeIntervalSince(start) <= 2 * 86_400, "\(expression) after \(after)")
        }
    }
}

@Test(arguments: ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *",
                  "5-1 * * * *", "a * * * *", "* * * foo *", ",1 * * * *", "1/2/3 * * * *", "0 0 31 apr,jun *"])
func malformedCronIsRefused(expression: String) {
    #expect(throws: ValueError.self) { try CronExpression(expression) }
}

@Test func eachFileIsRoutedToTheFirstMatchingOutboundRule() throws {
    let yaml = """
    version: 1
    aws: { region: us-east-1 }
    connectors:
      acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/ }
    outbound:
      - { name: edi, watch: /srv/out, include: ["*.edi"], connector: acme }
      - { name: rest, watch: /srv/out, connector: acme }
      - { name: tree, watch: /srv, recursive: true, include: ["**/*.csv"], connector: acme }
    """
    let result = RulesLoader.load(yaml: yaml, path: "rules.yaml")
    #expect(result.diagnostics.isEmpty)
    let rules = try #require(result.rules)
    #expect(rules.outboundRule(forFile: "/srv/out/a.edi")?.name == "edi")
    #expect(rules.outboundRule(forFile: "/srv/out/a.csv")?.name == "rest")
    #expect(rules.outboundRule(forFile: "/srv/out/sub/a.csv")?.name == "tree")
    #expect(rules.outboundRule(forFile: "/srv/other/deep/b.csv")?.name == "tree")
    #expect(rules.outboundRule(forFile: "/srv/out/.hidden.edi") == nil)
    #expect(rules.outboundRule(forFile: "/srv/out/a.tmp") == nil)
    #expect(rules.outboundRule(forFile: "/elsewhere/a.edi") == nil)
}

@Test func worldWritableRulesFileIsAWarning() throws {
    let folder = NSTemporaryDirectory() + "ferry-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let path = folder + "/rules.yaml"
    let example = try Repository.text("rules.example.yaml")
    try example.write(toFile: path, atomically: false, encoding: .utf8)
    #expect(chmod(path, 0o666) == 0)
    let result = RulesLoader.load(path: path)
    #expect(result.rules != nil)
    #expect(result.diagnostics.map(\.description) == [
        "\(path):1:1: warning: the rules file is world-writable (mode 666): anyone on this machine can change where files are sent; run chmod o-w \(path)",
    ])
    #expect(chmod(path, 0o644) == 0)
    #expect(RulesLoader.load(path: path).diagnostics.isEmpty)
}

@Test func unreadableRulesFileIsOneError() {
    let result = RulesLoader.load(path: "/nonexistent/ferry/rules.yaml")
    #expect(result.rules == nil)
    #expect(result.diagnostics.map(\.description) == ["/nonexistent/ferry/rules.yaml:1:1: error: cannot read the rules file: No such file or directory"])
}

@Test func rulesBuiltInCodeRouteLikeLoadedOnes() throws {
    let aws = AWSSettings(region: "us-east-1")
    let acme = Connector(name: "acme", type: .sftp, connectorId: "c-0123456789abcdef0", staging: S3Location(bucket: "acme", prefix: "out"), aws: aws)
    #expect(acme.staging?.prefix == "out/" && acme.maxInFlight == 100)
    let rules = Rules(aws: aws, connectors: [acme], outbound: [
        try OutboundRule(name: "edi", watch: "/srv/out/", include: ["*.edi"], connector: "acme"),
        try OutboundRule(name: "rest", watch: "/srv/out", connector: "acme"),
    ])
    #expect(rules.outboundRule(forFile: "/srv/out/x.edi")?.name == "edi")
    #expect(rules.outboundRule(forFile: "/srv/out/x.txt")?.name == "rest")
    #expect(rules.outboundRule(forFile: "/srv/out/sub/x.txt") == nil)
    #expect(throws: (any Error).self) { try OutboundRule(name: "bad", watch: "/srv", include: ["[a"], connector: "acme") }
}
