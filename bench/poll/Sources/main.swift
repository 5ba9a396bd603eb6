// ferry-poll-bench: FerryWatch's poll mode over an existing tree. Once every file is known it prints
// one line per poll pass (wall, CPU, folders re-read, files still settling); bench/poll/run.py changes
// files between passes and compares with `fswatch -m poll_monitor` and `find -newer`.
import FerryWatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count == 5, let expected = Int(arguments[2]), let intervalMilliseconds = Int(arguments[3]),
      let passes = Int(arguments[4]) else {
    say("usage: ferry-poll-bench ROOT FILES POLL_INTERVAL_MS PASSES")
    exit(64)
}
/// Unbuffered, so the driver sees each line at once through its pipe.
func say(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}

func microseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
}

/// Until ready, every version is one the journal already has; afterwards every change is new.
let startingUp = Mutex(true)
var logger = Logger(label: "ferry.poll.bench")
logger.logLevel = .info
// The files exist before the watcher starts, as after a restart: the journal knows them (isKnown), so
// they are settled once and not reported. What is measured is the steady state after that.
let watcher = FolderWatcher(
    rules: [WatchRule(id: "bench", root: arguments[1], recursive: true, settle: .milliseconds(300),
                      watchMode: .poll, pollInterval: .milliseconds(intervalMilliseconds))],
    logger: logger, isKnown: { _, _, _ in startingUp.withLock { $0 } })

let running = Task.detached { try await watcher.run() }
let reports = Task.detached {
    var count = 0
    for await _ in watcher.completedFiles { count += 1 }
    return count
}

// Ready once the initial scan is done and every file has settled (known, or reported).
while true {
    let statistics = watcher.statistics
    if statistics.initialScanComplete, statistics.known + statistics.reported >= expected, statistics.pending == 0 { break }
    try await Task.sleep(for: .milliseconds(50))
}
startingUp.withLock { $0 = false }
say("ready mode=\(watcher.statistics.watchModes.values.first.map { "\($0)" } ?? "?") watches=\(watcher.statistics.watches)")

var lastPass = 0
var printed = 0
while printed < passes {
    try await Task.sleep(for: .milliseconds(20))
    let statistics = watcher.statistics
    guard let cost = statistics.lastPollPass, cost.pass > lastPass else { continue }
    lastPass = cost.pass
    printed += 1
    // pending: files found changed by this pass and now settling; reported: changed files completed so far.
    say("pass n=\(cost.pass) wall_us=\(microseconds(cost.wall)) cpu_us=\(microseconds(cost.cpu)) folders_read=\(cost.foldersRead) pending=\(statistics.pending) reported=\(statistics.reported) files_checked=\(statistics.pollFilesChecked)")
}
/// VmHWM from /proc/self/status: ru_maxrss would carry over the high-water mark of the driver that
/// forked this process before exec (Linux keeps it across exec), which holds the tree's path list.
func statusKilobytes(_ field: String) -> Int {
    let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 8192)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count > 0 else { return -1 }
    let text = String(decoding: buffer[0..<count], as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return -1 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}
let peak = statusKilobytes("VmHWM"), resident = statusKilobytes("VmRSS")
running.cancel()
_ = await running.result
say("done peak_kb=\(peak) rss_kb=\(resident) reported=\(await reports.value)")
