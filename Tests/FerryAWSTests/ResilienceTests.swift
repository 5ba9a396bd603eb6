import Foundation
import Logging
import Testing
@testable import FerryAWS

@Suite(.serialized) struct Resilience {
    @Test func multipartRoundTripOf300MiB() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let logs = CapturedLogs()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: logs.logger())
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let dir = try TempDirectoryPath()
        let size = 300 << 20
        try writeFile(dir.path + "/big", size: size, seed: 300)
        let put = try await s3.putObject(bucket: emulator.stagingBucket, key: "big/300 MiB.bin", fileAt: dir.path + "/big")
        #expect(put.parts == 19 && put.size == Int64(size))
        // A multipart ETag is "<md5 of the parts' md5s>-<part count>".
        #expect(put.eTag.hasSuffix("-19\""))
        // Its CRC-32C in S3's composite form, as history shows it.
        #expect(put.checksumCRC32C.hasSuffix("-19") && put.checksumCRC32C.count == 11, "\(put.checksumCRC32C)")
        let info = try await s3.getObject(bucket: emulator.stagingBucket, key: "big/300 MiB.bin", toFileAt: dir.path + "/back")
        #expect(info.size == Int64(size) && info.eTag == put.eTag)
        #expect(try sha256OfFile(dir.path + "/back") == sha256OfFile(dir.path + "/big"))
        let operations = try emulator.requestLog().compactMap(\.operation)
        #expect(operations.filter { $0 == "UploadPart" }.count == 19)
        #expect(operations.contains("CompleteMultipartUpload"))
        try assertNoSecrets(logs.all, emulator.secretAccessKey)
    }

    @Test func faultsAreRetriedWithinAttemptsAndQuota() async throws {
        let emulator = try EmulatorProcess(faultRate: 0.3, faultKinds: ["throttle", "unavailable", "internal", "slowdown", "drop"], seed: 4)
        defer { emulator.stop() }
        let logs = CapturedLogs()
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: logs.logger(), observer: observer)
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let transfer = TransferClient(client: client)
        let dir = try TempDirectoryPath()
        try writeFile(dir.path + "/f", size: 4096, seed: 9)
        var succeeded = 0
        var failed = 0
        for i in 0..<150 {
            do {
                if i % 3 == 2 {
                    _ = try await transfer.describeConnector(connectorId: emulator.sftpConnectorId)
                } else {
                    _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "faults/\(i)", fileAt: dir.path + "/f")
                }
                succeeded += 1
            } catch let error as AWSError {
                // Only a retryable error that outlasted its attempts may surface, typed.
                #expect(error.isRetryable, "unexpected non-retryable failure: \(error)")
                failed += 1
            }
        }
        let records = observer.records
        #expect(records.count == 150)
        #expect(records.allSatisfy { $0.attempts <= 3 }, "a call went past max_attempts")
        let retries = records.reduce(0) { $0 + $1.attempts - 1 }
        let stats = client.retryStatistics
        #expect(stats.retriesGranted == retries, "every retry was paid for by the quota")
        #expect(stats.retriesGranted > 0 && succeeded > failed)
        // Each failed attempt is in the emulator's log as a fault; the extra attempts are our retries.
        let log = try emulator.requestLog()
        let faults = log.filter { $0.fault != nil }.count
        #expect(faults >= retries)
        try assertNoSecrets(logs.all, emulator.secretAccessKey)
    }

    @Test func quotaStopsRetryStormDuringOutage() async throws {
        let emulator = try EmulatorProcess(faultRate: 1.0, faultKinds: ["unavailable"])
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"), observer: observer)
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        // 500 tokens pay for 100 retries at 5 each (the first 50 calls' two retries); after that
        // every call fails at its first attempt, its retry refused.
        for i in 0..<80 {
            await #expect(throws: AWSError.self) { _ = try await s3.headObject(bucket: emulator.stagingBucket, key: "k\(i)") }
        }
        let stats = client.retryStatistics
        #expect(stats.retriesGranted == 100)
        #expect(stats.retriesRefusedByQuota == 30)
        #expect(stats.tokensAvailable == 0)
        #expect(observer.records.suffix(20).allSatisfy { $0.attempts == 1 && $0.httpStatus == 503 })
    }

    @Test func clockSkewIsCorrectedFromServerDate() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"), observer: observer)
        defer { client.shutdown() }
        client.skewForTesting(seconds: -3600)  // our clock an hour behind
        let s3 = S3Client(client: client)
        #expect(try await s3.headObject(bucket: emulator.stagingBucket, key: "nothing") == nil)
        #expect(observer.records.first?.attempts == 2)  // one corrected retry, not paid from the quota
        #expect(client.retryStatistics.retriesGranted == 0)
        #expect(try await s3.headObject(bucket: emulator.stagingBucket, key: "nothing") == nil)
        let statuses = try emulator.requestLog().compactMap(\.status)
        #expect(statuses == [403, 404, 404])
    }

    @Test func cancellingACallAbandonsItsRequest() async throws {
        let emulator = try EmulatorProcess(latencyMs: 5_000)
        defer { emulator.stop() }
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"))
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let call = Task { try await s3.headObject(bucket: emulator.stagingBucket, key: "slow") }
        try await Task.sleep(for: .milliseconds(300))
        call.cancel()
        // Without cancellation the HEAD would answer (nil, after the 5 s latency) instead of throwing.
        await #expect(throws: CancellationError.self) { _ = try await call.value }
    }
}
