// ferry-watch-bench: runs FerryWatch's FolderWatcher over a tree until it has reported a number of
// files, then prints what it saw. bench/watch/run.py measures its CPU and memory against inotifywait.
import FerryWatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count == 5, let expected = Int(arguments[2]), let settleMilliseconds = Int(arguments[3]),
      let quietMilliseconds = Int(arguments[4]) else {
    say("usage: ferry-watch-bench ROOT FILES SETTLE_MS QUIET_MS")
    exit(64)
}
/// Unbuffered, so the driver sees "ready" at once through its pipe.
func say(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}

var logger = Logger(label: "ferry.watch.bench")
logger.logLevel = .info
let watcher = FolderWatcher(
    rules: [WatchRule(id: "bench", root: arguments[1], recursive: true, settle: .milliseconds(settleMilliseconds))],
    logger: logger)

// Detached: the watcher and the counting loop run on the cooperative pool like the engine's tasks,
// not on the main actor, so no report needs a hop to the main thread.
let running = Task.detached { try await watcher.run() }
Task.detached {
    while !watcher.statistics.initialScanComplete { try await Task.sleep(for: .milliseconds(10)) }
    say("ready watches=\(watcher.statistics.watches)")
}

/// Counts reports; duplicates show as a flag already set.
final class Tally: @unchecked Sendable {
    var seen = 0
    var unique = 0
    var seenIndex: [Bool]
    var firstReport: ContinuousClock.Instant?
    var lastReport = ContinuousClock.now
    init(_ count: Int) { seenIndex = [Bool](repeating: false, count: count) }
}
// Files are named fileNNNNNN.dat: one flag per index shows duplicates without holding 100,000 paths.
let tally = Tally(expected)
let clock = ContinuousClock()
let started = clock.now
let counted = Mutex(0)
let counter = Task.detached {
    for await file in watcher.completedFiles {
        if tally.firstReport == nil { tally.firstReport = clock.now }
        tally.seen += 1
        let digits = file.path.split(separator: "/").last?.dropFirst(4).prefix(6)
        if let digits, let index = Int(digits), index < expected, !tally.seenIndex[index] {
            tally.seenIndex[index] = true
            tally.unique += 1
        }
        tally.lastReport = clock.now
        counted.withLock { $0 = tally.seen }
    }
}
// Wait for the expected count, then a quiet period in which any duplicate would show up.
while counted.withLock({ $0 }) < expected { try await Task.sleep(for: .milliseconds(50)) }
try await Task.sleep(for: .milliseconds(quietMilliseconds))
let statistics = watcher.statistics
running.cancel()
_ = await running.result
_ = await counter.value
let span = (tally.lastReport - (tally.firstReport ?? started))
say("reported=\(tally.seen) unique=\(tally.unique) overflows=\(statistics.overflows) scans=\(statistics.scans) watches_max=\(statistics.watches) report_span_ms=\(span.components.seconds * 1000 + span.components.attoseconds / 1_000_000_000_000_000)")
