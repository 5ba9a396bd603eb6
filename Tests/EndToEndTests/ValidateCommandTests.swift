import Foundation
import Testing
import FerryTestSupport

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let examplePath = repositoryRoot.appendingPathComponent("rules.example.yaml").path

@Test func validateAcceptsTheExampleAsArgumentOrOption() throws {
    for arguments in [["validate", examplePath], ["validate", "--config", examplePath]] {
        let result = try FerryBinary.run(arguments)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "\(examplePath): OK — 2 connectors, 3 outbound rules, 1 inbound rule\n")
        #expect(result.stderr == "")
    }
}

@Test func validateReadsFerryConfigFromTheEnvironment() throws {
    var environment = ProcessInfo.processInfo.environment
    environment["FERRY_CONFIG"] = examplePath
    let result = try FerryBinary.run(["validate"], environment: environment)
    #expect(result.status == 0)
    #expect(result.stdout.hasPrefix("\(examplePath): OK"))
}

@Test func validatePrintsEveryErrorAndExitsSeventyEight() throws {
    let folder = try TempDirectory(prefix: "ferry-validate")
    let path = folder.path + "/rules.yaml"
    let yaml = """
    version: 1
    aws: { region: us-east-1 }
    connectors:
      acme:
        type: sftp
        connector_id: c-12345
    outbound:
      - name: one
        watch: outbox
        connector: acme
        batch: { max_files: 20 }

    """
    try yaml.write(toFile: path, atomically: false, encoding: .utf8)
    let result = try FerryBinary.run(["validate", "--config", path])
    #expect(result.status == 78)
    #expect(result.stdout == "")
    #expect(result.stderr == """
    \(path):6:19: error: 'connector_id' 'c-12345' must be 'c-' and 17 lowercase hexadecimal digits, like c-0123456789abcdef0
    \(path):9:12: error: 'watch' must be an absolute path (starting with '/'), got 'outbox'
    \(path):11:25: error: 'max_files' must be from 1 to 10 (StartFileTransfer takes at most 10 paths), got 20
    \(path): 3 errors, not valid

    """)
}

@Test func validateCountsInTheSingularAndPrintsWarningsToStderr() throws {
    let folder = try TempDirectory(prefix: "ferry-validate")
    let path = folder.path + "/rules.yaml"
    let yaml = """
    version: 1
    aws: { region: us-east-1 }
    connectors:
      acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/ }
    outbound:
      - { name: all, watch: /srv/out, connector: acme }
      - { name: edi, watch: /srv/out, include: ["*.edi"], connector: acme }

    """
    try yaml.write(toFile: path, atomically: false, encoding: .utf8)
    #expect(chmod(path, 0o666) == 0)
    let result = try FerryBinary.run(["validate", path])
    #expect(result.status == 0)
    #expect(result.stdout == "\(path): OK — 1 connector, 2 outbound rules, 0 inbound rules\n")
    let warnings = result.stderr.split(separator: "\n")
    #expect(warnings.count == 2)
    #expect(warnings.first?.hasPrefix("\(path):1:1: warning: the rules file is world-writable") == true)
    #expect(warnings.last?.hasPrefix("\(path):7:5: warning: outbound rule 'edi' never receives a file") == true)
}

@Test func validateReportsAMissingFileClearly() throws {
    let result = try FerryBinary.run(["validate", "--config", "/nonexistent/rules.yaml"])
    #expect(result.status == 78)
    #expect(result.stderr.hasPrefix("/nonexistent/rules.yaml:1:1: error: cannot read the rules file: No such file or directory\n"))
}

@Test func validateRefusesAnArchiveInsideAWatchedFolderAndWarnsAboutPrivateTmp() throws {
    let folder = try TempDirectory(prefix: "ferry-validate")
    let path = folder.path + "/rules.yaml"
    let yaml = """
    version: 1
    aws: { region: us-east-1 }
    connectors:
      acme: { type: as2, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/, on_in_doubt: hold }
    outbound:
      - { name: invoices, watch: /srv/out, recursive: true, connector: acme, archive_dir: /srv/out/sent }
      - { name: scratch, watch: /tmp/out, connector: acme }

    """
    try yaml.write(toFile: path, atomically: false, encoding: .utf8)
    let result = try FerryBinary.run(["validate", path])
    #expect(result.status == 78)
    #expect(result.stdout == "")
    let lines = result.stderr.split(separator: "\n").map(String.init)
    #expect(lines.count == 3, "\(result.stderr)")
    #expect(lines.first?.hasPrefix("\(path):6:87: error: 'archive_dir' /srv/out/sent is inside /srv/out, which outbound rule 'invoices' at 6:5 watches") == true)
    #expect(lines.dropFirst().first?.hasPrefix("\(path):7:29: warning: 'watch' /tmp/out is under /tmp: the packaged systemd unit runs ferry with PrivateTmp=yes") == true)
    #expect(lines.last == "\(path): 1 error, not valid")
}
