import Testing
import FerryConfig

/// Rules text with one sftp connector and the given `outbound:` / `inbound:` items appended.
private func rulesFile(_ sections: String, top: String = "") -> String {
    """
    version: 1
    \(top)aws: { region: us-east-1 }
    connectors:
      acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/out/ }
    \(sections)
    """
}

private func messages(_ yaml: String) -> [String] {
    RulesLoader.load(yaml: yaml, path: "rules.yaml").diagnostics.map { "\($0.severity.rawValue): \($0.message)" }
}

/// Where an archive may live relative to a folder that a recursive rule at `/srv/out` watches: only a
/// `.ferry` component below the watch keeps the archive out of the watcher's sight.
@Test(arguments: [
    ("/srv/out", false), ("/srv/out/sent", false), ("/srv/out/a/b", false), ("/srv/out/.ferryx", false),
    ("/srv/out/.ferry/", true), ("/srv/out/.ferry/sent", true), ("/srv/out/a/.ferry/sent", true),
    ("/srv/outside", true), ("/srv", true), ("/var/archive/out", true),
])
func archiveDirUnderAWatchIsRefusedUnlessInsideAFerryFolder(archive: String, accepted: Bool) {
    let yaml = rulesFile("""
    outbound:
      - { name: out, watch: /srv/out, recursive: true, connector: acme, archive_dir: "\(archive)" }
    """)
    let result = RulesLoader.load(yaml: yaml, path: "rules.yaml")
    #expect((result.rules != nil) == accepted, "\(result.diagnostics)")
    if !accepted {
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.message.hasPrefix("'archive_dir' ") == true)
        #expect(result.errors.first?.column == 82, "the error points at the archive_dir value")
    }
}

@Test func archiveDirUnderAnotherRulesNonRecursiveWatchIsRefused() {
    let yaml = rulesFile("""
    outbound:
      - { name: a, watch: /srv/a, connector: acme }
      - { name: b, watch: /srv/b, connector: acme, archive_dir: /srv/a/archive/b }
    """)
    let found = messages(yaml)
    #expect(found.count == 1)
    #expect(found.first?.hasPrefix("error: 'archive_dir' /srv/a/archive/b is inside /srv/a, which outbound rule 'a' at 6:5 watches") == true)
}

@Test func anIgnoredArchiveDirIsNotCheckedAgainstWatches() {
    let yaml = rulesFile("""
    outbound:
      - { name: a, watch: /srv/a, connector: acme, after_send: delete, archive_dir: /srv/a/sent }
      - { name: b, watch: /srv/a/sent, connector: acme }
    """)
    #expect(messages(yaml) == ["warning: 'archive_dir' is ignored because 'after_send' is delete, not archive"])
}

@Test func aWatchInsideAnotherRulesArchiveIsRefusedOnce() {
    // b's watch is a's archive: one error, at the archive_dir, not a second one at the watch.
    let yaml = rulesFile("""
    outbound:
      - { name: a, watch: /srv/a, connector: acme, archive_dir: /srv/archive }
      - { name: b, watch: /srv/archive, connector: acme }
      - { name: c, watch: /srv/archive/2026-12-02/, connector: acme }
    """)
    let found = messages(yaml)
    #expect(found.count == 2)
    #expect(found.first?.hasPrefix("error: 'archive_dir' /srv/archive is the folder outbound rule 'b' at 7:5 watches") == true)
    #expect(found.last?.hasPrefix("error: 'watch' /srv/archive/2026-12-02 is inside /srv/archive, where outbound rule 'a' at 6:5 archives sent files") == true)
}

@Test(arguments: [("/tmp", true), ("/tmp/x", true), ("/var/tmp/x/y", true), ("/tmpx", false), ("/var/tmpfs", false), ("/srv/tmp", false)])
func foldersUnderTmpGetAPrivateTmpWarning(folder: String, warned: Bool) {
    let yaml = rulesFile("""
    outbound:
      - { name: out, watch: "\(folder)", connector: acme }
    """)
    let result = RulesLoader.load(yaml: yaml, path: "rules.yaml")
    #expect(result.errors.isEmpty)
    #expect(result.rules != nil, "a private /tmp is a warning, not an error")
    #expect(result.warnings.contains { $0.message.contains("PrivateTmp=yes") } == warned, "\(result.warnings)")
}

@Test func stateDirUnderTmpIsWarnedAbout() {
    let yaml = rulesFile("outbound: []", top: "state_dir: /tmp/ferry\n")
    let warnings = RulesLoader.load(yaml: yaml, path: "rules.yaml").warnings.map(\.message)
    #expect(warnings.contains { $0.hasPrefix("'state_dir' /tmp/ferry is under /tmp: the packaged systemd unit runs ferry with PrivateTmp=yes") })
}

@Test(arguments: [
    ("s3://acme-in/a/", "s3://acme-in/a", false), ("s3://acme-in/a/", "/acme-in/a/", false), ("s3://acme-in/a/", "s3://acme-in/a/b/", false),
    ("s3://acme-in/a/b/", "s3://acme-in/a/", false), ("s3://acme-in", "s3://acme-in/x/", false), ("s3://acme-in/a/", "s3://acme-in/ab/", true),
    ("s3://acme-in/a/", "s3://acme-out/a/", true), ("s3://acme-in/a/", "s3://acme-in/b/", true),
])
func inboundRulesNeedSeparateS3Locations(first: String, second: String, accepted: Bool) {
    let yaml = rulesFile("""
    inbound:
      - { name: one, connector: acme, remote_directory_path: /one, local_directory_path: "\(first)" }
      - { name: two, connector: acme, remote_directory_path: /two, local_directory_path: "\(second)" }
    """)
    let result = RulesLoader.load(yaml: yaml, path: "rules.yaml")
    #expect((result.rules != nil) == accepted, "\(result.diagnostics)")
    if !accepted {
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.line == 7, "the error is at the second rule")
        #expect(result.errors.first?.message.contains("inbound rule 'one' at 6:5") == true)
    }
}

@Test func onInDoubtDefaultsToResendAndAcceptsHold() throws {
    let yaml = """
    version: 1
    aws: { region: us-east-1 }
    connectors:
      acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/ }
      bank: { type: as2, connector_id: c-00112233445566778, staging: s3://bank-staging/, on_in_doubt: hold }
      other: { type: sftp, connector_id: c-00112233445566779, staging: s3://other-staging/, on_in_doubt: resend }
    outbound: []
    """
    let rules = try #require(RulesLoader.load(yaml: yaml, path: "rules.yaml").rules)
    #expect(rules.connectors.map(\.onInDoubt) == [.resend, .hold, .resend])
    #expect(InDoubtPolicy(rawValue: "hold") == .hold)
    let built = Connector(name: "x", type: .sftp, connectorId: "c-0123456789abcdef0", aws: AWSSettings(region: "us-east-1"))
    #expect(built.onInDoubt == RulesDefaults.onInDoubt && RulesDefaults.onInDoubt == .resend)
}

@Test(arguments: [("1h", Duration.seconds(3600)), ("90d", .seconds(7_776_000)), ("400d", .seconds(34_560_000))])
func retentionOfAnHourOrMoreIsAccepted(text: String, expected: Duration) throws {
    let rules = try #require(RulesLoader.load(yaml: rulesFile("outbound: []", top: "retention: \(text)\n"), path: "rules.yaml").rules)
    #expect(rules.retention == expected)
}

@Test(arguments: ["59m", "3599s", "0s"])
func retentionUnderAnHourIsRefused(text: String) {
    let result = RulesLoader.load(yaml: rulesFile("outbound: []", top: "retention: \(text)\n"), path: "rules.yaml")
    #expect(result.rules == nil)
    #expect(result.errors.map(\.message) == ["'retention' must be at least 1h (finished journal rows are kept this long for 'ferry history' and 'ferry explain'), got \(text)"])
}

@Test func retentionDefaultsToNinetyDays() {
    #expect(RulesDefaults.retention == .seconds(90 * 86_400))
    #expect(Rules(aws: AWSSettings(region: "us-east-1"), connectors: []).retention == RulesDefaults.retention)
}

/// `FERRY_TEST_MIN_RETENTION` lets a soak of minutes show pruning (docs/operations.md); it may only lower
/// the minimum, so a rules file valid in production stays valid whatever the variable says.
@Test func theTestVariableOnlyLowersTheMinimumRetention() {
    let variable = RulesDefaults.minimumRetentionVariable
    #expect(variable == "FERRY_TEST_MIN_RETENTION")
    #expect(RulesDefaults.minimumRetention(environment: [:]) == .seconds(3600))
    #expect(RulesDefaults.minimumRetention(environment: [variable: "20s"]) == .seconds(20))
    #expect(RulesDefaults.minimumRetention(environment: [variable: "2h"]) == .seconds(3600))
    #expect(RulesDefaults.minimumRetention(environment: [variable: "soon"]) == .seconds(3600))
    #expect(RulesDefaults.minimumRetention(environment: [variable: "0s"]) == .seconds(3600))
}
