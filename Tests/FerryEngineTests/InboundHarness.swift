import FerryAWS
import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// Counts what the poller reports, so tests can check metrics.
final class CountingMetrics: InboundMetrics {
    private let counts = Mutex<[String: Double]>([:])

    func increment(_ name: String, _ labels: [String: String], by amount: Double, help: String) {
        counts.withLock { $0[name, default: 0] += amount }
    }

    func value(_ name: String) -> Double { counts.withLock { $0[name] ?? 0 } }
}

/// The emulator with its OpenSSH partner, a state folder and an inbox, and rules built from YAML the way
/// the daemon builds them.
final class InboundHarness: @unchecked Sendable {
    let emulator: Emulator
    let state: TempDirectory
    let inbox: TempDirectory
    let client: AWSClient
    let s3: S3Client
    let transfer: TransferClient
    let metrics = CountingMetrics()
    /// How often the poller waited for the connector's rate limiter.
    let paced = SharedCounter()
    let logger: Logger

    init() throws {
        emulator = try Emulator.start()
        state = try TempDirectory(prefix: "ferry-inbound-state")
        inbox = try TempDirectory(prefix: "ferry-inbound-inbox")
        var configuration = AWSClientConfiguration(region: emulator.region, endpointURL: emulator.endpoint, environment: emulator.environment)
        configuration.retryBaseDelay = .milliseconds(50)
        var logger = Logger(label: "inbound-test")
        logger.logLevel = .notice
        self.logger = logger
        client = try AWSClient(configuration: configuration, logger: logger)
        s3 = S3Client(client: client)
        transfer = TransferClient(client: client)
    }

    deinit {
        client.shutdown()
        emulator.stop()
    }

    /// The partner's folder `remote` (an absolute SFTP path), created if needed.
    @discardableResult
    func partnerFolder(_ remote: String) throws -> String {
        let path = emulator.partnerRoot + remote
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes a file on the partner's server.
    func putOnPartner(_ remote: String, _ data: Data) throws {
        try data.write(to: URL(fileURLWithPath: emulator.partnerRoot + remote))
    }

    func partnerHas(_ remote: String) -> Bool {
        FileManager.default.fileExists(atPath: emulator.partnerRoot + remote)
    }

    /// One inbound rule, parsed and validated by FerryConfig from this YAML (indented under `- `).
    func rule(name: String, remote: String, schedule: String = "every 5m", extra: String = "", downloadTo: String? = "") throws -> InboundRule {
        let downloadTo = downloadTo == "" ? inbox.path : downloadTo
        let yaml = """
            version: 1
            state_dir: \(state.path)
            aws:
              region: \(emulator.region)
              endpoint_url: \(emulator.endpoint)
            connectors:
              partner:
                type: sftp
                connector_id: \(emulator.sftpConnectorId)
                requests_per_second: 50
            inbound:
              - name: \(name)
                connector: partner
                remote_directory_path: \(remote)
                schedule: "\(schedule)"
                local_directory_path: s3://\(emulator.inboundBucket)/\(name)/
            \(downloadTo.map { "    download_to: \($0)\n" } ?? "")\(extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """
        let result = RulesLoader.load(yaml: yaml, path: "test.yaml")
        let rules = try #require(result.rules, "rules did not load: \(result.errors.map(\.description))")
        return try #require(rules.inbound.first)
    }

    func poller(_ rules: [InboundRule], journal: Journal, crashHook: (@Sendable (String) throws -> Void)? = nil,
                listingTimeout: Duration = .seconds(60), inFlight: InFlightGate = .unlimited) -> InboundPoller {
        var settings = InboundSettings(stateDirectory: state.path)
        settings.listingTimeout = listingTimeout
        let paced = self.paced
        let connection = InboundConnection(connectorId: emulator.sftpConnectorId, s3: s3, transfer: transfer, pace: {
            paced.increment()
        }, inFlight: inFlight)
        return InboundPoller(rules: rules, connections: ["partner": connection], journal: journal, metrics: metrics, logger: logger,
                             clock: SystemInboundClock(), timeZone: .current, settings: settings, crashHook: crashHook)
    }

    func openJournal() throws -> Journal {
        try Journal(directory: state.path, logger: logger)
    }

    /// The S3 object's bytes, nil if absent.
    func object(_ key: String) async throws -> Data? {
        guard try await s3.headObject(bucket: emulator.inboundBucket, key: key) != nil else { return nil }
        let scratch = state.path + "/object-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        _ = try await s3.getObject(bucket: emulator.inboundBucket, key: key, toFileAt: scratch)
        return try Data(contentsOf: URL(fileURLWithPath: scratch))
    }

    /// The names in download_to, sorted.
    func inboxNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: inbox.path).sorted()
    }

    func inboxFile(_ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: inbox.path + "/" + name))
    }

    /// Operations the emulator answered, by name.
    func operations(_ name: String) throws -> [Emulator.RequestRecord] {
        try emulator.requestLog().filter { $0.operation == name && $0.status == 200 }
    }

    /// Waits for the emulator's asynchronous remote jobs (delete, move), up to 10 s.
    func eventuallyOnPartner(_ condition: () -> Bool) async throws {
        for _ in 0..<200 {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the partner's folder did not reach the expected state within 10 s")
    }
}

func randomData(_ count: Int) -> Data {
    Data((0..<count).map { _ in UInt8.random(in: 0...255) })
}
