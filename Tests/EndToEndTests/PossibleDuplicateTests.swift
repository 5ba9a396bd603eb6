import FerryAWS
import FerryStore
import Foundation
import Logging
import Testing
import FerryTestSupport

/// A crash between StartFileTransfer and the journal commit of its TransferId leaves the batch
/// `submitting`; the next start resubmits it, warns naming the files, and counts a possible duplicate.
struct PossibleDuplicateTests {
    @Test func batchLeftSubmittingIsResubmittedAndReported() async throws {
        let scenario = try OutboundScenario()
        let name = "crashed-mid-submit.edi"
        let path = scenario.outbox + "/" + name
        try Data("sent once, maybe twice\n".utf8).write(to: URL(fileURLWithPath: path))
        var info = stat()
        #expect(lstat(path, &info) == 0)

        // The journal exactly as a crash would leave it: staged in S3, batch journaled `submitting`.
        let journal = try Journal(directory: scenario.stateDir, logger: Logger(label: "test"))
        let file = try #require(try journal.recordDetected([NewOutboundFile(
            rule: "invoices", path: path, relativePath: name, device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
            size: Int64(info.st_size), mtimeNanoseconds: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
            remoteDirectory: scenario.remoteDirectory)]).first)
        let key = "outbound/invoices/test/\(file.id)/\(name)"
        let client = try AWSClient(configuration: AWSClientConfiguration(region: scenario.emulator.region, endpointURL: scenario.emulator.endpoint,
                                                                         environment: scenario.emulator.environment),
                                   logger: Logger(label: "test"))
        _ = try await S3Client(client: client).putObject(bucket: scenario.emulator.stagingBucket, key: key, fileAt: path)
        client.shutdown()
        try journal.markStaged(file.id, bucket: scenario.emulator.stagingBucket, key: key, checksum: "")
        _ = try journal.createBatch(rule: "invoices", connector: "partner", connectorID: scenario.emulator.sftpConnectorId,
                                    remoteDirectory: scenario.remoteDirectory, fileIDs: [file.id])

        try scenario.start()
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()[name] != nil }, "log:\n\(scenario.daemon?.log ?? "")")
        #expect(await eventually(timeout: 30) { !FileManager.default.fileExists(atPath: path) }, "archived after the resubmitted transfer")
        let log = scenario.daemon?.log ?? ""
        #expect(log.contains("the partner may receive these files twice"))
        #expect(log.contains(path), "the warning names the file")
        let status = try FerryBinary.run(["status", "--json", "--config", scenario.configPath])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect(json["possible_duplicates"] as? Int == 1)
        #expect(try scenario.sendCounts()[name] == 1)
    }
}
