import Foundation
import Logging
import Testing
import FerryTestSupport
@testable import FerryAWS

/// Issue #13, "silent duplicates": an operation whose repeat is a second transfer (StartFileTransfer,
/// StartRemoteMove, StartRemoteDelete) gets one HTTP attempt per call, unless the request provably never
/// reached the service; and the error says which of the two happened. Harmless operations still retry.
@Suite(.serialized) struct InDoubt {
    /// A client on the emulator, its connection to it already open and idle in the pool: libcurl's
    /// own resend happens only on a reused connection, so every test here gives it one to reuse.
    private func warmClient(_ emulator: EmulatorProcess, observer: RecordingObserver) async throws -> (AWSClient, TransferClient) {
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"), observer: observer)
        let transfer = TransferClient(client: client)
        _ = try await transfer.describeConnector(connectorId: emulator.sftpConnectorId)
        return (client, transfer)
    }

    private func startRequests(_ emulator: EmulatorProcess) throws -> [Emulator.RequestRecord] {
        try emulator.emulator.requestLog().filter { $0.operation == "StartFileTransfer" }
    }

    /// The answer is lost after the transfer was queued (`fault`: lost_answer, late_504, or drop, which
    /// closes the reused connection as the request arrives): exactly one request, and "in doubt".
    @Test(arguments: ["lost_answer", "late_504", "drop"])
    func startFileTransferWithoutAnAnswerIsSentOnceAndInDoubt(fault: String) async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        try emulator.emulator.setFaults(rate: 1, kinds: [fault], latencyMs: 0, operations: ["StartFileTransfer"])
        try emulator.emulator.resetRequestLog()
        let error = try await #require(throws: AWSError.self) {
            _ = try await transfer.startFileTransfer(connectorId: emulator.sftpConnectorId, sendFilePaths: ["/\(emulator.stagingBucket)/pay.xml"],
                                                     remoteDirectoryPath: nil)
        }
        #expect(error.outcome == .unknown, "\(error)")
        #expect(!error.isRetryable)
        let starts = try startRequests(emulator)
        #expect(starts.count == 1, "StartFileTransfer reached the emulator \(starts.count) times: \(starts.map { $0.fault ?? "-" })")
        #expect(starts.allSatisfy { $0.fault == fault })
        if fault != "drop" {
            #expect(starts.first?.transferId != nil, "the emulator really queued the transfer")
        }
        #expect(observer.records.last?.attempts == 1)
    }

    /// The issue's numbers: with every third answer lost, 60 files (30 calls of 2) became 90 sends.
    @Test func everyThirdAnswerLostStillOneRequestPerCall() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        try emulator.emulator.setFaults(rate: 0, kinds: ["lost_answer"], latencyMs: 0, operations: ["StartFileTransfer"], every: 3)
        try emulator.emulator.resetRequestLog()
        var answered = 0
        var inDoubt = 0
        for call in 0..<30 {
            let paths = ["/\(emulator.stagingBucket)/pay-\(call)-a.xml", "/\(emulator.stagingBucket)/pay-\(call)-b.xml"]
            do {
                _ = try await transfer.startFileTransfer(connectorId: emulator.sftpConnectorId, sendFilePaths: paths, remoteDirectoryPath: nil)
                answered += 1
            } catch let error as AWSError where error.outcome == .unknown {
                inDoubt += 1
            }
        }
        #expect(answered == 20 && inDoubt == 10)
        let starts = try startRequests(emulator)
        #expect(starts.count == 30, "30 calls made \(starts.count) StartFileTransfer requests")
        #expect(starts.compactMap(\.transferId).count == 30)
        #expect(starts.flatMap { $0.paths ?? [] }.count == 60, "60 files, each sent once")
    }

    @Test func startRemoteMoveAndDeleteAreSentOnce() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        try emulator.emulator.setFaults(rate: 1, kinds: ["late_504"], latencyMs: 0, operations: ["StartRemoteMove", "StartRemoteDelete"])
        try emulator.emulator.resetRequestLog()
        let move = try await #require(throws: AWSError.self) {
            _ = try await transfer.startRemoteMove(connectorId: emulator.sftpConnectorId, sourcePath: "/a.csv", targetPath: "/archive/a.csv")
        }
        let delete = try await #require(throws: AWSError.self) {
            _ = try await transfer.startRemoteDelete(connectorId: emulator.sftpConnectorId, deletePath: "/b.csv")
        }
        #expect(move.outcome == .unknown && delete.outcome == .unknown)
        #expect(move.httpStatus == 504 && delete.httpStatus == 504)
        let operations = try emulator.emulator.requestLog().compactMap(\.operation)
        #expect(operations == ["StartRemoteMove", "StartRemoteDelete"])
    }

    @Test func connectionRefusedIsNotStartedAndRetried() async throws {
        // A bound socket that does not listen: its port refuses connections, and no one else can take it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        var configuration = AWSClientConfiguration(region: "us-east-1", endpointURL: "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))",
                                                   environment: ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
                                                                 "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"])
        configuration.retryBaseDelay = .milliseconds(20)
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: configuration, logger: Logger(label: "test"), observer: observer)
        defer { client.shutdown() }
        let error = try await #require(throws: AWSError.self) {
            _ = try await TransferClient(client: client).startFileTransfer(connectorId: "c-0123456789abcdef0", sendFilePaths: ["/b/k"],
                                                                           remoteDirectoryPath: nil)
        }
        #expect(error.kind == .network && error.outcome == .notStarted, "\(error)")
        #expect(error.isRetryable)
        #expect(observer.records.map(\.attempts) == [3], "a connection that was never made is safe to try again")
    }

    /// A connect that times out (the SYN dropped, as by a silent firewall) never sent a byte.
    @Test func connectTimeoutIsNotStartedAndRetried() async throws {
        // A listener with a full accept queue: Linux drops further SYNs, so a connect hangs. (With
        // tcp_abort_on_overflow it would answer RST instead, a refused connect: not what is tested here.)
        let abortOnOverflow = try String(contentsOfFile: "/proc/sys/net/ipv4/tcp_abort_on_overflow", encoding: .utf8)
        try #require(abortOnOverflow.hasPrefix("0"), "needs `sysctl net.ipv4.tcp_abort_on_overflow=0` (the default)")
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 0) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        try #require(listening)
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<3 {
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            fillers.append(filler)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, length) } }
        }
        try await Task.sleep(for: .milliseconds(200))  // let the fillers' handshakes fill the queue
        var configuration = AWSClientConfiguration(region: "us-east-1", endpointURL: "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))",
                                                   environment: ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
                                                                 "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"])
        configuration.retryBaseDelay = .milliseconds(20)
        configuration.connectTimeout = .seconds(1)
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: configuration, logger: Logger(label: "test"), observer: observer)
        defer { client.shutdown() }
        let error = try await #require(throws: AWSError.self) {
            _ = try await TransferClient(client: client).startFileTransfer(connectorId: "c-0123456789abcdef0", sendFilePaths: ["/b/k"],
                                                                           remoteDirectoryPath: nil)
        }
        #expect(error.kind == .timeout && error.outcome == .notStarted, "\(error)")
        #expect(observer.records.map(\.attempts) == [3])
    }

    @Test func throttlingIsRetriedNoSoonerThanRetryAfterSeconds() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        // Every second StartFileTransfer is throttled: the first call goes through, the second call's
        // first attempt is throttled and its retry goes through.
        try emulator.emulator.setFaults(rate: 0, kinds: ["throttle"], latencyMs: 0, operations: ["StartFileTransfer"], every: 2,
                                        retryAfterSeconds: 2)
        let paths = ["/\(emulator.stagingBucket)/t.xml"]
        _ = try await transfer.startFileTransfer(connectorId: emulator.sftpConnectorId, sendFilePaths: paths, remoteDirectoryPath: nil)
        try emulator.emulator.resetRequestLog()
        let clock = ContinuousClock()
        let started = clock.now
        let id = try await transfer.startFileTransfer(connectorId: emulator.sftpConnectorId, sendFilePaths: paths, remoteDirectoryPath: nil)
        let elapsed = clock.now - started
        #expect(!id.isEmpty)
        #expect(elapsed >= .seconds(2), "retried after \(elapsed), before the 2 s the service asked for")
        #expect(observer.records.last?.attempts == 2)
        let starts = try startRequests(emulator)
        #expect(starts.map(\.fault) == ["throttle", nil])
        if starts.count == 2 { #expect(starts[1].ts - starts[0].ts >= 2.0) }
    }

    @Test func throttlingThatAsksForTooLongIsNotWaitedOut() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        try emulator.emulator.setFaults(rate: 1, kinds: ["throttle"], latencyMs: 0, operations: ["StartFileTransfer"], retryAfterSeconds: 300)
        let error = try await #require(throws: AWSError.self) {
            _ = try await transfer.startFileTransfer(connectorId: emulator.sftpConnectorId, sendFilePaths: ["/b/k"], remoteDirectoryPath: nil)
        }
        // Retrying sooner than asked would only be refused again; the caller gets the wait instead.
        #expect(error.isThrottling && error.outcome == .notStarted && error.retryAfterSeconds == 300)
        #expect(observer.records.last?.attempts == 1)
    }

    @Test func validationErrorIsNotStartedAndFinal() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        try emulator.emulator.resetRequestLog()
        let eleven = (0..<11).map { "/\(emulator.stagingBucket)/\($0)" }
        let error = try await #require(throws: AWSError.self) {
            _ = try await transfer.startFileTransfer(connectorId: emulator.sftpConnectorId, sendFilePaths: eleven, remoteDirectoryPath: nil)
        }
        #expect(error.code == "ValidationException" && error.httpStatus == 400)
        #expect(error.outcome == .notStarted && !error.isRetryable)
        #expect(try startRequests(emulator).count == 1)
    }

    /// Harmless operations keep the standard retries, on 5xx and on an answer lost after the work.
    @Test(arguments: ["internal", "late_504", "lost_answer"])
    func idempotentOperationsAreStillRetried(fault: String) async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let (client, transfer) = try await warmClient(emulator, observer: observer)
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let dir = try TempDirectoryPath()
        try writeFile(dir.path + "/f", size: 1000, seed: 1)
        try emulator.emulator.setFaults(rate: 1, kinds: [fault], latencyMs: 0,
                                        operations: ["PutObject", "ListFileTransferResults", "StartDirectoryListing"])
        try emulator.emulator.resetRequestLog()
        let put = try await #require(throws: AWSError.self) {
            _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "retried", fileAt: dir.path + "/f")
        }
        let list = try await #require(throws: AWSError.self) {
            _ = try await transfer.listFileTransferResults(connectorId: emulator.sftpConnectorId, transferId: "t-0123456789abcdef0")
        }
        let listing = try await #require(throws: AWSError.self) {
            _ = try await transfer.startDirectoryListing(connectorId: emulator.sftpConnectorId, remoteDirectoryPath: "/",
                                                         outputDirectoryPath: "/\(emulator.inboundBucket)/listings")
        }
        #expect([put, list, listing].allSatisfy { $0.outcome == .unknown && $0.isRetryable })
        #expect(observer.records.suffix(3).map(\.attempts) == [3, 3, 3])
        let operations = try emulator.emulator.requestLog().compactMap(\.operation)
        // At least the three attempts; libcurl may add its own resend on a reused connection here.
        #expect(operations.filter { $0 == "PutObject" }.count >= 3)
        #expect(operations.filter { $0 == "ListFileTransferResults" }.count >= 3)
        #expect(operations.filter { $0 == "StartDirectoryListing" }.count >= 3)
    }

    @Test func outcomeFollowsWhereTheFailureHappened() {
        #expect(AWSError(kind: .service, code: "AccessDeniedException", message: "", httpStatus: 400).outcome == .notStarted)
        #expect(AWSError(kind: .service, code: "ThrottlingException", message: "", httpStatus: 400).outcome == .notStarted)
        #expect(AWSError(kind: .service, code: "InternalServiceError", message: "", httpStatus: 500).outcome == .unknown)
        #expect(AWSError(kind: .service, code: "HTTP504", message: "", httpStatus: 504).outcome == .unknown)
        #expect(AWSError(kind: .invalidResponse, code: "InvalidResponse", message: "").outcome == .unknown)
        #expect(AWSError(kind: .timeout, code: "Timeout", message: "").outcome == .unknown)
        #expect(AWSError(kind: .network, code: "NetworkError", message: "").outcome == .unknown, "unproven is in doubt")
        #expect(AWSError(kind: .credentials, code: "NoCredentials", message: "").outcome == .notStarted)
        #expect(AWSError(kind: .configuration, code: "InvalidEndpoint", message: "").outcome == .notStarted)
        #expect(AWSError(kind: .network, code: "ConnectFailed", message: "", outcome: .notStarted).outcome == .notStarted)
    }
}
