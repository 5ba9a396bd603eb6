import Foundation
import FerryTestSupport
import Testing

/// Issue 15, must-show 5: a poll's files are placed into download_to as each transfer completes, not
/// all together after the poll's last transfer. The connector moves one file at a time, so with a slow
/// partner a poll of many files is a queue of transfers: the user should have the first files while
/// the rest are still on their way.
struct InboundStreamingTests {
    @Test func theFirstFileIsPlacedBeforeThePollsLastTransferCompletes() async throws {
        // 200 ms per file, one connection (AWS's default): 40 files in 4 transfers take about 8 s.
        let emulator = try Emulator.start(transferDelayMs: 200)
        let root = try TempDirectory(prefix: "ferry-e2e-stream")
        let inbox = root.path + "/inbox"
        let configPath = root.path + "/rules.yaml"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        let remote = emulator.partnerRoot + "/out/stream"
        try FileManager.default.createDirectory(atPath: remote, withIntermediateDirectories: true)
        let names = (0..<40).map { String(format: "f%02d.csv", $0) }
        for name in names { try Data("content of \(name)\n".utf8).write(to: URL(fileURLWithPath: remote + "/" + name)) }
        try (emulator.rulesHeader(stateDir: root.path + "/state", connectorLines: ["requests_per_second: 20"]) + """
            inbound:
              - name: stream
                connector: partner
                remote_directory_path: /out/stream
                schedule: "0 3 1 1 *"
                min_age: 0s
                local_directory_path: s3://\(emulator.inboundBucket)/stream/
                download_to: \(inbox)

            """).write(toFile: configPath, atomically: true, encoding: .utf8)

        let result = try FerryBinary.run(["poll", "stream", "--config", configPath], environment: emulator.environment)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("requested 40, retrieved 40, downloaded 40, finished 40"), "\(result.stdout)")
        let starts = try emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.transferId != nil }
        #expect(starts.count == 4, "40 files in transfers of at most 10")

        // When each file reached S3, by the emulator's own record of every retrieval it carried out: the
        // last one is the moment the poll's last transfer completed.
        let retrievals = ChaosInboundFS.partnerOps(emulator).filter { $0.op == "retrieve" }
        #expect(retrievals.count == 40, "each file retrieved once")
        let lastTransferCompleted = try #require(retrievals.map(\.ts).max())

        // When each file was placed: its inode's last status change is the link/rename into its name
        // (nothing touches it after that), so it is no earlier than the placement itself.
        var placedAt: [String: Double] = [:]
        for name in names {
            var info = stat()
            try #require(lstat(inbox + "/" + name, &info) == 0, "\(name) was not placed")
            placedAt[name] = Double(info.st_ctim.tv_sec) + Double(info.st_ctim.tv_nsec) / 1e9
            #expect(FileManager.default.contents(atPath: inbox + "/" + name) == Data("content of \(name)\n".utf8))
        }
        let firstPlaced = try #require(placedAt.values.min())
        print("inbound streaming: first file placed \(String(format: "%.2f", lastTransferCompleted - firstPlaced)) s before the poll's last transfer completed")
        #expect(firstPlaced < lastTransferCompleted,
                "the first file was placed \(String(format: "%.2f", firstPlaced - lastTransferCompleted)) s after the poll's last transfer completed: placement waited for the whole poll")
        // Transfers complete in order, so the first transfer's files are all placed before the last completes.
        let firstTransferPlaced = names.prefix(10).compactMap { placedAt[$0] }
        #expect(firstTransferPlaced.allSatisfy { $0 < lastTransferCompleted }, "the first transfer's files wait for nothing after it")
    }
}
