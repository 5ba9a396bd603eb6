// bench/journal's writer: the pipeline's journal writes, made through FerryStore's `Journal` exactly as
// OutboundPipeline makes them (detected → staged → batch submitting → submitted → completed and
// disposed, ten files a batch), timed one call at a time. bench/journal/run.py runs it on the
// million-row journal alone and while other processes query the same file (`ferry status` in a loop),
// and reports the longest call: how long a pipeline write was stalled.
//
// With `--status-in-process` a second thread runs the daemon's own status queries (the status line and
// the metrics file: per-state counts, the oldest waiting file, the 24-hour count) on the same `Journal`,
// which share its lock with the writes, and their longest call is reported too.
//
// With `--prune-rules PATH` a pruning pass (FerryEngine's `JournalPruner`, the rules' retention) runs
// on the same `Journal` while the writer writes, and its report (longest lock hold) is printed.
//
// Output: one JSON object on stdout.
import FerryConfig
import FerrySystem
import FerryEngine
import FerryStore
import Foundation
import Logging
import Synchronization

struct Options {
    var stateDir = ""
    var seconds = 10.0
    var filesPerSecond = 200.0
    var statusInProcess = false
    var pruneRules: String?
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst()
    while let argument = arguments.popFirst() {
        switch argument {
        case "--state-dir": options.stateDir = arguments.popFirst() ?? ""
        case "--seconds": options.seconds = Double(arguments.popFirst() ?? "") ?? options.seconds
        case "--files-per-second": options.filesPerSecond = Double(arguments.popFirst() ?? "") ?? options.filesPerSecond
        case "--status-in-process": options.statusInProcess = true
        case "--prune-rules": options.pruneRules = arguments.popFirst()
        default:
            FileHandle.standardError.write(Data("unknown argument \(argument)\n".utf8))
            exit(64)
        }
    }
    if options.stateDir.isEmpty {
        FileHandle.standardError.write(Data("usage: ferry-journal-bench --state-dir DIR [--seconds S] [--files-per-second N] [--status-in-process] [--prune-rules RULES]\n".utf8))
        exit(64)
    }
    return options
}

/// Durations of one kind of call, in milliseconds.
struct Timings: Sendable {
    var samples: [Double] = []
    mutating func add(_ duration: Duration) {
        samples.append(Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15)
    }
    var json: [String: Double] {
        let sorted = samples.sorted()
        guard !sorted.isEmpty else { return ["count": 0] }
        return ["count": Double(sorted.count), "max_ms": sorted.last!, "p99_ms": sorted[min(sorted.count - 1, sorted.count * 99 / 100)],
                "median_ms": sorted[sorted.count / 2]]
    }
}

func timed<T>(_ timings: inout Timings, _ body: () throws -> T) rethrows -> T {
    let started = ContinuousClock.now
    defer { timings.add(ContinuousClock.now - started) }
    return try body()
}

let options = parseOptions()
var logger = Logger(label: "ferry.bench.journal")
logger.logLevel = .error
let journal = try Journal(directory: options.stateDir, logger: logger)
let stop = Atomic<Bool>(false)

/// How long the status thread held the journal per call (its waits for the writer's commits excluded).
final class StatusHolds: JournalActivityObserver, @unchecked Sendable {
    private let holds = Mutex(Timings())
    func began() -> Int { 0 }
    func ended(_ token: Int) {}
    func held(_ duration: Duration) {
        if Thread.current.name == "status-queries" { holds.withLock { $0.add(duration) } }
    }
    var json: [String: Double] { holds.withLock { $0.json } }
}
let statusHolds = StatusHolds()
journal.observeActivity(statusHolds)

// The daemon's periodic status queries, on the writer's own Journal (its lock).
let statusThread = Mutex<Timings>(Timings())
let statusDone = DispatchSemaphore(value: 0)
if options.statusInProcess {
    Thread.detachNewThread {
        Thread.current.name = "status-queries"
        var timings = Timings()
        while !stop.load(ordering: .relaxed) {
            _ = try? timed(&timings) { try journal.outboundCounts() }
            _ = try? timed(&timings) { try journal.oldestWaiting() }
            _ = try? timed(&timings) { try journal.outboundCompleted(since: Date(timeIntervalSinceNow: -86_400)) }
            usleep(2_000)
        }
        statusThread.withLock { $0 = timings }
        statusDone.signal()
    }
}

// A pruning pass on the same Journal, as the daemon's JournalPruner runs beside the pipeline.
let pruneResult = Mutex<PruneReport?>(nil)
let pruneDone = DispatchSemaphore(value: 0)
if let rulesPath = options.pruneRules {
    guard let rules = RulesLoader.load(path: rulesPath).rules else {
        FileHandle.standardError.write(Data("cannot load \(rulesPath)\n".utf8))
        exit(78)
    }
    let pruner = JournalPruner(journal: journal, rules: { rules }, logger: logger)
    Task.detached {
        let report = try? await pruner.pass()
        pruneResult.withLock { $0 = report }
        pruneDone.signal()
    }
}

var write = Timings()
let batchSize = 10
let interval = Double(batchSize) / options.filesPerSecond
let started = Date()
var batches = 0
var inode: UInt64 = 50_000_000
while Date().timeIntervalSince(started) < options.seconds {
    let due = started.addingTimeInterval(Double(batches) * interval)
    if due > Date() { usleep(useconds_t(due.timeIntervalSinceNow * 1_000_000)) }
    var files: [OutboundFile] = []
    for _ in 0..<batchSize {
        inode += 1
        let name = "bench-\(inode).edi"
        let new = NewOutboundFile(rule: "invoices", path: "\(options.stateDir)/../out/\(name)", relativePath: name, version: FileVersion(device: 2049, inode: inode, size: 4096, mtimeNanoseconds: Int64(inode)), remoteDirectory: "/inbound")
        files += try timed(&write) { try journal.recordDetected([new]) }
    }
    for file in files {
        try timed(&write) { try journal.markStaged(file.id, bucket: "acme-staging", key: "outbound/\(file.relativePath)", checksum: "AAAAAA==") }
    }
    let batch = try timed(&write) {
        try journal.createBatch(rule: "invoices", connector: "acme", connectorID: "c-0123456789abcdef0", remoteDirectory: "/inbound",
                                fileIDs: files.map(\.id))
    }
    try timed(&write) { try journal.markSubmitted(batch: batch, transferID: "t-bench\(batch)") }
    let outcomes = Dictionary(uniqueKeysWithValues: files.map { ($0.id, FileOutcome.completed) })
    try timed(&write) { try journal.recordOutcomes(batch: batch, outcomes, done: Set(files.map(\.id))) }
    batches += 1
}
stop.store(true, ordering: .relaxed)
if options.statusInProcess { statusDone.wait() }
if options.pruneRules != nil { pruneDone.wait() }

var result: [String: Any] = ["files": batches * batchSize, "seconds": Date().timeIntervalSince(started), "writes": write.json]
if options.statusInProcess {
    result["status_queries"] = statusThread.withLock { $0.json }
    result["status_holds"] = statusHolds.json
}
if let report = pruneResult.withLock({ $0 }) {
    result["prune"] = ["rows": report.outboundFiles, "steps": report.steps, "checkpoints": report.checkpoints, "longest_step": report.longestStep,
                       "longest_lock_hold_ms": Double(report.longestLockHold.components.attoseconds) / 1e15 + Double(report.longestLockHold.components.seconds) * 1000,
                       "duration_s": Double(report.duration.components.seconds)]
}
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
