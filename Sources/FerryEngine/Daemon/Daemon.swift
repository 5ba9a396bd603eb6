import FerryAWS
import FerryConfig
import FerryStore
import FerrySystem
import FerryWatch
import Foundation
import Logging
import ServiceLifecycle

/// What `ferry run` starts: the journal, one AWS client per distinct AWS setting, the folder watcher and
/// the pipelines, for one validated rules file.
public final class Daemon: Sendable {
    /// The rules this daemon started with.
    public let rules: Rules
    /// The rules in force now (after any reload).
    let currentRules: Locked<Rules>
    let journal: Journal
    let watcher: FolderWatcher
    let outbound: OutboundPipeline
    let inbound: InboundPoller
    /// One AWS client per distinct AWS settings, shared by the connectors that use them.
    let clients: Locked<[String: AWSClient]>
    /// Each connector's service (budgets, submission, tracking), by connector name, for the daemon's
    /// whole life: a reload updates it in place, so both directions and every generation of the rules
    /// share one. Services of connectors the rules no longer name stay, for work still finishing.
    let services: Locked<[String: ConnectorService]>
    /// The services of the connectors the rules in force name, for the connector monitor.
    let currentServices: Locked<[String: ConnectorService]>
    /// Services of connectors a reload added, whose tracking loops the group's "connectors added by
    /// reload" part runs (a ServiceGroup's parts are fixed when it starts).
    private let addedServices: (stream: AsyncStream<ConnectorService>, continuation: AsyncStream<ConnectorService>.Continuation)
    /// The connectors the daemon started with, each a part of the group.
    private let initialServices: [ConnectorService]
    /// DescribeConnector at start, after reloads and on a schedule: holds work of unusable connectors.
    let monitor: ConnectorMonitor
    let lock: DaemonLock
    let notifier: SystemdNotifier
    /// What `ferry status` must know that the journal cannot say.
    let health: DaemonHealth
    /// Counters and gauges for the metrics file and tests.
    public let metrics: Metrics
    /// Which loops are on a piece of work longer than they should be: gates systemd's watchdog pings.
    let liveness = Liveness()
    /// Answers `ferry status` with the stuck loops, even when the journal's file system is frozen.
    let livenessSocket: LivenessSocket?
    /// Sends `notify:` alerts; reads the rules in force at each event, so a reload applies at once.
    let alerts: Notifier
    let logger: Logger

    /// Opens the journal and builds every component; nothing runs until `run()`.
    public init(rules: Rules, logger: Logger, metrics: Metrics = Metrics()) throws {
        self.rules = rules
        currentRules = Locked(rules)
        self.logger = logger
        self.metrics = metrics
        try Self.checkWritable(stateDir: rules.stateDir)
        lock = try DaemonLock(stateDir: rules.stateDir)
        health = DaemonHealth(stateDir: rules.stateDir)
        let current = currentRules
        alerts = Notifier(settings: { rule in current.withLock { $0.notifySettings(forRule: rule) } }, metrics: metrics, logger: logger)
        health.onChange.withLock { [alerts] in $0 = alerts.healthChanged }
        notifier = try SystemdNotifier()
        let journal = try Journal(directory: rules.stateDir, logger: logger)
        self.journal = journal
        journal.observeActivity(liveness.journalObserver)

        let clients = Locked<[String: AWSClient]>([:])
        self.clients = clients
        let services = Locked<[String: ConnectorService]>([:])
        self.services = services
        let prepared = try Self.services(for: rules.connectors, clients: clients, services: services, metrics: metrics, health: health, logger: logger)
        let named = prepared.mapValues(\.service)
        currentServices = Locked(named)
        initialServices = named.values.sorted { $0.name < $1.name }
        addedServices = AsyncStream.makeStream(of: ConnectorService.self)
        monitor = ConnectorMonitor(stateDir: rules.stateDir, health: health, logger: logger)

        watcher = FolderWatcher(rules: Self.watchRules(rules), reconcileInterval: rules.reconcileInterval, logger: logger) { rule, path, version in
            // Where sent files are archived or deleted, a sent version found again was put back: send it again.
            let keepsSent = current.withLock { $0.outbound.first { $0.name == rule }?.afterSend == .keep }
            return (try? journal.isKnown(path: path, version: version, doneCounts: keepsSent)) ?? false
        }
        outbound = OutboundPipeline(rules: rules.outbound, connectors: named, journal: journal, watcher: watcher,
                                    metrics: metrics, logger: logger, health: health, alerts: alerts)
        inbound = InboundPoller(rules: rules.inbound, services: named, journal: journal, metrics: metrics, logger: logger)

        let health = self.health
        inbound.pollFinished.withLock {
            $0 = { rule, error in
                if let error {
                    health.set("rule:\(rule)", "inbound rule \(rule): the last poll failed (\(error)); the next poll retries")
                } else {
                    health.clear("rule:\(rule)")
                }
            }
        }
        let watcher = self.watcher
        liveness.addProbe {
            journal.heldSince.map { .init(loop: "journal", what: "a journal statement has not returned — is the file system of \(journal.path) frozen, hung or failing?", since: $0) }
        }
        liveness.addProbe {
            watcher.handlingSince.map { .init(loop: "watcher", what: "handling one event, scan or pass", since: $0) }
        }
        let liveness = self.liveness
        let limit = Self.livenessLimit(notifier)
        do {
            livenessSocket = try LivenessSocket(stateDir: rules.stateDir) {
                LivenessAnswer(stuck: liveness.stuck(longerThan: limit), limitSeconds: Int(limit.components.seconds))
            }
        } catch {
            logger.warning("ferry status cannot ask this daemon about stuck loops", metadata: ["error": "\(error)"])
            livenessSocket = nil
        }
    }

    /// How long a loop may be on one piece of work: half of WatchdogSec (what systemd recommends for the
    /// ping interval), or 30 s without a watchdog.
    static func livenessLimit(_ notifier: SystemdNotifier) -> Duration {
        notifier.watchdogInterval ?? .seconds(30)
    }

    /// A state_dir ferry cannot write is a configuration problem that restarting cannot fix: under the
    /// packaged unit (ProtectSystem=strict) it is a path outside the unit's writable paths.
    static func checkWritable(stateDir: String) throws {
        try? FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        let probe = (stateDir as NSString).appendingPathComponent(".ferry-write-probe")
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd >= 0 {
            close(fd)
            unlink(probe)
            return
        }
        let code = errno
        let unitCanFix = code == EROFS || code == EACCES || code == EPERM || code == ENOENT
        let cause = SystemError("create", path: probe, code: code, advice: unitCanFix ? "create state_dir, make it writable by the user ferry runs as, and if it is outside /var/lib/ferry add it to the unit's writable paths: `systemctl edit ferry`, then under [Service] add `ReadWritePaths=\(stateDir)`" : nil)
        throw DaemonStartError(message: "state_dir \(stateDir) is not writable: \(cause)")
    }

    /// Watched folders that are gone (or now resolve through a link) and watching that fell back to
    /// scanning make `ferry status` degraded, with the watcher's own explanation.
    /// The watch mode of each folder (and why) goes to `watch-modes.json` whenever it changes.
    private func publishWatcherHealth() async throws {
        var publishedModes: [String: WatchModeChoice]?
        while !Task.isCancelled {
            let statistics = watcher.statistics
            if statistics.watchModes != publishedModes {
                publishedModes = statistics.watchModes
                let modes = statistics.watchModes.map { WatchModeStatus(folder: $0.key, choice: $0.value) }.sorted { $0.folder < $1.folder }
                WatchModesFile.write(modes, stateDir: currentRules.withLock { $0.stateDir })
            }
            if statistics.missingRoots > 0 {
                let why = statistics.lastProblem.map { ": \($0)" } ?? ""
                health.set("watch", "\(statistics.missingRoots) watched folder(s) missing or lost\(why)")
            } else {
                health.clear("watch")
            }
            try await Task.sleep(for: .seconds(2))
        }
    }

    /// READY=1 once the journal is open and the watches are set up, then WATCHDOG=1 pings while every
    /// loop moves, and STATUS= lines.
    private func notifySystemd() async throws {
        guard notifier.isEnabled else {
            // Nothing to tell; stay in the group until shutdown like every other child (the first child
            // to return ends the group).
            // An AsyncStream's iteration ends when the task is cancelled.
            let (never, continuation) = AsyncStream<Never>.makeStream()
            for await _ in never {}
            continuation.finish()
            throw CancellationError()
        }
        // The watcher's first scan runs right after its watches are added: then we are ready.
        while !watcher.statistics.initialScanComplete {
            try await Task.sleep(for: .milliseconds(50))
        }
        try? notifier.ready()
        // The first status line before the first ping, so `systemctl status` shows it from the start.
        try? notifier.status(statusLine())
        // The pings come from a thread of their own: a journal on a frozen file system blocks its callers
        // inside SQLite, and with them possibly every thread of the task pool (two on a 2-core machine),
        // so a ping task might never run again to say what is stuck.
        let pinger = WatchdogThread(notifier: notifier, liveness: liveness, logger: logger)
        pinger.start()
        defer { pinger.stop() }
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(15))
            // The status line reads the journal, which may block; the pinger does not wait for it.
            if liveness.stuck(longerThan: Self.livenessLimit(notifier)).isEmpty {
                try? notifier.status(statusLine())
            }
        }
    }

    /// One line for `systemctl status`: what is queued and what is done.
    func statusLine() -> String {
        let counts = (try? journal.outboundCounts()) ?? [:]
        var waiting = 0, inFlight = 0, sent = 0, quarantined = 0
        for states in counts.values {
            waiting += (states[.detected] ?? 0) + (states[.staged] ?? 0) + (states[.failed] ?? 0)
            inFlight += (states[.submitting] ?? 0) + (states[.submitted] ?? 0) + (states[.completed] ?? 0)
            sent += states[.done] ?? 0
            quarantined += states[.quarantined] ?? 0
        }
        let rules = currentRules.withLock { $0 }
        return "\(rules.outbound.count) outbound, \(rules.inbound.count) inbound rules; \(waiting) waiting, \(inFlight) in flight, \(sent) sent, \(quarantined) quarantined"
    }

    /// The watcher's rules. No rule's archive, quarantine or in-doubt folder is ever a candidate of any
    /// rule: an archive inside a watched tree would otherwise send its files again, in a loop.
    static func watchRules(_ rules: Rules) -> [WatchRule] {
        let excluded = rules.outbound.flatMap { rule -> [String] in
            let ferry = (rule.watch as NSString).appendingPathComponent(".ferry")
            var folders = [ferry + "/sent", ferry + "/failed", ferry + "/in-doubt", ferry + "/claim"]
            if rule.afterSend == .archive, let archive = rule.archiveDir { folders.append(archive) }
            return folders
        }
        return rules.outbound.map {
            WatchRule(id: $0.name, root: $0.watch, recursive: $0.recursive, include: $0.include, exclude: $0.exclude,
                      settle: $0.settle, readyMarker: $0.readyMarker, excludedFolders: excluded,
                      watchMode: watchMode($0.watchMode), pollInterval: $0.pollInterval)
        }
    }

    static func watchMode(_ configured: OutboundRule.WatchMode) -> WatchMode {
        switch configured {
        case .auto: .auto
        case .inotify: .inotify
        case .poll: .poll
        }
    }

    /// For `ferry validate`: the file system holding `folder` and whether inotify is blind on it.
    public static func fileSystem(of folder: String) -> (name: String, isRemote: Bool)? {
        FileSystemKind.of(path: folder).map { ($0.name, $0.isRemote) }
    }

    /// The service of each of `connectors` with this rules generation's settings and clients. A connector
    /// seen for the first time gets its service (kept in `services` for the daemon's life); a known one
    /// keeps its service, and the caller applies the returned settings to it (`ConnectorService.update`).
    static func services(for connectors: [Connector], clients: Locked<[String: AWSClient]>, services: Locked<[String: ConnectorService]>,
                         metrics: Metrics, health: DaemonHealth? = nil, logger: Logger) throws -> [String: (service: ConnectorService, context: ConnectorContext)] {
        var prepared: [String: (service: ConnectorService, context: ConnectorContext)] = [:]
        for connector in connectors {
            let settingsKey = "\(connector.aws)"
            let client = try clients.withLock { clients in
                if let existing = clients[settingsKey] { return existing }
                let made = try AWSClient(configuration: configuration(connector.aws), logger: logger, observer: MetricsObserver(metrics: metrics, health: health, credentialsKey: CredentialHealth.key(connector.aws)))
                clients[settingsKey] = made
                return made
            }
            // A throttled Start* call (RetryAfterSeconds) holds off the connector's whole request
            // budget, both directions: every other call would only be throttled too.
            let existing = services.withLock { $0[connector.name] }
            let limiter = existing?.requestLimiter ?? RateLimiter(perSecond: connector.requestsPerSecond)
            let transfer = TransferClient(client: client) { retryAfter in
                if let retryAfter { await limiter.holdOff(seconds: retryAfter) }
            }
            let context = ConnectorContext(connector: connector, s3: S3Client(client: client), transfer: transfer)
            let service = services.withLock { services in
                if let known = services[connector.name] { return known }
                let made = ConnectorService(context, limiter: limiter, health: health, logger: logger)
                services[connector.name] = made
                return made
            }
            prepared[connector.name] = (service, context)
        }
        return prepared
    }

    /// SIGHUP: applies rules that the caller has already validated. New rules and connectors start; removed
    /// rules take no new files and finish what they have; in-flight work is never dropped. A connector
    /// that already runs takes its new settings at once: its budgets (`requests_per_second`,
    /// `max_in_flight`) are adjusted in place and stay shared by both directions; new work goes to its
    /// new `connector_id`, `staging` and AWS settings; transfers already submitted are tracked against
    /// the connector id they were sent with (journaled with each batch).
    public func reload(_ newRules: Rules) async throws {
        // No RELOADING=1/READY=1 here: the unit reloads through ExecReload (validate, then SIGHUP), and a
        // READY=1 arriving while that job runs makes systemd end the job as failed.
        let previous = currentRules.withLock { $0 }
        let running = Set(services.withLock { $0.keys })
        let prepared = try Self.services(for: newRules.connectors, clients: clients, services: services, metrics: metrics, health: health, logger: logger)
        for (name, entry) in prepared {
            await entry.service.update(entry.context)
            if !running.contains(name) { addedServices.continuation.yield(entry.service) }
        }
        Self.logConnectorChanges(from: previous.connectors, to: newRules.connectors, logger: logger)
        let current = prepared.mapValues(\.service)
        currentServices.withLock { $0 = current }
        monitor.reloaded()
        let (added, removed) = await outbound.reload(rules: newRules.outbound, connectors: current)
        watcher.updateRules(Self.watchRules(newRules))
        inbound.reload(rules: newRules.inbound, services: current)
        currentRules.withLock { $0 = newRules }
        logger.info("rules reloaded", metadata: ["rules.added": "\(added.joined(separator: ","))",
                                                 "rules.removed": "\(removed.joined(separator: ","))",
                                                 "rules.outbound": "\(newRules.outbound.count)",
                                                 "rules.inbound": "\(newRules.inbound.count)"])
    }

    /// Says, at notice level, which running connectors a reload points elsewhere: where new files go is
    /// the one change an operator must be able to find in the log afterwards.
    static func logConnectorChanges(from old: [Connector], to new: [Connector], logger: Logger) {
        for connector in new {
            guard let before = old.first(where: { $0.name == connector.name }) else { continue }
            var changes: Logger.Metadata = [:]
            if before.connectorId != connector.connectorId {
                changes["connector.id.old"] = "\(before.connectorId)"
                changes["connector.id.new"] = "\(connector.connectorId)"
            }
            let (stagingBefore, stagingNow) = (before.staging.map { "\($0)" } ?? "none", connector.staging.map { "\($0)" } ?? "none")
            if stagingBefore != stagingNow {
                changes["connector.staging.old"] = "\(stagingBefore)"
                changes["connector.staging.new"] = "\(stagingNow)"
            }
            if "\(before.aws)" != "\(connector.aws)" {
                changes["connector.aws.old"] = "\(before.aws)"
                changes["connector.aws.new"] = "\(connector.aws)"
            }
            guard !changes.isEmpty else { continue }
            changes["connector"] = "\(connector.name)"
            logger.notice("connector changed by reload: new work goes to the new settings; transfers already submitted finish against the connector id they were sent with",
                          metadata: changes)
        }
    }

    /// The FerryAWS client settings for a connector's AWS settings.
    public static func configuration(_ settings: AWSSettings) -> AWSClientConfiguration {
        var configuration = AWSClientConfiguration(region: settings.region)
        configuration.endpointURL = settings.endpointURL
        configuration.profile = settings.profile
        configuration.caBundle = settings.caBundle
        configuration.maxAttempts = settings.maxAttempts
        return configuration
    }

    /// `ferry poll RULE` without a running daemon: one poll of `rule`, then the AWS clients shut down.
    /// (The poll runs its connector's tracking loop while it waits for its transfers.)
    public func pollOnce(rule: String) async -> PollReport? {
        defer { for client in clients.withLock({ Array($0.values) }) { client.shutdown() } }
        return await inbound.pollNow(rule: rule)
    }

    /// How long a graceful shutdown may take before the group cancels what still runs, and how long
    /// that cancellation may take before ferry aborts: together the 30 s that DESIGN.md promises for a
    /// SIGTERM (the unit's TimeoutStopSec is 35 s). Every part stops at once when asked (the journal holds
    /// each file's last state), so these bound only a part that hangs.
    public static let gracefulShutdownLimit: Duration = .seconds(25)
    public static let cancellationLimit: Duration = .seconds(5)

    /// The daemon's long-lived parts as the services of one ServiceGroup, with `more` (the command
    /// line's SIGHUP reloader) after them, in the group's configuration (no signals of its own: the
    /// caller's stop handler triggers its graceful shutdown). The group starts them in this order and,
    /// on a stop, shuts them down in the reverse order, each after the one behind it has ended: systemd
    /// hears STOPPING=1 first; the pipelines stop before the watcher that feeds them; the first part
    /// logs "ferry stopped" and shuts the AWS clients down once every other part has ended. The first
    /// part to end or fail shuts the whole group down the same way (a failure is rethrown at the end).
    public func serviceGroupConfiguration(more: [any Service] = []) -> ServiceGroupConfiguration {
        var parts: [any Service] = [
            DaemonLifecycle(daemon: self),
            DaemonPart("watcher") { try await self.watcher.run() },
        ]
        // Each connector's service (its tracking loop) before the directions that hand it work, so it
        // stops after them.
        for service in initialServices {
            parts.append(DaemonPart("connector \(service.name)") { await service.run() })
        }
        let added = addedServices.stream
        parts.append(DaemonPart("connectors added by reload") {
            await withDiscardingTaskGroup { group in
                for await service in added {
                    group.addTask { await Liveness.$loop.withValue("connector \(service.name)") { await service.run() } }
                }
            }
        })
        parts += [
            DaemonPart("outbound") { try await self.outbound.run() },
            DaemonPart("inbound") { await self.inbound.run() },
            DaemonPart("connector-monitor") { try await self.monitor.run { self.currentServices.withLock { $0 } } },
            DaemonPart("journal-pruner") { await JournalPruner(journal: self.journal, rules: { self.currentRules.withLock { $0 } }, logger: self.logger).run() },
            DaemonPart("alerts") { await self.alerts.run() },
            DaemonPart("heap-trimmer") { await HeapTrimmer(logger: self.logger).run() },
            // Not a loop that does work: it only shows that a task of the pool can still run (see Liveness).
            DaemonPart("task-pool-heartbeat") { try await self.liveness.beatWhileRunning() },
        ]
        if let path = rules.metricsFile {
            parts.append(DaemonPart("metrics") { await MetricsWriter(path: path, metrics: self.metrics, journal: self.journal, watcher: self.watcher, logger: self.logger).run() })
        }
        parts.append(DaemonPart("watcher-health") { try await self.publishWatcherHealth() })
        parts += more
        // Last, so the first to hear of a stop: systemd learns at once that it has begun.
        parts.append(DaemonPart("systemd-notifier", onStop: { try? self.notifier.stopping() }) { try await self.notifySystemd() })
        return Self.serviceGroupConfiguration(parts: parts, logger: logger)
    }

    /// The group's configuration for `parts`, in start order: any part that ends, or fails, shuts the
    /// group down gracefully (a failure is rethrown by the group once all have stopped), and the stop is
    /// bounded by `gracefulShutdownLimit` and `cancellationLimit`.
    static func serviceGroupConfiguration(parts: [any Service], logger: Logger) -> ServiceGroupConfiguration {
        var configuration = ServiceGroupConfiguration(
            services: parts.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                                        failureTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [], logger: logger)
        configuration.maximumGracefulShutdownDuration = gracefulShutdownLimit
        configuration.maximumCancellationDuration = cancellationLimit
        return configuration
    }
}

/// One long-lived part of the daemon as a service of its ServiceGroup. It stops at once when the group
/// shuts down gracefully (its task is cancelled): the journal already holds every file's last committed
/// state, so a part stopped mid-step loses nothing and the next start resumes it.
struct DaemonPart: Service, CustomStringConvertible {
    let description: String
    /// Called the moment the group asks this part to stop, before it is cancelled.
    let onStop: @Sendable () -> Void
    let body: @Sendable () async throws -> Void

    init(_ name: String, onStop: @escaping @Sendable () -> Void = {}, body: @escaping @Sendable () async throws -> Void) {
        description = name
        self.onStop = onStop
        self.body = body
    }

    func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                // The part's name, for the liveness check's journal hook: whatever of it waits for the
                // journal is named after it (see Liveness).
                try await cancelWhenGracefulShutdown { try await Liveness.$loop.withValue(description) { try await body() } }
            } onGracefulShutdown: {
                onStop()
            }
        } catch is CancellationError {
            // A requested stop, not a failure.
        }
    }
}

/// The first service of the daemon's group: says when ferry started, and, once every other part has
/// ended (the group shuts services down in reverse order), shuts the AWS clients down and says it stopped.
struct DaemonLifecycle: Service, CustomStringConvertible {
    let daemon: Daemon
    var description: String { "daemon" }

    func run() async throws {
        daemon.livenessSocket?.start()
        daemon.logger.info("ferry started", metadata: ["rules.outbound": "\(daemon.rules.outbound.count)", "rules.inbound": "\(daemon.rules.inbound.count)",
                                                       "journal.path": "\(daemon.journal.path)"])
        try? await gracefulShutdown()
        daemon.livenessSocket?.stop()
        for client in daemon.clients.withLock({ Array($0.values) }) { client.shutdown() }
        daemon.logger.info("ferry stopped")
    }
}

/// The daemon cannot start for a reason in its configuration or environment; `ferry run` exits 78
/// (EX_CONFIG) so that systemd does not restart it in a loop (RestartPreventExitStatus=78).
public struct DaemonStartError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// Counts AWS requests, errors and retries per operation for the metrics file, and reports credentials
/// that cannot be refreshed to `ferry status` (see `CredentialHealth`).
struct MetricsObserver: AWSObserver {
    let metrics: Metrics
    var health: DaemonHealth? = nil
    var credentialsKey = "credentials"

    func credentialRefreshFinished(_ refresh: CredentialRefresh) {
        if refresh.error != nil {
            metrics.increment("ferry_aws_credential_refresh_failures_total", [:], help: "Failed refreshes of the AWS credentials.")
        }
        guard let health else { return }
        if let problem = CredentialHealth.problem(refresh) { health.set(credentialsKey, problem) } else { health.clear(credentialsKey) }
    }

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
