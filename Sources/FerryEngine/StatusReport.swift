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
        /// Sent and disposed in the last 24 hours.
        public var completed24h: Int
        /// Failed and waiting for their retry.
        public var failed: Int
        /// Out of retries, in `.ferry/failed/`.
        public var quarantined: Int
        /// The oldest file not yet sent, and how long it has waited.
        public var oldestWaitingPath: String?
        public var oldestWaitingAgeSeconds: Double?
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
    public var outbound: [OutboundRuleStatus]
    public var generatedAt: Date

    /// Reads the journal under `rules.stateDir`; rules order the output and name rules with no files yet.
    public static func compute(rules: Rules, now: Date = Date()) throws -> StatusReport {
        let journalPath = (rules.stateDir as NSString).appendingPathComponent("journal.db")
        let pid = DaemonLock.runningPID(stateDir: rules.stateDir)
        var outbound: [OutboundRuleStatus] = []
        var duplicates: Int64 = 0
        if FileManager.default.fileExists(atPath: journalPath) {
            let journal = try Journal(readOnlyAt: journalPath, logger: .init(label: "ferry.status"))
            let counts = try journal.outboundCounts()
            let completed = try journal.outboundCompleted(since: now.addingTimeInterval(-86_400))
            let oldest = try journal.oldestWaiting()
            duplicates = try journal.counter("possible_duplicates")
            var names = rules.outbound.map(\.name)
            names += counts.keys.filter { !names.contains($0) }.sorted()
            for name in names {
                let byState = counts[name] ?? [:]
                outbound.append(OutboundRuleStatus(
                    rule: name,
                    waiting: byState[.detected] ?? 0,
                    staged: byState[.staged] ?? 0,
                    inFlight: (byState[.submitting] ?? 0) + (byState[.submitted] ?? 0) + (byState[.completed] ?? 0),
                    completed24h: completed[name] ?? 0,
                    failed: byState[.failed] ?? 0,
                    quarantined: byState[.quarantined] ?? 0,
                    oldestWaitingPath: oldest[name]?.path,
                    oldestWaitingAgeSeconds: oldest[name].map { (now.timeIntervalSince($0.since) * 10).rounded() / 10 }))
            }
        } else {
            outbound = rules.outbound.map {
                OutboundRuleStatus(rule: $0.name, waiting: 0, staged: 0, inFlight: 0, completed24h: 0, failed: 0, quarantined: 0)
            }
        }
        let health: Health
        if pid == nil {
            health = .notRunning
        } else if outbound.contains(where: { $0.quarantined > 0 }) {
            health = .degraded
        } else {
            health = .healthy
        }
        return StatusReport(health: health, daemonPID: pid, journal: journalPath, possibleDuplicates: duplicates,
                            outbound: outbound, generatedAt: now)
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
        case .degraded: lines.append("ferry is running (pid \(daemonPID ?? 0)): DEGRADED — see quarantined files below; `ferry retry` puts them back")
        case .notRunning: lines.append("ferry is NOT running (no daemon holds \(journal.replacingOccurrences(of: "journal.db", with: "ferry.pid")))")
        }
        if possibleDuplicates > 0 {
            lines.append("possible duplicates so far: \(possibleDuplicates) (files resubmitted after a crash during StartFileTransfer; see the log)")
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
        return lines.joined(separator: "\n")
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
