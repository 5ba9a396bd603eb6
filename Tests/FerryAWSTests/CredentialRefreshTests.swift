import Foundation
import Logging
import Testing
import FerryTestSupport
@testable import FerryAWS

/// Credentials over months: a failing refresh is retried with backoff, expiry is judged by AWS's clock,
/// and a RequestTimeTooSkewed answer is corrected once, StartFileTransfer included.
@Suite(.serialized) struct CredentialRefreshTests {
    /// A credential_process that counts its runs in `<dir>/runs` and does what `<dir>/mode` says:
    /// `fail`, or print the emulator's key expiring at the time in `<dir>/expires`.
    struct CountingProcess {
        let scenario: Scenario
        var dir: String { scenario.dir.path }

        init(accessKeyId: String = "AKIDPROC", secret: String = "proc-secret", mode: String) throws {
            scenario = try Scenario()
            let dir = scenario.dir.path
            let script = try scenario.script("creds.sh", """
                echo run >> \(dir)/runs
                if [ "$(cat \(dir)/mode)" = fail ]; then echo 'signing helper: certificate has expired' >&2; exit 2; fi
                echo "{\\"Version\\": 1, \\"AccessKeyId\\": \\"\(accessKeyId)\\", \\"SecretAccessKey\\": \\"\(secret)\\", \\"Expiration\\": \\"$(cat \(dir)/expires)\\"}"
                """)
            try "[profile counted]\ncredential_process = \(script)\n".write(toFile: dir + "/config", atomically: true, encoding: .utf8)
            try set(mode: mode)
            try expire(in: 3600)
        }

        func set(mode: String) throws { try mode.write(toFile: dir + "/mode", atomically: true, encoding: .utf8) }

        func expire(in seconds: TimeInterval) throws {
            try ISO8601DateFormatter().string(from: Date().addingTimeInterval(seconds)).write(toFile: dir + "/expires", atomically: true, encoding: .utf8)
        }

        var runs: Int { ((try? String(contentsOfFile: dir + "/runs", encoding: .utf8)) ?? "").split(separator: "\n").count }
    }

    @Test func failingRefreshIsRetriedWithBackoffNotOnEveryRequest() async throws {
        let process = try CountingProcess(mode: "fail")
        let client = try process.scenario.client(profile: "counted")
        defer { client.shutdown() }
        let started = ContinuousClock.now
        // A number of requests, not a time window: under load the first spawn alone may take seconds,
        // and what matters is how many of the requests ran the process.
        var requests = 0
        while requests < 100 || ContinuousClock.now - started < .milliseconds(1500) {
            do {
                _ = try await client.resolveCredentials()
                Issue.record("a failing credential_process gave credentials")
            } catch let error as AWSError {
                #expect(error.code == "CredentialProcessFailed" && error.message.contains("certificate has expired"))
            }
            requests += 1
            try await Task.sleep(for: .milliseconds(20))
        }
        let elapsed = Double((ContinuousClock.now - started).components.seconds) + 1
        // Tries at 0, 1, 3, 7… s after the first failure: at most log2(elapsed + 1) + 1 of them.
        let allowed = Int(log2(elapsed + 1)) + 1
        #expect(process.runs >= 1 && process.runs <= allowed, "\(process.runs) runs of the credential_process for \(requests) requests")
        print("credential_process runs: \(process.runs) for \(requests) requests in \(elapsed - 1) s")

        // Fixed at its source: the next try after the backoff succeeds.
        try process.set(mode: "ok")
        let recovered = ContinuousClock.now
        var credentials: AWSCredentials?
        while credentials == nil, ContinuousClock.now - recovered < .seconds(20) {
            credentials = try? await client.resolveCredentials()
            if credentials == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(credentials?.accessKeyId == "AKIDPROC")
        #expect(process.scenario.logs.all.contains { $0.hasPrefix("warning") && $0.contains("no usable AWS credentials") })
        try assertNoSecrets(process.scenario.logs.all, "proc-secret")
    }

    @Test func credentialsThatExpiredAtTheirSourceAreRefusedWithTheExpiry() async throws {
        let process = try CountingProcess(mode: "ok")
        try process.expire(in: -600)
        let client = try process.scenario.client(profile: "counted")
        defer { client.shutdown() }
        do {
            _ = try await client.resolveCredentials()
            Issue.record("expired credentials were used")
        } catch let error as AWSError {
            #expect(error.code == "ExpiredCredentials")
            #expect(error.message.contains("credential_process of profile counted") && error.message.contains("expired at"))
        }
    }

    /// Credentials valid for 12 more minutes by this machine's clock have 2 left by AWS's when AWS runs
    /// 10 minutes ahead: inside the 5-minute window, so they are refreshed; by the local clock they would
    /// be used until AWS refused them.
    @Test(arguments: [0.0, 600.0]) func expiryIsJudgedByTheClockLearnedFromAWS(awsAhead: Double) async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        try emulator.emulator.setClockOffset(seconds: awsAhead)
        let process = try CountingProcess(accessKeyId: emulator.accessKeyId, secret: emulator.secretAccessKey, mode: "ok")
        try process.expire(in: 720)
        var configuration = emulator.clientConfiguration()
        configuration.profile = "counted"
        configuration.environment = process.scenario.environment
        let client = try AWSClient(configuration: configuration, logger: process.scenario.logs.logger())
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        _ = try await s3.listObjectsV2(bucket: emulator.stagingBucket, prefix: "none/")
        #expect(process.runs == 1)
        #expect(abs(client.clockOffset - awsAhead) < 3, "learned \(client.clockOffset) s from the answer's Date")
        _ = try await s3.listObjectsV2(bucket: emulator.stagingBucket, prefix: "none/")
        #expect(process.runs == (awsAhead > 0 ? 2 : 1))
    }

    /// StartFileTransfer is sent once per call (a repeat could send the files twice), but a request the
    /// signature check refused for its time did nothing: it is corrected and sent once more.
    @Test func requestTimeTooSkewedIsCorrectedAndRetriedOnceEvenForStartFileTransfer() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        try emulator.emulator.setClockOffset(seconds: 1200)  // AWS 20 minutes ahead: beyond the 15 allowed
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"), observer: observer)
        defer { client.shutdown() }
        let staged = try TempDirectoryPath()
        try writeFile(staged.path + "/invoice.edi", size: 100, seed: 7)
        let s3 = S3Client(client: client)
        _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "skew/invoice.edi", fileAt: staged.path + "/invoice.edi")
        #expect(abs(client.clockOffset - 1200) < 3)
        // A second client starts from this machine's clock again, for the Transfer call.
        let fresh = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"), observer: observer)
        defer { fresh.shutdown() }
        let transferId = try await TransferClient(client: fresh).startFileTransfer(
            connectorId: emulator.sftpConnectorId, sendFilePaths: ["/\(emulator.stagingBucket)/skew/invoice.edi"], remoteDirectoryPath: nil)
        #expect(!transferId.isEmpty)
        let log = try emulator.emulator.requestLog()
        let puts = log.filter { $0.operation == "PutObject" }.map { "\($0.status ?? 0) \($0.errorCode ?? "-")" }
        let starts = log.filter { $0.operation == "StartFileTransfer" }
        #expect(puts == ["403 RequestTimeTooSkewed", "200 -"])
        #expect(starts.map { "\($0.status ?? 0) \($0.errorCode ?? "-")" } == ["400 InvalidSignatureException", "200 -"])
        #expect(starts.compactMap(\.transferId) == [transferId], "exactly one transfer created")
        #expect(observer.records.map(\.attempts) == [2, 2])
        #expect(client.retryStatistics.retriesGranted == 0 && fresh.retryStatistics.retriesGranted == 0)
    }

    @Test func httpDatesAreParsedAsFoundationParsesThem() throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        for seconds in stride(from: 0.0, to: 4_102_444_800, by: 86_400 * 37 + 3_723) {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(ClockSkew.parseHTTPDate(formatter.string(from: date)) == date)
        }
        for bad in ["", "Sun, 06 Nov 1994 08:49:37 UTC", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT "] {
            #expect(ClockSkew.parseHTTPDate(bad) == nil)
        }
    }
}
