import FerryConfig
import Foundation

/// One alert, as the `notify` command reads it on stdin and the webhook receives it as its body.
/// docs/alerts.md documents this shape field by field (and a test holds the two together): every key
/// is always present, absent values are `null`, keys are sorted.
public struct AlertEvent: Sendable, Equatable, Encodable {
    /// What happened. Problems that begin and end come in pairs (`…_degraded`, `…_recovered`).
    public enum Kind: String, Sendable, CaseIterable, Encodable {
        case fileQuarantined = "file_quarantined"
        case batchInDoubt = "batch_in_doubt"
        case possibleDuplicate = "possible_duplicate"
        case connectorDegraded = "connector_degraded"
        case connectorRecovered = "connector_recovered"
        case ruleDegraded = "rule_degraded"
        case ruleRecovered = "rule_recovered"
        case journalDegraded = "journal_degraded"
        case journalRecovered = "journal_recovered"
        case daemonDegraded = "daemon_degraded"
        case daemonRecovered = "daemon_recovered"
    }

    public var event: Kind
    /// The rule the event is about, if any.
    public var rule: String?
    /// The files it is about, where they are now; for a folded alert, those of every event folded in
    /// (at most `maximumPaths`).
    public var paths: [String]
    /// The connector (its name in the rules file) it is about, if any.
    public var connector: String?
    /// One sentence for a person: what happened and what to do.
    public var message: String
    public var time: Date
    public var host: String
    public var ferryVersion: String
    /// How many more events of this kind and rule happened since the last alert and are summed up in
    /// this one (0 for an alert sent as it happened).
    public var folded: Int

    /// A folded alert names at most this many paths: the message must stay small enough for a webhook.
    static let maximumPaths = 100
    /// This machine's name, read once.
    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// An event that happens now on this host.
    public init(_ event: Kind, rule: String? = nil, connector: String? = nil, paths: [String] = [], message: String, time: Date = Date()) {
        self.event = event
        self.rule = rule
        self.paths = paths
        self.connector = connector
        self.message = message
        self.time = time
        host = Self.hostName
        ferryVersion = FerryVersion.string
        folded = 0
    }

    private enum CodingKeys: String, CodingKey {
        case event, rule, paths, connector, message, time, host, folded
        case ferryVersion = "ferry_version"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(event, forKey: .event)
        // `encode` of an Optional writes null; `encodeIfPresent` would leave the key out.
        try container.encode(rule, forKey: .rule)
        try container.encode(paths, forKey: .paths)
        try container.encode(connector, forKey: .connector)
        try container.encode(message, forKey: .message)
        try container.encode(time, forKey: .time)
        try container.encode(host, forKey: .host)
        try container.encode(ferryVersion, forKey: .ferryVersion)
        try container.encode(folded, forKey: .folded)
    }

    /// The JSON document: sorted keys, UTC time in ISO 8601 with milliseconds.
    public var json: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Self.timestamp(date))
        }
        return [UInt8]((try? encoder.encode(self)) ?? Data("{}".utf8))
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// The alert for a problem of `DaemonHealth` that began or changed (`message` set) or ended (nil;
    /// `previous` is what it was). Keys name their subject: `connector:<name>`, `rule:<name>` and
    /// `results:<rule>` a rule, `journal` the journal; anything else is the daemon's.
    static func health(key: String, message: String?, previous: String?) -> AlertEvent {
        let (subject, name) = key.split(separator: ":", maxSplits: 1).map(String.init).splitPair
        let recovered = message == nil
        let was = previous.map { " (was: \($0))" } ?? ""
        switch subject {
        case "connector":
            return AlertEvent(recovered ? .connectorRecovered : .connectorDegraded, connector: name,
                              message: message ?? "connector \(name ?? "") is usable again; its held work goes on\(was)")
        case "rule", "results":
            return AlertEvent(recovered ? .ruleRecovered : .ruleDegraded, rule: name,
                              message: message ?? "rule \(name ?? "") is no longer degraded\(was)")
        case "journal":
            return AlertEvent(recovered ? .journalRecovered : .journalDegraded,
                              message: message ?? "the journal can be written again; waiting files go on\(was)")
        default:
            return AlertEvent(recovered ? .daemonRecovered : .daemonDegraded,
                              message: message ?? "resolved: \(previous ?? key)")
        }
    }
}

private extension Array where Element == String {
    /// ("connector", "acme") from ["connector", "acme"]; (key, nil) from [key].
    var splitPair: (String, String?) { (self.first ?? "", self.count > 1 ? self[1] : nil) }
}

extension AlertEvent {
    /// The sentence of a `batch_in_doubt` alert: what is unknown and what ferry does about it.
    static func inDoubtMessage(files: Int, error: String, policy: InDoubtPolicy) -> String {
        let action = switch policy {
        case .resend: "ferry looks for them in the partner's folder and resends those it does not find (on_in_doubt: resend)"
        case .hold: "they are held in .ferry/in-doubt/ (on_in_doubt: hold); check with the partner, then `ferry retry` resends them"
        }
        return "StartFileTransfer's outcome for a batch of \(files) file(s) is unknown (\(error)): the partner may or may not have them; \(action)"
    }
}
