import Foundation
import Testing
import FerryTestSupport

/// What users trust ferry for: nothing lost, nothing silently sent twice, whatever happens.
@Suite(.serialized) struct OutboundResilienceTests {
    /// Reads `possible_duplicates` from `ferry status --json`, as an operator would.
    func reportedPossibleDuplicates(_ scenario: OutboundScenario) throws -> Int {
        let result = try FerryBinary.run(["status", "--json", "--config", scenario.configPath])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                                "status --json printed: \(result.stdout) \(result.stderr)")
        return (json["possible_duplicates"] as? Int) ?? -1
    }

    @Test func killedTwelveTimesWhileSending500FilesLosesNothing() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "500ms")
        try scenario.start()
        var generator = SystemRandomNumberGenerator()
        var written: [String: Data] = [:]
        for round in 0..<12 {
            // Drop files, then kill ferry at a random moment while it works on them.
            for (name, data) in try scenario.drop(40, prefix: "r\(round)") { written[name] = data }
            try await Task.sleep(for: .seconds(Double.random(in: 0.2...2.5, using: &generator)))
            scenario.daemon?.crash()
            try scenario.start()
        }
        for (name, data) in try scenario.drop(20, prefix: "last") { written[name] = data }
        #expect(written.count == 500)
        let arrived = await eventually(timeout: 300, interval: 0.5) { scenario.partnerFiles().count >= written.count }
        #expect(arrived, "\(scenario.partnerFiles().count) of 500 arrived; log tail:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let partner = scenario.partnerFiles()
        let lost = written.filter { partner[$0.key] != $0.value }.map(\.key).sorted()
        #expect(lost.isEmpty, "lost or damaged: \(lost.prefix(20))")
        // Wait for every after_send to finish so the counts are final.
        #expect(await eventually(timeout: 60, interval: 0.5) {
            ((try? FileManager.default.contentsOfDirectory(atPath: scenario.outbox)) ?? []).filter { $0 != ".ferry" }.isEmpty
        })
        let counts = try scenario.sendCounts()
        let duplicates = counts.values.reduce(0) { $0 + max($1 - 1, 0) }
        let reported = try reportedPossibleDuplicates(scenario)
        print("crash test: \(scenario.starts) starts, 500 files, \(duplicates) sent twice, \(reported) reported as possible duplicates")
        #expect(duplicates <= reported, "every duplicate must come from a journaled submitting batch, reported as possible")
        #expect(await scenario.daemon?.stop() == 0)
    }

    @Test func thirtyPercentFaultsAndLatencyStillDeliverEveryFileOnce() async throws {
        let scenario = try OutboundScenario(faultRate: 0.3, faultKinds: ["throttle", "unavailable", "internal", "slowdown", "drop"],
                                            latencyMs: 200)
        try scenario.start()
        let written = try scenario.drop(500, prefix: "fault")
        let arrived = await eventually(timeout: 600, interval: 0.5) { scenario.partnerFiles().count >= written.count }
        #expect(arrived, "\(scenario.partnerFiles().count) of 500 arrived; log tail:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
        let partner = scenario.partnerFiles()
        #expect(written.allSatisfy { partner[$0.key] == $0.value })
        let counts = try scenario.sendCounts()
        #expect(counts.count == 500)
        #expect(counts.values.allSatisfy { $0 == 1 }, "sent twice: \(counts.filter { $0.value > 1 }.keys.sorted().prefix(10))")
        let faults = try scenario.emulator.requestLog().filter { $0.fault != nil }.count
        print("fault test: \(faults) injected faults, 500 files each sent once")
        #expect(faults > 100, "the fault injection must really have happened")
    }
}
