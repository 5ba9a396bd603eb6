import FerryAWS
import FerryConfig
import FerryStore
import FerryWatch
import Foundation
import Logging

/// What `ferry run` starts: the journal, one AWS client per distinct AWS setting, the folder watcher and
/// the pipelines, for one validated rules file.
public final class Daemon: Sendable {
    /// The rules this daemon runs.
    public let rules: Rules
    let journal: Journal
    let watcher: FolderWatcher
    let outbound: OutboundPipeline
    let clients: [AWSClient]
    /// Counters and gauges for the metrics file and tests.
    public let metrics: Metrics
    let logger: Logger

    /// Opens the journal and builds every component; nothing runs until `run()`.
    public init(rules: Rules, logger: Logger, metrics: Metrics = Metrics()) throws {
        self.rules = rules
        self.logger = logger
        self.metrics = metrics
        let journal = try Journal(directory: rules.stateDir, logger: logger)
        self.journal = journal

        var clientsBySettings: [AWSSettings: AWSClient] = [:]
        var contexts: [String: ConnectorContext] = [:]
        for connector in rules.connectors {
            let client: AWSClient
            if let existing = clientsBySettings[connector.aws] {
                client = existing
            } else {
                client = try AWSClient(configuration: Self.configuration(connector.aws), logger: logger, observer: MetricsObserver(metrics: metrics))
                clientsBySettings[connector.aws] = client
            }
            contexts[connector.name] = ConnectorContext(
                connector: connector, s3: S3Client(client: client), transfer: TransferClient(client: client),
                limiter: RateLimiter(perSecond: connector.requestsPerSecond),
                inFlight: AsyncSemaphore(connector.maxInFlight), uploadSlots: AsyncSemaphore(16))
        }
        clients = Array(clientsBySettings.values)

        let watchRules = rules.outbound.map {
            WatchRule(id: $0.name, root: $0.watch, recursive: $0.recursive, include: $0.include, exclude: $0.exclude,
                      settle: $0.settle, readyMarker: $0.readyMarker)
        }
        watcher = FolderWatcher(rules: watchRules, reconcileInterval: rules.reconcileInterval, logger: logger) { rule, path, version in
            (try? journal.isKnown(rule: rule, path: path, device: version.device, inode: version.inode,
                                  size: version.size, mtimeNanoseconds: version.mtimeNanoseconds)) ?? false
        }
        outbound = OutboundPipeline(rules: rules.outbound, connectors: contexts, journal: journal, watcher: watcher,
                                    metrics: metrics, logger: logger)
    }

    static func configuration(_ settings: AWSSettings) -> AWSClientConfiguration {
        var configuration = AWSClientConfiguration(region: settings.region)
        configuration.endpointURL = settings.endpointURL
        configuration.profile = settings.profile
        configuration.caBundle = settings.caBundle
        configuration.maxAttempts = settings.maxAttempts
        return configuration
    }

    /// Runs until the task is cancelled (SIGTERM/SIGINT); the journal keeps everything resumable.
    public func run() async throws {
        logger.info("ferry started", metadata: ["rules.outbound": "\(rules.outbound.count)", "rules.inbound": "\(rules.inbound.count)",
                                                "journal.path": "\(journal.path)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.watcher.run() }
            group.addTask { try await self.outbound.run() }
            try await group.next()
            group.cancelAll()
        }
        for client in clients { client.shutdown() }
        logger.info("ferry stopped")
    }
}

/// Counts AWS requests, errors and retries per operation for the metrics file.
struct MetricsObserver: AWSObserver {
    let metrics: Metrics

    func requestFinished(_ record: AWSRequestRecord) {
        metrics.increment("ferry_aws_requests_total", ["operation": record.operation], help: "AWS API calls, after retries.")
        if let code = record.errorCode {
            metrics.increment("ferry_aws_errors_total", ["operation": record.operation, "code": code], help: "AWS API calls that failed, by error code.")
        }
        if record.attempts > 1 {
            metrics.increment("ferry_aws_retries_total", ["operation": record.operation], by: Double(record.attempts - 1), help: "Retried AWS API attempts.")
        }
    }
}
