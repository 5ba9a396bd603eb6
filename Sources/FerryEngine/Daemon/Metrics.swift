import Foundation
import Synchronization

/// ferry's counters and gauges, written as a Prometheus textfile by `MetricsWriter`.
public final class Metrics: Sendable {
    /// A series: the metric name and its rendered label set, e.g. `ferry_files_sent_total` + `{rule="a"}`.
    /// Built once per update as two strings, so counting stays cheap on the per-file path.
    private struct Key: Hashable, Comparable {
        var name: String
        var labels: String

        static func < (lhs: Key, rhs: Key) -> Bool { (lhs.name, lhs.labels) < (rhs.name, rhs.labels) }
    }

    private struct State {
        var counters: [Key: Double] = [:]
        var gauges: [Key: Double] = [:]
        var help: [String: (type: String, text: String)] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    private static func key(_ name: String, _ labels: [String: String]) -> Key {
        switch labels.count {
        case 0:
            return Key(name: name, labels: "")
        case 1:
            let (label, value) = labels.first!
            return Key(name: name, labels: "{\(label)=\"\(escape(value))\"}")
        default:
            let pairs = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(escape($0.value))\"" }
            return Key(name: name, labels: "{" + pairs.joined(separator: ",") + "}")
        }
    }

    private static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else {
            return value
        }
        return value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Adds `amount` to a counter.
    public func increment(_ name: String, _ labels: [String: String] = [:], by amount: Double = 1, help: String) {
        state.withLock {
            $0.counters[Self.key(name, labels), default: 0] += amount
            if $0.help[name] == nil { $0.help[name] = ("counter", help) }
        }
    }

    /// Sets a gauge.
    public func set(_ name: String, _ labels: [String: String] = [:], to value: Double, help: String) {
        state.withLock {
            $0.gauges[Self.key(name, labels)] = value
            if $0.help[name] == nil { $0.help[name] = ("gauge", help) }
        }
    }

    /// Sets a counter kept elsewhere (such as the watcher's statistics) to its current total.
    public func setTotal(_ name: String, _ labels: [String: String] = [:], to value: Double, help: String) {
        state.withLock {
            $0.counters[Self.key(name, labels)] = value
            if $0.help[name] == nil { $0.help[name] = ("counter", help) }
        }
    }

    /// Removes every series of a gauge (before setting it afresh).
    public func clear(_ name: String) {
        state.withLock { state in state.gauges = state.gauges.filter { $0.key.name != name } }
    }

    /// A counter's current value (0 if never incremented).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        state.withLock { $0.counters[Self.key(name, labels)] ?? $0.gauges[Self.key(name, labels)] ?? 0 }
    }

    /// The whole set in the Prometheus text exposition format.
    public func render() -> String {
        state.withLock { state in
            var out = ""
            var series: [(Key, Double)] = state.counters.map { ($0.key, $0.value) } + state.gauges.map { ($0.key, $0.value) }
            series.sort { $0.0 < $1.0 }
            var lastName = ""
            for (key, value) in series {
                if key.name != lastName {
                    if let help = state.help[key.name] {
                        out += "# HELP \(key.name) \(help.text)\n# TYPE \(key.name) \(help.type)\n"
                    }
                    lastName = key.name
                }
                let labels = key.labels
                let number = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
                out += "\(key.name)\(labels) \(number)\n"
            }
            return out
        }
    }
}
