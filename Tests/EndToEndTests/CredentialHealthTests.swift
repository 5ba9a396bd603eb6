import Foundation
import FerryTestSupport
import Testing

/// Credentials over months: a credential source that keeps failing makes `ferry status` degraded with
/// the source's own error, is asked again with backoff (not on every request), and once it works again
/// the held files go out and status recovers.
struct CredentialHealthTests {
    @Test func aFailingCredentialProcessDegradesStatusWithItsErrorUntilItWorks() async throws {
        // retries: 0: had a credential failure counted against the files, the first would quarantine them.
        let scenario = try OutboundScenario(retries: 0, batchMaxWait: "200ms")
        let dir = scenario.root.path
        let script = dir + "/credentials"
        try """
            #!/bin/sh
            echo run >> \(dir)/credential-runs
            if [ -f \(dir)/credentials-broken ]; then echo 'aws_signing_helper: certificate has expired' >&2; exit 2; fi
            echo '{"Version": 1, "AccessKeyId": "\(scenario.emulator.accessKeyId)", "SecretAccessKey": "\(scenario.emulator.secretAccessKey)"}'
            """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        #expect(FileManager.default.createFile(atPath: dir + "/credentials-broken", contents: nil))
        try "[default]\ncredential_process = \(script)\n".write(toFile: dir + "/aws-config", atomically: true, encoding: .utf8)
        var environment = scenario.emulator.environment
        environment["AWS_ACCESS_KEY_ID"] = nil
        environment["AWS_SECRET_ACCESS_KEY"] = nil
        environment["AWS_CONFIG_FILE"] = dir + "/aws-config"
        let daemon = try FerryDaemon(config: scenario.configPath, environment: environment, logPath: dir + "/ferry.log")
        scenario.daemon = daemon
        let started = ContinuousClock.now
        let written = try scenario.drop(3)
        func problems() -> String { ((try? scenario.status().json["problems"]) as? [String] ?? []).joined(separator: "\n") }
        let degraded = await eventually(timeout: 30) { problems().contains("certificate has expired") }
        #expect(degraded, "status never named the credential source's error: \(problems())\nlog:\n\(daemon.log.suffix(2000))")
        #expect(problems().contains("no usable AWS credentials"), "\(problems())")
        #expect(try scenario.status().exit == 1)
        try await Task.sleep(for: .seconds(3))
        let runs = ((try? String(contentsOfFile: dir + "/credential-runs", encoding: .utf8)) ?? "").split(separator: "\n").count
        let elapsed = Double((ContinuousClock.now - started).components.seconds) + 1
        // Backoff 1 s doubling: at most log2(elapsed + 1) + 1 runs however many requests wanted credentials.
        #expect(runs >= 1 && runs <= Int(log2(elapsed + 1)) + 1, "\(runs) credential_process runs in \(elapsed) s")
        #expect(try scenario.startFileTransferCalls() == 0)

        try FileManager.default.removeItem(atPath: dir + "/credentials-broken")
        let delivered = await eventually(timeout: 90) { scenario.partnerFiles() == written }
        #expect(delivered, "files not delivered once the credentials worked; log:\n\(daemon.log.suffix(2000))")
        let counts = try scenario.sendCounts()
        #expect(counts.count == 3 && counts.values.allSatisfy { $0 == 1 }, "each sent once: \(counts)")
        #expect(Self.quarantined(scenario).isEmpty)
        #expect(await eventually(timeout: 30) { !problems().contains("credentials") }, "\(problems())")
        #expect(await daemon.stop() == 0)
    }

    /// What `.ferry/failed/` holds.
    static func quarantined(_ scenario: OutboundScenario) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox + "/.ferry/failed")) ?? []
    }

    /// Credentials that work but may not call StartFileTransfer (a policy denies it, or was changed): every
    /// batch is denied alike, which is not the files' fault. Before, each denial counted toward the
    /// files' `retries` and they were quarantined within seconds. Now they are held, status is degraded
    /// naming the denial, and once it is allowed again each file goes out once.
    @Test func deniedStartFileTransferHoldsFilesInsteadOfQuarantiningThem() async throws {
        let scenario = try OutboundScenario(retries: 1, batchMaxWait: "200ms")
        try scenario.emulator.setFaults(rate: 0, kinds: ["access_denied"], latencyMs: 0, operations: ["StartFileTransfer"], every: 1)
        try scenario.start()
        let written = try scenario.drop(3)
        func problems() -> String { ((try? scenario.status().json["problems"]) as? [String] ?? []).joined(separator: "\n") }
        let degraded = await eventually(timeout: 30) { problems().contains("AccessDeniedException") }
        #expect(degraded, "status never named the denial: \(problems())\nlog:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        #expect(try scenario.status().exit == 1)
        // Long enough for two denials of the batch (15 s apart): with retries: 1 the old behaviour had
        // quarantined every file by now.
        let denials = await eventually(timeout: 40) {
            (try? scenario.emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.errorCode == "AccessDeniedException" }.count) ?? 0 >= 2
        }
        #expect(denials)
        #expect(Self.quarantined(scenario).isEmpty, "quarantined for the credentials' problem: \(Self.quarantined(scenario))")
        #expect(try scenario.outboundStatus()["quarantined"] as? Int == 0)

        try scenario.emulator.setFaults(rate: 0, kinds: [], latencyMs: 0)
        let delivered = await eventually(timeout: 60) { scenario.partnerFiles() == written }
        #expect(delivered, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        let counts = try scenario.sendCounts()
        #expect(counts.count == 3 && counts.values.allSatisfy { $0 == 1 }, "each sent once: \(counts)")
        #expect(Self.quarantined(scenario).isEmpty)
        #expect(await eventually(timeout: 30) { (try? scenario.status().exit) == 0 }, "\(problems())")
        #expect(await scenario.daemon?.stop() == 0)
    }

    /// The staging bucket refuses every write (AccessDenied on PutObject: a bucket policy, an expired
    /// role's permissions). Nothing is quarantined, status is degraded naming the bucket, and once
    /// writes are allowed again every file goes out once.
    @Test func deniedStagingBucketHoldsFilesAndDegradesStatus() async throws {
        let scenario = try OutboundScenario(retries: 0, batchMaxWait: "200ms")
        try scenario.emulator.denyWrites(bucket: scenario.emulator.stagingBucket)
        try scenario.start()
        let written = try scenario.drop(3)
        func problems() -> String { ((try? scenario.status().json["problems"]) as? [String] ?? []).joined(separator: "\n") }
        let degraded = await eventually(timeout: 30) { problems().contains("uploads to s3://\(scenario.emulator.stagingBucket)/ fail (AccessDenied") }
        #expect(degraded, "status never named the bucket: \(problems())\nlog:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        #expect(try scenario.status().exit == 1)
        let refusals = await eventually(timeout: 40) {
            (try? scenario.emulator.requestLog().filter { $0.operation == "PutObject" && $0.errorCode == "AccessDenied" }.count) ?? 0 >= 6
        }
        #expect(refusals, "each file's upload refused at least twice")
        #expect(Self.quarantined(scenario).isEmpty)
        #expect(try scenario.outboundStatus()["waiting"] as? Int == 3)

        try scenario.emulator.denyWrites(bucket: scenario.emulator.stagingBucket, false)
        let delivered = await eventually(timeout: 60) { scenario.partnerFiles() == written }
        #expect(delivered, "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        let counts = try scenario.sendCounts()
        #expect(counts.count == 3 && counts.values.allSatisfy { $0 == 1 }, "each sent once: \(counts)")
        #expect(await eventually(timeout: 30) { (try? scenario.status().exit) == 0 }, "\(problems())")
        #expect(await scenario.daemon?.stop() == 0)
    }
}
