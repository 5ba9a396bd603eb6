import FerryConfig
import FerryStore
import FerryWatch
import Foundation
import Logging

/// Writes `metrics_file` for node_exporter's textfile collector every 15 s, replacing it atomically
/// (write to a temporary name, fsync, rename) so the collector never reads half a file.
struct MetricsWriter: Sendable {
    let path: String
    let metrics: Metrics
    let journal: Journal
    let watcher: FolderWatcher
    let logger: Logger
    var interval: Duration = .seconds(15)

    func run() async {
        while !Task.isCancelled {
            writeOnce()
            try? await Task.sleep(for: interval)
        }
        writeOnce()
    }

    func writeOnce() {
        refreshQueueGauges(metrics: metrics, journal: journal)
        let watch = watcher.statistics
        metrics.setTotal("ferry_inotify_overflows_total", to: Double(watch.overflows), help: "inotify queue overflows (each followed by a rescan).")
        metrics.setTotal("ferry_watch_scans_total", to: Double(watch.scans), help: "Full scans of watched folders: start, overflow, reconciliation, fallback.")
        metrics.set("ferry_watches", to: Double(watch.watches), help: "inotify watches in use.")
        do {
            try LocalFiles.writeAtomically(metrics.render(), to: path)
        } catch {
            logger.warning("cannot write the metrics file", metadata: ["metrics.path": "\(path)", "error": "\(error)"])
        }
    }
}

/// Sets queue-depth and oldest-waiting gauges from the journal.
func refreshQueueGauges(metrics: Metrics, journal: Journal, now: Date = Date()) {
    guard let counts = try? journal.outboundCounts(), let oldest = try? journal.oldestWaiting() else { return }
    metrics.clear("ferry_queue_files")
    for (rule, states) in counts {
        for state in OutboundState.allCases where ![.done, .dropped, .retried].contains(state) {
            metrics.set("ferry_queue_files", ["rule": rule, "state": state.rawValue], to: Double(states[state] ?? 0),
                        help: "Outbound files per journal state.")
        }
    }
    metrics.clear("ferry_oldest_waiting_seconds")
    for (rule, entry) in oldest {
        metrics.set("ferry_oldest_waiting_seconds", ["rule": rule], to: now.timeIntervalSince(entry.since).rounded(),
                    help: "Age of the oldest outbound file not yet sent.")
    }
    if let duplicates = try? journal.counter("possible_duplicates") {
        metrics.set("ferry_possible_duplicates", to: Double(duplicates), help: "Files resubmitted after a crash during StartFileTransfer, since the journal was created.")
    }
}
