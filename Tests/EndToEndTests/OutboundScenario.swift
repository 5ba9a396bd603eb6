import FerryAWS
import FerryStore
import Foundation
import Logging
import FerryTestSupport
import FerrySystem

/// One emulator + one ferry daemon + one outbox folder, as a user would set them up.
final class OutboundScenario: @unchecked Sendable {
    let emulator: Emulator
    let root: TempDirectory
    let outbox: String
    let stateDir: String
    let configPath: String
    let remoteDirectory = "/inbound"
    var daemon: FerryDaemon?
    var starts = 0

    /// `ruleExtras` are YAML lines added to the rule (indented by the caller's convention: 4 spaces).
    init(faultRate: Double = 0, faultKinds: [String] = [], latencyMs: Int = 0, afterSend: String = "archive",
         retries: Int = 5, ruleExtras: [String] = [], batchMaxWait: String = "2s", topExtras: [String] = [],
         connectorExtras: [String] = [], transferDelayMs: Int? = nil, ruleName: String = "invoices", settle: String = "300ms") throws {
        emulator = try Emulator.start(faultRate: faultRate, faultKinds: faultKinds, latencyMs: latencyMs, transferDelayMs: transferDelayMs)
        root = try TempDirectory(prefix: "ferry-e2e")
        outbox = root.path + "/outbox"
        stateDir = root.path + "/state"
        configPath = root.path + "/rules.yaml"
        try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: emulator.partnerRoot + remoteDirectory, withIntermediateDirectories: true)
        let rules = """
            version: 1
            state_dir: \(stateDir)
            \(topExtras.joined(separator: "\n"))
            aws:
              region: \(emulator.region)
              endpoint_url: \(emulator.endpoint)
            connectors:
              partner:
                type: sftp
                connector_id: \(emulator.sftpConnectorId)
                staging: s3://\(emulator.stagingBucket)/outbound/
                requests_per_second: 50
            \(connectorExtras.map { "    " + $0 }.joined(separator: "\n"))
            outbound:
              - name: \(ruleName)
                watch: \(outbox)
                connector: partner
                remote_directory_path: \(remoteDirectory)
                settle: \(settle)
                batch: { max_files: 10, max_wait: \(batchMaxWait) }
                after_send: \(afterSend)
                retries: \(retries)
            \(ruleExtras.map { "    " + $0 }.joined(separator: "\n"))

            """
        try rules.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Journals `name` (already in the outbox) as a crash would have left it, staged under `key`; the
    /// object is uploaded only when `upload` is true.
    func journalStaged(_ name: String, upload: Bool) async throws -> (Journal, OutboundFile, String) {
        let path = outbox + "/" + name
        var info = stat()
        guard lstat(path, &info) == 0 else { throw ScenarioError(description: "\(path) is missing") }
        let journal = try Journal(directory: stateDir, logger: Logger(label: "test"))
        guard let file = try journal.recordDetected([NewOutboundFile(
            rule: "invoices", path: path, relativePath: name, version: FileVersion(info),
            remoteDirectory: remoteDirectory)]).first else {
            throw ScenarioError(description: "\(path) was already journaled")
        }
        let key = "outbound/invoices/test/\(file.id)/\(name)"
        if upload {
            let client = try AWSClient(configuration: AWSClientConfiguration(region: emulator.region, endpointURL: emulator.endpoint,
                                                                             environment: emulator.environment),
                                       logger: Logger(label: "test"))
            _ = try await S3Client(client: client).putObject(bucket: emulator.stagingBucket, key: key, fileAt: path)
            client.shutdown()
        }
        try journal.markStaged(file.id, bucket: emulator.stagingBucket, key: key, checksum: "")
        return (journal, file, key)
    }

    /// Rewrites one line of the rules file (e.g. a renamed rule), for the next start or a reload.
    func editRules(replacing old: String, with new: String) throws {
        let text = try String(contentsOfFile: configPath, encoding: .utf8)
        try text.replacingOccurrences(of: old, with: new).write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func start() throws {
        starts += 1
        daemon = try FerryDaemon(config: configPath, environment: emulator.environment, logPath: root.path + "/ferry.log",
                                 extraArguments: ["--log-level", "debug"])
    }

    /// Writes `count` files named `prefix-N.edi` with distinct contents; returns name → contents.
    @discardableResult
    func drop(_ count: Int, prefix: String = "file", size: Int = 64) throws -> [String: Data] {
        var written: [String: Data] = [:]
        for index in 0..<count {
            let name = "\(prefix)-\(index).edi"
            var data = Data("\(name)\n".utf8)
            while data.count < size { data.append(contentsOf: Array("line \(data.count) of \(name)\n".utf8)) }
            try data.write(to: URL(fileURLWithPath: outbox + "/" + name))
            written[name] = data
        }
        return written
    }

    /// Names and bytes of the files on the partner's server in the remote directory.
    func partnerFiles() -> [String: Data] {
        let folder = emulator.partnerRoot + remoteDirectory
        var result: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
            if let data = FileManager.default.contents(atPath: folder + "/" + name) { result[name] = data }
        }
        return result
    }

    /// Every path sent with StartFileTransfer, in order, as the emulator logged them (successful calls only).
    func sentPaths() throws -> [String] {
        try emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.status == 200 }.flatMap { $0.paths ?? [] }
    }

    func startFileTransferCalls() throws -> Int {
        try emulator.requestLog().filter { $0.operation == "StartFileTransfer" && $0.status == 200 }.count
    }

    /// How many times each original file name was sent (by the last path component of its staging key).
    func sendCounts() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for path in try sentPaths() {
            counts[String(path.split(separator: "/").last ?? ""), default: 0] += 1
        }
        return counts
    }

    /// Keys left in the staging bucket under ferry's prefix.
    func stagedKeys() async throws -> [String] {
        let client = try AWSClient(configuration: AWSClientConfiguration(region: emulator.region, endpointURL: emulator.endpoint,
                                                                         environment: emulator.environment),
                                   logger: Logger(label: "test"))
        defer { client.shutdown() }
        return try await S3Client(client: client).listObjectsV2(bucket: emulator.stagingBucket, prefix: "outbound/").map(\.key)
    }

    /// `ferry status --json` as an operator runs it: exit status and the parsed document.
    func status() throws -> (exit: Int32, json: [String: Any]) {
        let result = try FerryBinary.run(["status", "--json", "--config", configPath])
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result.status, object ?? ["unparsed": result.stdout + result.stderr])
    }

    /// The `outbound` entry of `ferry status --json` for one rule.
    func outboundStatus(_ rule: String = "invoices") throws -> [String: Any] {
        let rules = try status().json["outbound"] as? [[String: Any]] ?? []
        return rules.first { $0["rule"] as? String == rule } ?? [:]
    }

    deinit {
        if let daemon { daemon.stop(timeout: 5) }
        emulator.stop()
    }
}

/// A scenario's set-up went wrong (not what a test checks).
struct ScenarioError: Error, CustomStringConvertible {
    var description: String
}
