import Foundation
import FerryTestSupport
import Testing

/// Credentials over months: a credential source that keeps failing makes `ferry status` degraded with
/// the source's own error, is asked again with backoff (not on every request), and once it works again
/// the held files go out and status recovers.
struct CredentialHealthTests {
    @Test func aFailingCredentialProcessDegradesStatusWithItsErrorUntilItWorks() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "200ms")
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
        #expect(await eventually(timeout: 30) { !problems().contains("credentials") }, "\(problems())")
        #expect(await daemon.stop() == 0)
    }
}
