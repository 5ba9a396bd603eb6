import FerryTestSupport
import Foundation
import Testing

/// The emulator every end-to-end test relies on: it starts, answers signed requests from a real
/// AWS client, rejects badly signed ones, injects faults on request, and stops cleanly.
@Suite("Emulator start and stop")
struct EmulatorStartTests {
    @Test("starts, serves a request signed by the aws CLI, rejects a wrong secret, and stops")
    func servesSignedRequests() throws {
        let clock = ContinuousClock()
        let began = clock.now
        let emulator = try Emulator.start()
        print("emulator ready after \(clock.now - began) (self-reported \(emulator.startSeconds) s)")

        let folder = try TempDirectory(prefix: "emulator-start")
        let file = folder.path + "/hello.txt"
        try Data("hello from swift".utf8).write(to: URL(fileURLWithPath: file))
        let key = "swift/hello (1)+ü.txt"
        let put = try runAWS(["s3api", "put-object", "--bucket", emulator.stagingBucket, "--key", key, "--body", file],
                             environment: emulator.environment)
        #expect(put.status == 0, "aws s3api put-object failed: \(put.stderr)")

        let log = try emulator.requestLog()
        #expect(log.contains { $0.operation == "PutObject" && $0.status == 200 && $0.key == key })

        let described = try runAWS(["transfer", "describe-connector", "--connector-id", emulator.sftpConnectorId],
                                   environment: emulator.environment)
        #expect(described.status == 0, "aws transfer describe-connector failed: \(described.stderr)")
        #expect(described.stdout.contains("sftp://127.0.0.1:\(emulator.sftpPort)"))

        var wrong = emulator.environment
        wrong["AWS_SECRET_ACCESS_KEY"] = String(repeating: "x", count: 40)
        let rejected = try runAWS(["s3api", "head-bucket", "--bucket", emulator.stagingBucket], environment: wrong)
        #expect(rejected.status != 0)
        #expect(try emulator.requestLog().last?.status == 403)

        emulator.stop()
        #expect(!emulator.isRunning)
        #expect(!FileManager.default.fileExists(atPath: emulator.partnerRoot))
    }

    @Test("faults switched on at run time reach the client and the request log")
    func faultsAtRunTime() throws {
        let emulator = try Emulator.start()
        defer { emulator.stop() }
        try emulator.setFaults(rate: 1, kinds: ["internal"], latencyMs: 0)
        var environment = emulator.environment
        environment["AWS_MAX_ATTEMPTS"] = "1"
        let failed = try runAWS(["s3api", "list-objects-v2", "--bucket", emulator.stagingBucket], environment: environment)
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("InternalError"))
        try emulator.setFaults(rate: 0, kinds: [], latencyMs: 0)
        let worked = try runAWS(["s3api", "list-objects-v2", "--bucket", emulator.stagingBucket], environment: environment)
        #expect(worked.status == 0, "\(worked.stderr)")
        let faults = try emulator.requestLog().map(\.fault)
        #expect(faults == ["internal", nil])
    }

    private struct Outcome { var status: Int32; var stdout: String; var stderr: String }

    /// Runs the aws CLI, the reference client, with both pipes drained concurrently.
    private func runAWS(_ arguments: [String], environment: [String: String]) throws -> Outcome {
        let aws = ["/usr/local/bin/aws", "/usr/bin/aws"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? (environment["PATH"] ?? "").split(separator: ":").map { "\($0)/aws" }
                .first { FileManager.default.isExecutableFile(atPath: $0) }
        let executable = try #require(aws, "the aws CLI is not installed: run `make deps` (pip package awscli)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--output", "json"] + arguments
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errReader = DispatchQueue(label: "aws-stderr")
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        errReader.async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                       stderr: String(decoding: errData, as: UTF8.self))
    }
}
