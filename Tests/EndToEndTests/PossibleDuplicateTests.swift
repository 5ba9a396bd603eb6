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

        // The journal exactly as a crash would leave it: staged in S3, batch journaled `submitting`.
        let (journal, file, _) = try await scenario.journalStaged(name, upload: true)
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
