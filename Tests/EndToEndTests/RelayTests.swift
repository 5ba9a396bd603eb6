import Foundation
import FerryTestSupport
import Testing

/// Issue #14 item 4, relays between partners: an inbound rule places a partner's file into a folder an
/// outbound rule watches. The placement gives the file its name with link(), which raises IN_CREATE and
/// nothing else; the outbound rule must send it once it settles, not at the next reconciliation scan
/// (10 minutes by default, the value this test keeps).
struct RelayTests {
    @Test func aFilePlacedByAnInboundRuleIsSentOnByTheOutboundRuleWatchingItsFolder() async throws {
        let emulator = try Emulator.start()
        let root = try TempDirectory(prefix: "ferry-e2e-relay")
        let relay = root.path + "/relay"
        let configPath = root.path + "/rules.yaml"
        try FileManager.default.createDirectory(atPath: relay, withIntermediateDirectories: true)
        let source = emulator.partnerRoot + "/out/relay"
        let destination = emulator.partnerRoot + "/in/relayed"
        for folder in [source, destination] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        var files: [String: Data] = [:]
        for index in 0..<3 {
            let name = "order-\(index).edi"
            files[name] = Data("ORDER \(index)\n".utf8 + (0..<(300 + index)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) })
            try files[name]!.write(to: URL(fileURLWithPath: source + "/" + name))
        }
        try (emulator.rulesHeader(stateDir: root.path + "/state", connectorLines: ["requests_per_second: 50"]) + """
            inbound:
              - name: orders-in
                connector: partner
                remote_directory_path: /out/relay
                schedule: every 1s
                min_age: 0s
                local_directory_path: s3://\(emulator.inboundBucket)/orders/
                download_to: \(relay)
                on_conflict: rename
            outbound:
              - name: orders-out
                watch: \(relay)
                connector: partner
                remote_directory_path: /in/relayed
                settle: 500ms
                after_send: archive

            """).write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log")
        func relayed() -> [String: Data] {
            var result: [String: Data] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: destination)) ?? [] {
                result[name] = FileManager.default.contents(atPath: destination + "/" + name)
            }
            return result
        }
        // The deadline is far below the 10-minute reconciliation: only the placement's own event can
        // bring the files there in time.
        let arrived = await eventually(timeout: 120) { relayed().count == files.count }
        #expect(arrived, "relayed \(relayed().keys.sorted()) of \(files.keys.sorted()); log:\n\(daemon.log.suffix(3000))")
        #expect(relayed() == files, "every partner file is relayed byte-identical under its own name")
        let sends = try emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.status == 200 }
            .flatMap { $0.paths ?? [] }.filter { $0.hasPrefix("/\(emulator.stagingBucket)/") }
        #expect(sends.count == files.count, "each relayed file is sent once: \(sends)")
        #expect(await daemon.stop() == 0)
    }
}
