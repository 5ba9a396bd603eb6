import FerryConfig
import FerryStore
import Foundation

/// What `ferry status` shows, computed from the journal (read-only, safe while the daemon runs).
public struct StatusReport: Codable, Sendable, Equatable {
    /// One outbound rule's queue.
    public struct OutboundRuleStatus: Codable, Sendable, Equatable {
        public var rule: String
        /// Complete on disk, not yet uploaded (or uploading).
        public var waiting: Int
        /// In S3 staging, waiting for a batch.
        public var staged: Int
        /// Submitted to AWS and not finished.
        public var inFlight: Int
        /// Sent and done (after_send included) in the last 24 hours.
        public var completed24h: Int
        /// Failed and waiting for their retry.
        public var failed: Int
        /// Out of retries (or with an outcome that can no longer be learned), in `.ferry/failed/`.
        public var quarantined: Int
        /// Held in `.ferry/in-doubt/` after StartFileTransfer's outcome was unknown (`on_in_doubt: hold`).
        public var inDoubt: Int = 0
        /// Sent, but after_send (archive/delete) cannot be done yet; retried with backoff.
        public var afterSendFailing: Int = 0
        /// The last after_send failure's reason.
        public var afterSendError: String?
        /// The oldest file not yet sent, and how long it has waited.
        public var oldestWaitingPath: String?
        public var oldestWaitingAgeSeconds: Double?
        /// How the rule's folder is watched (`inotify` or `poll`) and why, as the running daemon decided.
        public var watching: WatchModeStatus?
    }

    /// One inbound rule: its polls and the files it is retrieving.
    public struct InboundRuleStatus: Codable, Sendable, Equatable {
        public var rule: String
        public var lastPollStarted: Date?
        public var lastPollFinished: Date?
        /// The last poll's one-line summary.
        public var lastPollResult: String?
        /// The last poll's error, if it failed.
        public var lastPollError: String?
        public var nextPoll: Date?
        /// Files listed and not yet safely in S3 (and on disk, with download_to).
        public var inProgress: Int
        /// Files retrieved and tidied on the partner in the last 24 hours.
        public var retrieved24h: Int
        /// Files whose retrieval failed and that the next poll retries.
        public var failed: Int
        /// Remote names refused (hostile or outside download_to).
        public var refused: Int
    }

    /// The health `ferry status` exits with.
    public enum Health: String, Codable, Sendable {
        /// Running, nothing quarantined, no failing poll: exit 0.
        case healthy
        /// Running, but files are quarantined or the last poll failed: exit 1.
        case degraded
        /// No daemon holds the state_dir's lock: exit 2.
        case notRunning = "not_running"

        /// The process exit status for this health.
        public var exitCode: Int32 {
            switch self {
            case .healthy: 0
            case .degraded: 1
            case .notRunning: 2
            }
        }
    }

    public var health: Health
    public var daemonPID: Int32?
    public var journal: String
    public var possibleDuplicates: Int64
    /// Problems the running daemon reports that the journal cannot show (e.g. its file system is full).
    public var problems: [String] = []
    public var outbound: [OutboundRuleStatus]
    public var inbound: [InboundRuleStatus]
    /// Each connector as DescribeConnector last described it to the running daemon.
    public var connectors: [ConnectorState] = []
    /// Loops of the running daemon on one piece of work for longer than half of WatchdogSec (while any
    /// is, systemd's watchdog pings are withheld); empty when all move or the daemon did not answer.
    public var stuck: [Liveness.Stuck] = []
    public var generatedAt: Date

    /// Reads the journal under `rules.stateDir`; rules order the output and name rules with no files yet.
    public static func compute(rules: Rules, now: Date = Date()) throws -> StatusReport {
        let journalPath = (rules.stateDir as NSString).appendingPathComponent("journal.db")
        let pid = DaemonLock.runningPID(stateDir: rules.stateDir)
        var outbound: [OutboundRuleStatus] = []
        var inbound: [InboundRuleStatus] = rules.inbound.map {
            InboundRuleStatus(rule: $0.name, inProgress: 0, retrieved24h: 0, failed: 0, refused: 0)
        }
        var duplicates: Int64 = 0
        // Asked first: when the journal's file system is frozen, opening the journal would hang here too.
        let liveness = pid == nil ? nil : LivenessSocket.ask(stateDir: rules.stateDir)
        let readJournal = !(liveness?.journalStuck ?? false)
        if readJournal, FileManager.default.fileExists(atPath: journalPath) {
            let journal = try Journal(readOnlyAt: journalPath, logger: .init(label: "ferry.status"))
            let counts = try journal.outboundCounts()
            let completed = try journal.outboundCompleted(since: now.addingTimeInterval(-86_400))
            let oldest = try journal.oldestWaiting()
            let afterSend = try journal.afterSendFailures()
            duplicates = try journal.counter("possible_duplicates")
            var names = rules.outbound.map(\.name)
            names += counts.keys.filter { !names.contains($0) }.sorted()
            for name in names {
                let byState = counts[name] ?? [:]
                outbound.append(OutboundRuleStatus(
                    rule: name,
                    waiting: byState[.detected] ?? 0,
                    staged: byState[.staged] ?? 0,
                    inFlight: (byState[.submitting] ?? 0) + (byState[.submitted] ?? 0) + (byState[.completed] ?? 0) - (afterSend[name]?.count ?? 0),
                    completed24h: completed[name] ?? 0,
                    failed: byState[.failed] ?? 0,
                    quarantined: byState[.quarantined] ?? 0,
                    inDoubt: byState[.inDoubt] ?? 0,
                    afterSendFailing: afterSend[name]?.count ?? 0,
                    afterSendError: afterSend[name]?.lastError,
                    oldestWaitingPath: oldest[name]?.path,
                    oldestWaitingAgeSeconds: oldest[name].map { (now.timeIntervalSince($0.since) * 10).rounded() / 10 }))
            }
            let inboundCounts = try journal.inboundCounts()
            let retrieved = try journal.inboundDone(since: now.addingTimeInterval(-86_400))
            let polls = Dictionary(try journal.pollRecords().map { ($0.rule, $0) }, uniquingKeysWith: { first, _ in first })
            for index in inbound.indices {
                let name = inbound[index].rule
                let counts = inboundCounts[name] ?? [:]
                inbound[index].inProgress = [InboundState.listed, .submitting, .retrieving, .inS3, .downloading, .downloaded]
                    .reduce(0) { $0 + (counts[$1] ?? 0) }
                inbound[index].failed = counts[.failed] ?? 0
                inbound[index].refused = counts[.refused] ?? 0
                inbound[index].retrieved24h = retrieved[name] ?? 0
                if let poll = polls[name] {
                    inbound[index].lastPollStarted = poll.startedAt
                    inbound[index].lastPollFinished = poll.finishedAt
                    inbound[index].lastPollResult = poll.result
                    inbound[index].lastPollError = poll.error
                    inbound[index].nextPoll = poll.nextAt
                }
            }
        } else {
            outbound = rules.outbound.map {
                OutboundRuleStatus(rule: $0.name, waiting: 0, staged: 0, inFlight: 0, completed24h: 0, failed: 0, quarantined: 0)
            }
        }
        var problems = pid == nil ? [] : DaemonHealth.read(stateDir: rules.stateDir).map(\.message)
        let stuck = liveness?.stuck ?? []
        for loop in stuck {
            problems.append("loop '\(loop.loop)' stuck for \(loop.seconds) s: \(loop.what); systemd's watchdog pings are withheld until it moves")
        }
        if !readJournal {
            problems.append("the journal was not read (it does not answer); the counts below are not known")
        }
        if pid != nil {
            let modes = WatchModesFile.read(stateDir: rules.stateDir)
            for index in outbound.indices {
                guard let watch = rules.outbound.first(where: { $0.name == outbound[index].rule })?.watch else { continue }
                outbound[index].watching = modes.first { $0.folder == watch }
            }
        }
        let health: Health
        if pid == nil {
            health = .notRunning
        } else if outbound.contains(where: { $0.quarantined > 0 || $0.inDoubt > 0 || $0.afterSendFailing > 0 })
                    || inbound.contains(where: { $0.lastPollError != nil }) || !problems.isEmpty {
            health = .degraded
        } else {
            health = .healthy
        }
        let connectors = pid == nil ? [] : ConnectorState.read(stateDir: rules.stateDir)
        return StatusReport(health: health, daemonPID: pid, journal: journalPath, possibleDuplicates: duplicates, problems: problems,
                            outbound: outbound, inbound: inbound, connectors: connectors, stuck: stuck, generatedAt: now)
    }

    /// JSON with snake_case keys and ISO 8601 dates, for scripts.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// A table for people.
    public func text() -> String {
        var lines: [String] = []
        switch health {
        case .healthy: lines.append("ferry is running (pid \(daemonPID ?? 0)): healthy")
        case .degraded: lines.append("ferry is running (pid \(daemonPID ?? 0)): DEGRADED — see the problems and files set aside below; `ferry retry` puts them back")
        case .notRunning: lines.append("ferry is NOT running (no daemon holds \(journal.replacingOccurrences(of: "journal.db", with: "ferry.pid")))")
        }
        for problem in problems { lines.append("problem: \(problem)") }
        if possibleDuplicates > 0 {
            lines.append("possible duplicates so far: \(possibleDuplicates) (files sent again after StartFileTransfer's outcome was unknown; see the log)")
        }
        for rule in outbound where rule.inDoubt > 0 {
            lines.append("\(rule.rule): \(rule.inDoubt) file(s) held in .ferry/in-doubt/ — the partner may or may not have them; check, then `ferry retry`")
        }
        for rule in outbound where rule.afterSendFailing > 0 {
            lines.append("\(rule.rule): after_send failing for \(rule.afterSendFailing) sent file(s), retried: \(rule.afterSendError ?? "")")
        }
        lines.append("")
        lines.append("OUTBOUND RULE         WAITING  STAGED  IN FLIGHT  SENT 24H  FAILED  QUARANTINED  OLDEST WAITING")
        for rule in outbound {
            let oldest = rule.oldestWaitingAgeSeconds.map { "\(Self.age($0)) \(rule.oldestWaitingPath ?? "")" } ?? "-"
            lines.append(rule.rule.padding(toLength: 20, withPad: " ", startingAt: 0) + "  "
                         + [rule.waiting, rule.staged, rule.inFlight, rule.completed24h, rule.failed, rule.quarantined]
                            .enumerated().map { index, value in
                                String(value).leftPadded(to: [7, 6, 9, 8, 6, 11][index])
                            }.joined(separator: "  ")
                         + "  " + oldest)
        }
        if outbound.contains(where: { $0.watching != nil }) {
            lines.append("")
            lines.append("OUTBOUND RULE         WATCHED BY")
            for rule in outbound {
                lines.append(rule.rule.padding(toLength: 20, withPad: " ", startingAt: 0) + "  " + (rule.watching?.summary ?? "-"))
            }
        }
        if !inbound.isEmpty {
            lines.append("")
            lines.append("INBOUND RULE          IN PROGRESS  RETRIEVED 24H  FAILED  REFUSED  LAST POLL                      NEXT POLL")
            let formatter = ISO8601DateFormatter()
            for rule in inbound {
                let last: String
                if let error = rule.lastPollError {
                    last = "FAILED: \(error)"
                } else if let finished = rule.lastPollFinished {
                    last = "\(formatter.string(from: finished)) \(rule.lastPollResult ?? "")"
                } else {
                    last = rule.lastPollStarted == nil ? "never" : "running"
                }
                lines.append(rule.rule.padding(toLength: 20, withPad: " ", startingAt: 0) + "  "
                             + [rule.inProgress, rule.retrieved24h, rule.failed, rule.refused].enumerated().map { index, value in
                                String(value).leftPadded(to: [11, 13, 6, 7][index])
                             }.joined(separator: "  ")
                             + "  " + last.padding(toLength: 29, withPad: " ", startingAt: 0)
                             + "  " + (rule.nextPoll.map { formatter.string(from: $0) } ?? "-"))
            }
        }
        if !connectors.isEmpty {
            lines.append("")
            lines.append("CONNECTOR             ID                    STATUS    EGRESS")
            for connector in connectors {
                lines.append(connector.name.padding(toLength: 20, withPad: " ", startingAt: 0) + "  "
                             + connector.connectorId.padding(toLength: 20, withPad: " ", startingAt: 0) + "  "
                             + (connector.status ?? "unknown").padding(toLength: 8, withPad: " ", startingAt: 0) + "  "
                             + Self.egress(connector))
                if let error = connector.errorMessage { lines.append("    error: \(error)") }
                if let held = connector.held { lines.append("    held: \(held)") }
                if let failure = connector.describeError { lines.append("    DescribeConnector failed: \(failure)") }
            }
        }
        return lines.joined(separator: "\n")
    }

    /// "SERVICE_MANAGED 3.4.5.6, 7.8.9.10; 5 connections" — what a partner allow-lists.
    static func egress(_ connector: ConnectorState) -> String {
        var text = connector.egressType ?? "-"
        if !connector.egressIPAddresses.isEmpty { text += " " + connector.egressIPAddresses.joined(separator: ", ") }
        if let connections = connector.maxConcurrentConnections { text += "; \(connections) connection\(connections == 1 ? "" : "s")" }
        return text
    }

    static func age(_ seconds: Double) -> String {
        if seconds < 120 { return "\(Int(seconds))s" }
        if seconds < 7200 { return "\(Int(seconds / 60))m" }
        return "\(Int(seconds / 3600))h"
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
