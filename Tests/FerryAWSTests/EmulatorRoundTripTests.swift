import Foundation
import Logging
import Testing
@testable import FerryAWS

@Suite(.serialized) struct EmulatorRoundTrips {
    @Test func s3OperationsWithHostileKeys() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let logs = CapturedLogs()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: logs.logger())
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let dir = try TempDirectoryPath()
        let bucket = emulator.stagingBucket
        let keys = ["plain.txt", "with space/and+plus.edi", "percent%25and%/q?x#frag", "ünï/日本/😀.csv", "semi;colon,comma=eq@at$!'()*:[]",
                    "a/b/../c/./d", "trailing/"]
        for (index, key) in keys.enumerated() {
            let source = dir.path + "/src\(index)"
            try writeFile(source, size: 1000 + index * 517, seed: UInt64(index))
            let put = try await s3.putObject(bucket: bucket, key: key, fileAt: source)
            #expect(put.size == Int64(1000 + index * 517))
            let head = try #require(try await s3.headObject(bucket: bucket, key: key), "HeadObject after PutObject of \(key)")
            #expect(head.size == put.size)
            let target = dir.path + "/dst\(index)"
            let got = try await s3.getObject(bucket: bucket, key: key, toFileAt: target)
            #expect(got.size == put.size)
            #expect(try sha256OfFile(target) == sha256OfFile(source), "bytes of \(key) round-trip")
        }
        let listed = try await s3.listObjectsV2(bucket: bucket, prefix: "")
        #expect(Set(listed.map(\.key)) == Set(keys))
        #expect(try await s3.listObjectsV2(bucket: bucket, prefix: "ünï/").map(\.key) == ["ünï/日本/😀.csv"])

        // Conditional PUT: a second create-only upload of an existing key is refused.
        let source = dir.path + "/src0"
        await #expect(throws: AWSError.self) { try await s3.putObject(bucket: bucket, key: keys[0], fileAt: source, ifNoneMatch: true) }
        do {
            _ = try await s3.putObject(bucket: bucket, key: keys[0], fileAt: source, ifNoneMatch: true)
        } catch let error as AWSError {
            #expect(error.code == "PreconditionFailed" && error.httpStatus == 412)
        }
        let fresh = try await s3.putObject(bucket: bucket, key: "new-only-once", fileAt: source, ifNoneMatch: true)
        #expect(!fresh.eTag.isEmpty)

        for key in keys { try await s3.deleteObject(bucket: bucket, key: key) }
        #expect(try await s3.headObject(bucket: bucket, key: keys[1]) == nil)
        #expect(try await s3.listObjectsV2(bucket: bucket, prefix: "").map(\.key) == ["new-only-once"])

        do {
            _ = try await s3.getObject(bucket: bucket, key: "missing", toFileAt: dir.path + "/missing")
            Issue.record("GetObject of a missing key succeeded")
        } catch let error as AWSError {
            #expect(error.code == "NoSuchKey" && error.httpStatus == 404 && error.kind == .service)
        }
        try assertNoSecrets(logs.all, emulator.secretAccessKey)
    }

    /// Uploads carry x-amz-checksum-crc32c, which the emulator (like S3) checks against the body: a
    /// PutObject succeeding proves ours was right, and a wrong one is refused with a typed error at once.
    @Test func uploadsCarryAChecksumTheServiceChecks() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let observer = RecordingObserver()
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: CapturedLogs().logger(), observer: observer)
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let dir = try TempDirectoryPath()
        for (index, size) in [0, 1, 4096, 70_000].enumerated() {  // in memory, and streamed from the file
            try writeFile(dir.path + "/f\(index)", size: size, seed: UInt64(index + 7))
            _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "checked/f\(index)", fileAt: dir.path + "/f\(index)")
        }
        let body = Array("invoice 42\n".utf8)
        let wrong = Crypto.crc32cBase64(Crypto.crc32c(Array("invoice 43\n".utf8)))
        do {
            _ = try await client.send(AWSOperationRequest(
                service: "s3", operation: "PutObject", method: "PUT", bucket: emulator.stagingBucket, path: S3Client.keyPath("checked/bad"),
                headers: [("x-amz-checksum-crc32c", wrong)], body: .bytes(body), payloadHash: Crypto.hex(Crypto.sha256(body))))
            Issue.record("a PutObject with the wrong CRC-32C was accepted")
        } catch let error as AWSError {
            #expect(error.code == "BadDigest" && error.httpStatus == 400 && !error.isRetryable)
        }
        #expect(observer.records.last?.attempts == 1, "a bad checksum is not retried")
        #expect(try await s3.headObject(bucket: emulator.stagingBucket, key: "checked/bad") == nil)
    }

    @Test func listingFollowsEveryPage() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"))
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let dir = try TempDirectoryPath()
        try writeFile(dir.path + "/f", size: 10, seed: 1)
        // ListObjectsV2 returns at most 1,000 keys per page.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<1_050 {
                group.addTask { _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "many/\(i)", fileAt: dir.path + "/f") }
            }
            try await group.waitForAll()
        }
        #expect(try await s3.listObjectsV2(bucket: emulator.stagingBucket, prefix: "many/").count == 1_050)
    }

    @Test func transferOperationsRoundTrip() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: Logger(label: "test"))
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let transfer = TransferClient(client: client)
        let connector = emulator.sftpConnectorId
        let dir = try TempDirectoryPath()

        let description = try await transfer.describeConnector(connectorId: connector)
        #expect(description.connectorId == connector && description.type == "sftp")
        #expect(try await transfer.testConnection(connectorId: connector).succeeded)

        // Send: S3 → partner.
        try FileManager.default.createDirectory(atPath: emulator.partnerRoot + "/inbound", withIntermediateDirectories: true)
        try writeFile(dir.path + "/invoice", size: 4096, seed: 7)
        _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "out/invoice 1.edi", fileAt: dir.path + "/invoice")
        let sendId = try await transfer.startFileTransfer(connectorId: connector, sendFilePaths: ["/\(emulator.stagingBucket)/out/invoice 1.edi"],
                                                          remoteDirectoryPath: "/inbound")
        let sent = try await waitForResults(transfer, connector, sendId)
        #expect(sent.map(\.statusCode) == [.completed])
        #expect(FileManager.default.contentsEqual(atPath: emulator.partnerRoot + "/inbound/invoice 1.edi", andPath: dir.path + "/invoice"))

        // A file that does not exist fails with a failure code.
        let badId = try await transfer.startFileTransfer(connectorId: connector, sendFilePaths: ["/\(emulator.stagingBucket)/out/nope"],
                                                         remoteDirectoryPath: "/inbound")
        let bad = try await waitForResults(transfer, connector, badId)
        #expect(bad.first?.statusCode == .failed && bad.first?.failureCode != nil)

        // Listing → S3 object.
        let listing = try await transfer.startDirectoryListing(connectorId: connector, remoteDirectoryPath: "/inbound",
                                                               outputDirectoryPath: "/\(emulator.inboundBucket)/listings", maxItems: nil)
        #expect(listing.outputFileName == "\(connector)-\(listing.listingId).json")
        var listed: ObjectInfo?
        for _ in 0..<100 where listed == nil {
            listed = try await s3.headObject(bucket: emulator.inboundBucket, key: "listings/" + listing.outputFileName)
            if listed == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let listingFile = dir.path + "/listing.json"
        _ = try await s3.getObject(bucket: emulator.inboundBucket, key: "listings/" + listing.outputFileName, toFileAt: listingFile)
        #expect(try String(contentsOfFile: listingFile, encoding: .utf8).contains("invoice 1.edi"))

        // Retrieve: partner → S3.
        let retrieveId = try await transfer.startFileTransfer(connectorId: connector, retrieveFilePaths: ["/inbound/invoice 1.edi"],
                                                              localDirectoryPath: "/\(emulator.inboundBucket)/in")
        #expect(try await waitForResults(transfer, connector, retrieveId).map(\.statusCode) == [.completed])
        _ = try await s3.getObject(bucket: emulator.inboundBucket, key: "in/invoice 1.edi", toFileAt: dir.path + "/back")
        #expect(FileManager.default.contentsEqual(atPath: dir.path + "/back", andPath: dir.path + "/invoice"))

        // Move, then delete, on the partner side.
        _ = try await transfer.startRemoteMove(connectorId: connector, sourcePath: "/inbound/invoice 1.edi", targetPath: "/inbound/moved.edi")
        try await eventually { FileManager.default.fileExists(atPath: emulator.partnerRoot + "/inbound/moved.edi") }
        _ = try await transfer.startRemoteDelete(connectorId: connector, deletePath: "/inbound/moved.edi")
        try await eventually { !FileManager.default.fileExists(atPath: emulator.partnerRoot + "/inbound/moved.edi") }

        do {
            _ = try await transfer.describeConnector(connectorId: "c-00000000000000000")
            Issue.record("DescribeConnector of an unknown connector succeeded")
        } catch let error as AWSError {
            #expect(error.code == "ResourceNotFoundException" && error.httpStatus == 400 && !error.isRetryable)
        }
    }
}

func waitForResults(_ transfer: TransferClient, _ connector: String, _ id: String) async throws -> [FileTransferResult] {
    for _ in 0..<200 {
        let results = try await transfer.listFileTransferResults(connectorId: connector, transferId: id)
        if !results.isEmpty && results.allSatisfy({ $0.statusCode == .completed || $0.statusCode == .failed }) { return results }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("transfer \(id) did not finish within 20 s")
}

func eventually(_ condition: () -> Bool) async throws {
    for _ in 0..<100 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("condition not met within 10 s")
}

func assertNoSecrets(_ lines: [String], _ secrets: String...) throws {
    for line in lines {
        for secret in secrets where !secret.isEmpty {
            #expect(!line.contains(secret), "a log line contains a secret: \(line.prefix(80))…")
        }
        #expect(!line.contains("Signature="), "a log line contains a signature")
    }
}

/// A temp folder (FerryTestSupport's TempDirectory is not Sendable-annotated for async tests here).
final class TempDirectoryPath: @unchecked Sendable {
    let path: String
    init() throws {
        var template = Array("/tmp/ferry-aws.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: made)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
