import Foundation
import Testing
import FerryTestSupport

/// A transfer's files finish one by one (the connector sends them in turn), so ferry's tracker sees a
/// transfer partly done, records those files, and asks again about the rest. ListFileTransferResults
/// then still lists the files already recorded: they belong to the transfer and must not be taken for
/// "results for paths ferry did not send" (which makes status DEGRADED for good and alerts).
@Suite(.serialized) struct PartialResultsTests {
    @Test func filesAlreadyRecordedFromAnEarlierLookAreNotUnmatchedResults() async throws {
        // 600 ms per file on one connection: a batch of 5 takes 3 s and is looked at several times.
        let scenario = try OutboundScenario(batchMaxWait: "1s", transferDelayMs: 600)
        try scenario.start()
        let sent = try scenario.drop(5)
        #expect(await eventually(timeout: 60) { scenario.partnerFiles().count == sent.count })
        #expect(await eventually(timeout: 30) {
            let rules = (try? scenario.status().json["outbound"] as? [[String: Any]]) ?? []
            return rules.first?["in_flight"] as? Int == 0
        })
        let status = try scenario.status()
        let problems = status.json["problems"] as? [String] ?? []
        #expect(!problems.contains { $0.contains("did not send") }, "\(problems)")
        #expect(status.exit == 0, "status: \(status.json)")
        let log = (try? String(contentsOfFile: scenario.root.path + "/ferry.log", encoding: .utf8)) ?? ""
        #expect(!log.contains("transfer results match no file"), "the tracker called a finished file's result unmatched")
        // The scenario did what it is about: one transfer, looked at more than once.
        #expect(try scenario.startFileTransferCalls() == 1)
        let looks = try scenario.emulator.requestLog().filter { $0.operation == "ListFileTransferResults" }.count
        #expect(looks >= 2, "the transfer was looked at \(looks) time(s); the test needs a partial look")
    }

    /// The same after a SIGKILL between two looks: the restarted daemon tracks the transfer's open files
    /// and must still know the recorded ones as its own (found by the soak: status stayed DEGRADED).
    @Test func aRestartBetweenTwoLooksKeepsTheRecordedFilesAsTheTransfers() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "1s", transferDelayMs: 1500)
        try scenario.start()
        let sent = try scenario.drop(5)
        let partly = await eventually(timeout: 60, interval: 0.05) {
            let rule = (try? scenario.outboundStatus()) ?? [:]
            return (rule["completed24h"] as? Int ?? 0) >= 1 && (rule["in_flight"] as? Int ?? 0) >= 1
        }
        #expect(partly, "the transfer was never seen partly done")
        scenario.daemon?.crash()
        try scenario.start()
        #expect(await eventually(timeout: 60) { scenario.partnerFiles().count == sent.count })
        #expect(await eventually(timeout: 30) { ((try? scenario.outboundStatus())?["in_flight"] as? Int) == 0 })
        let status = try scenario.status()
        let problems = status.json["problems"] as? [String] ?? []
        #expect(!problems.contains { $0.contains("did not send") }, "\(problems)")
        #expect(status.exit == 0, "status: \(status.json)")
        #expect(try scenario.startFileTransferCalls() == 1, "tracked again after the restart, not resent")
    }
}
