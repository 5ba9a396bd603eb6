import Foundation
import FerryTestSupport
import Testing

/// Issue #16 must-show 4: `ferry doctor` against the real emulator finds a bucket without write access,
/// a missing folder, a folder outside the unit's writable paths, a PENDING connector and expired
/// credentials, each with its remedy, and exits 1; a healthy setup exits 0.
@Suite struct DoctorCommandTests {
    /// A unit as the package's (User=, ProtectSystem=strict) whose writable paths are the scenario's folder.
    static func unitFile(in scenario: OutboundScenario, user: String = "root") throws -> String {
        let path = scenario.root.path + "/ferry.service"
        try """
            [Unit]
            Description=ferry (test)

            [Service]
            ExecStart=/usr/bin/ferry run --config \(scenario.configPath)
            User=\(user)
            ProtectSystem=strict
            ReadWritePaths=-\(scenario.root.path)
            StateDirectory=ferry
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func doctor(_ scenario: OutboundScenario, unit: String, environment: [String: String]? = nil, json: Bool = false) throws -> FerryBinary.Result {
        try FerryBinary.run(["doctor", "--config", scenario.configPath, "--unit", unit] + (json ? ["--json"] : []),
                            environment: environment ?? scenario.emulator.environment)
    }

    /// The line of `level` about `subject`, with the remedy line after it.
    static func finding(_ output: String, _ level: String, _ subject: String) -> String? {
        let lines = output.components(separatedBy: "\n")
        guard let i = lines.firstIndex(where: { $0.hasPrefix(level.padding(toLength: 6, withPad: " ", startingAt: 0) + subject) }) else { return nil }
        return lines[i] + (i + 1 < lines.count && lines[i + 1].hasPrefix("      → ") ? "\n" + lines[i + 1] : "")
    }

    @Test func aHealthySetupExitsZeroAfterRealChecks() throws {
        let scenario = try OutboundScenario()
        try FileManager.default.createDirectory(atPath: scenario.stateDir, withIntermediateDirectories: true)
        let unit = try Self.unitFile(in: scenario)
        try scenario.emulator.resetRequestLog()
        let result = try Self.doctor(scenario, unit: unit)
        #expect(result.status == 0, "doctor:\n\(result.stdout)\n\(result.stderr)")
        let out = result.stdout
        #expect(Self.finding(out, "ok", "rules")?.contains("is valid") == true, "\(out)")
        #expect(Self.finding(out, "ok", "credentials")?.contains("from environment; long-term keys") == true, "\(out)")
        #expect(Self.finding(out, "ok", "connector partner")?.contains("SFTP connector, status ACTIVE; egress: SERVICE_MANAGED") == true, "\(out)")
        #expect(Self.finding(out, "ok", "connection partner")?.contains("partner host key: ssh-ed25519 ") == true, "\(out)")
        #expect(Self.finding(out, "ok", "staging s3://\(scenario.emulator.stagingBucket)/outbound/")?.contains("PutObject and DeleteObject") == true, "\(out)")
        #expect(Self.finding(out, "ok", "folder \(scenario.outbox)")?.contains("writable by root inside the unit's writable paths") == true, "\(out)")
        #expect(Self.finding(out, "ok", "inotify")?.contains("1 folder(s) to watch") == true, "\(out)")
        #expect(Self.finding(out, "ok", "clock")?.contains("(the Date header of its answers)") == true, "\(out)")
        #expect(!out.contains("fail  "), "\(out)")
        // The probe was a real write and was removed; one TestConnection.
        let log = try scenario.emulator.requestLog()
        let probes = log.filter { ($0.key ?? "").hasPrefix("outbound/.ferry-doctor-probe-") }
        #expect(probes.map { "\($0.operation ?? "") \($0.status ?? 0)" } == ["PutObject 200", "DeleteObject 204"], "\(probes)")
        #expect(log.filter { $0.operation == "TestConnection" }.count == 1)

        let json = try Self.doctor(scenario, unit: unit, json: true)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(parsed["exit_code"] as? Int == 0 && parsed["config"] as? String == scenario.configPath)
        let checks = try #require(parsed["checks"] as? [[String: Any]])
        let staging = try #require(checks.first { ($0["subject"] as? String)?.hasPrefix("staging ") == true })
        #expect(staging["level"] as? String == "ok" && (staging["message"] as? String)?.contains("writable") == true)
        #expect(checks.allSatisfy { ["ok", "warn"].contains($0["level"] as? String ?? "") })
    }

    @Test func eachProblemIsReportedWithItsRemedyAndExitsOne() throws {
        let scenario = try OutboundScenario()
        try FileManager.default.createDirectory(atPath: scenario.stateDir, withIntermediateDirectories: true)
        let outside = try TempDirectory(prefix: "ferry-doctor-outside")
        let missing = scenario.root.path + "/not-created"
        let rules = try String(contentsOfFile: scenario.configPath, encoding: .utf8) + """
              - name: missing
                watch: \(missing)
                connector: partner
              - name: outside
                watch: \(outside.path)
                connector: partner

            """
        try rules.write(toFile: scenario.configPath, atomically: true, encoding: .utf8)
        let unit = try Self.unitFile(in: scenario)
        try scenario.emulator.denyWrites(bucket: scenario.emulator.stagingBucket)
        try scenario.emulator.setConnectorStatus(scenario.emulator.sftpConnectorId, "PENDING")

        let result = try Self.doctor(scenario, unit: unit)
        let out = result.stdout
        #expect(result.status == 1, "doctor:\n\(out)\n\(result.stderr)")
        let bucket = Self.finding(out, "fail", "staging s3://\(scenario.emulator.stagingBucket)/outbound/")
        #expect(bucket?.contains("AccessDenied") == true && bucket?.contains("→ allow s3:PutObject and s3:DeleteObject on arn:aws:s3:::\(scenario.emulator.stagingBucket)/outbound/*") == true, "\(out)")
        let absent = Self.finding(out, "fail", "folder \(missing)")
        #expect(absent?.contains("watch of rule missing: does not exist") == true && absent?.contains("→ create it for the service user: `install -d -o root -g root -m 0750 \(missing)`") == true, "\(out)")
        let sandboxed = Self.finding(out, "fail", "folder \(outside.path)")
        #expect(sandboxed?.contains("outside the unit's writable paths: ProtectSystem=strict") == true
                && sandboxed?.contains("→ add it with `systemctl edit ferry`: [Service] ReadWritePaths=\(outside.path)") == true, "\(out)")
        let pending = Self.finding(out, "fail", "connector partner")
        #expect(pending?.contains("status PENDING") == true && pending?.contains("→ connector partner (\(scenario.emulator.sftpConnectorId)) is PENDING in AWS") == true, "\(out)")
        #expect(Self.finding(out, "ok", "folder \(scenario.outbox)") != nil, "the good folder is still ok:\n\(out)")
        // Denied writes do not hide the bucket's contents: nothing was written.
        #expect(try scenario.emulator.requestLog().filter { $0.operation == "PutObject" }.allSatisfy { $0.status == 403 })

        // Expired credentials, from a real source that reports expiry: a credential_process.
        try scenario.emulator.denyWrites(bucket: scenario.emulator.stagingBucket, false)
        try scenario.emulator.setConnectorStatus(scenario.emulator.sftpConnectorId, "ACTIVE")
        let script = scenario.root.path + "/expired-credentials"
        try """
            #!/bin/sh
            echo '{"Version": 1, "AccessKeyId": "\(scenario.emulator.accessKeyId)", "SecretAccessKey": "\(scenario.emulator.secretAccessKey)", "SessionToken": "t", "Expiration": "2020-01-01T00:00:00Z"}'
            """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        try "[default]\ncredential_process = \(script)\n".write(toFile: scenario.root.path + "/aws-config", atomically: true, encoding: .utf8)
        var environment = scenario.emulator.environment
        environment["AWS_ACCESS_KEY_ID"] = nil
        environment["AWS_SECRET_ACCESS_KEY"] = nil
        environment["AWS_CONFIG_FILE"] = scenario.root.path + "/aws-config"
        let expired = try Self.doctor(scenario, unit: unit, environment: environment)
        #expect(expired.status == 1, "doctor:\n\(expired.stdout)\n\(expired.stderr)")
        let credentials = Self.finding(expired.stdout, "fail", "credentials")
        #expect(credentials?.contains("ExpiredCredentials") == true && credentials?.contains("expired at 2020-01-01T00:00:00Z") == true
                && credentials?.contains("→ give ferry's user working credentials") == true, "\(expired.stdout)")
        #expect(Self.finding(expired.stdout, "warn", "connector partner")?.contains("not checked: no usable credentials") == true, "\(expired.stdout)")
        #expect(!expired.stdout.contains(scenario.emulator.secretAccessKey))
    }

    @Test func withoutAnInstalledUnitTheSandboxIsAWarning() throws {
        let scenario = try OutboundScenario()
        try FileManager.default.createDirectory(atPath: scenario.stateDir, withIntermediateDirectories: true)
        let result = try FerryBinary.run(["doctor", "--config", scenario.configPath], environment: scenario.emulator.environment)
        // This machine has no ferry.service installed (the test would say otherwise).
        #expect(SystemdUnitPaths.noneInstalled, "a ferry.service is installed here; this test needs a machine without one")
        #expect(Self.finding(result.stdout, "warn", "systemd unit")?.contains("no ferry.service is installed") == true, "\(result.stdout)")
        // Without a unit, the package's user is assumed; this machine has none, so the current user stands in.
        #expect(getpwnam("ferry") == nil, "a user ferry exists here; this test needs a machine without one")
        #expect(Self.finding(result.stdout, "warn", "service user")?.contains("user ferry does not exist on this machine; folders are checked for root instead") == true,
                "\(result.stdout)")
        #expect(result.status == 0, "\(result.stdout)")
    }
}

enum SystemdUnitPaths {
    static var noneInstalled: Bool {
        !["/etc/systemd/system/ferry.service", "/run/systemd/system/ferry.service", "/lib/systemd/system/ferry.service",
          "/usr/lib/systemd/system/ferry.service"].contains { FileManager.default.fileExists(atPath: $0) }
    }
}
