import FerrySystem
import Foundation
import FerryTestSupport
import Logging
import Synchronization
import Testing
@testable import FerryWatch

/// Log lines captured from the watcher, so tests can assert what an operator would read.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])

    func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }
    func matching(_ text: String) -> [String] { lines.withLock { $0.filter { $0.contains(text) } } }

    func logger(level: Logger.Level = .debug) -> Logger {
        var logger = Logger(label: "ferry.watch.test") { _ in CapturingHandler(log: self) }
        logger.logLevel = level
        return logger
    }
}

struct CapturingHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        log.lines.withLock { $0.append("\(level) \(message) \(fields)") }
    }
}

/// Keeps other tests' watchers from running while a test has lowered a global inotify limit, so a
/// lowered `max_user_watches` cannot make an unrelated test fall back to scanning.
enum KernelLimitGate {
    private static let state = Mutex<(watchers: Int, exclusive: Bool)>((0, false))

    static func enterWatcher() async {
        while !state.withLock({ state in
            if state.exclusive { return false }
            state.watchers += 1
            return true
        }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    static func leaveWatcher() { state.withLock { $0.watchers -= 1 } }

    /// Runs `body` once no gated watcher runs, holding new ones back until it returns.
    static func exclusive<T>(_ body: () async throws -> T) async rethrows -> T {
        while !state.withLock({ state in
            if state.exclusive { return false }
            state.exclusive = true
            return true
        }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        defer { state.withLock { $0.exclusive = false } }
        while state.withLock({ $0.watchers }) > 0 { try? await Task.sleep(for: .milliseconds(20)) }
        return try await body()
    }
}

/// A running FolderWatcher over a temp folder, collecting every report with the time it arrived.
final class WatchHarness: Sendable {
    struct Report: Sendable {
        var file: CompletedFile
        var at: ContinuousClock.Instant
    }

    let temp: TempDirectory
    let watcher: FolderWatcher
    let log = CapturedLog()
    let collected = Mutex<[Report]>([])
    private let tasks = Mutex<[Task<Void, Never>]>([])
    let runError = Mutex<String?>(nil)

    var base: String { temp.path }

    /// Builds rules from the temp folder's path, creates the folders they name, and starts watching.
    /// - Parameter gated: false only for the watcher a kernel-limit test starts inside its exclusive section.
    init(reconcile: Duration = .seconds(600), fallbackScan: Duration = .seconds(10), logLevel: Logger.Level = .debug,
         createRoots: Bool = true, gated: Bool = true, prepare: (String) throws -> Void = { _ in },
         isKnown: @escaping @Sendable (String, String, FileVersion) -> Bool = { _, _, _ in false },
         writeCheck: @escaping WriteChecker = WriteCheck.of,
         rules makeRules: (String) -> [WatchRule]) throws {
        temp = try TempDirectory(prefix: "ferry-watch")
        let rules = makeRules(temp.path)
        if createRoots {
            for rule in rules { try FileManager.default.createDirectory(atPath: rule.root, withIntermediateDirectories: true) }
        }
        try prepare(temp.path)
        watcher = FolderWatcher(rules: rules, reconcileInterval: reconcile, fallbackScanInterval: fallbackScan,
                                logger: log.logger(level: logLevel), isKnown: isKnown, writeCheck: writeCheck)
        start(gated: gated)
    }

    private func start(gated: Bool) {
        let run = Task { [self] in
            if gated { await KernelLimitGate.enterWatcher() }
            defer { if gated { KernelLimitGate.leaveWatcher() } }
            do { try await watcher.run() } catch { runError.withLock { $0 = "\(error)" } }
        }
        let collect = Task { [self] in
            for await file in watcher.completedFiles {
                collected.withLock { $0.append(Report(file: file, at: .now)) }
            }
        }
        tasks.withLock { $0 = [run, collect] }
    }

    var reports: [Report] { collected.withLock { $0 } }
    var reportedPaths: [String] { reports.map(\.file.relativePath).sorted() }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
    @discardableResult
    func wait(upTo timeout: Duration = .seconds(60), until condition: () -> Bool) async -> Bool {
        let end = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < end {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    func waitUntilScanned() async throws {
        let ready = await wait { watcher.statistics.initialScanComplete }
        try #require(ready, "the watcher never finished its first scan: \(runError.withLock { $0 } ?? "no error")")
    }

    /// Waits until exactly `expected` (relative paths, sorted) were reported, then a quiet period more,
    /// and checks nothing else (and nothing twice) arrived.
    func expectExactly(_ expected: [String], quiet: Duration = .milliseconds(1500), timeout: Duration = .seconds(60),
                       sourceLocation: SourceLocation = #_sourceLocation) async {
        let sorted = expected.sorted()
        await wait(upTo: timeout) { reportedPaths.count >= sorted.count }
        try? await Task.sleep(for: quiet)
        #expect(reportedPaths == sorted, sourceLocation: sourceLocation)
    }

    func stop() async {
        let running = tasks.withLock { $0 }
        running.first?.cancel()
        for task in running { await task.value }
    }

    // MARK: File helpers

    func path(_ relative: String) -> String { base + "/" + relative }

    /// Writes `bytes` bytes with open/write/close, as an application would.
    func write(_ relative: String, bytes: Int = 100, fill: UInt8 = 65) throws {
        try Self.write(path(relative), bytes: bytes, fill: fill)
    }

    static func write(_ path: String, bytes: Int = 100, fill: UInt8 = 65) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        let data = [UInt8](repeating: fill, count: bytes)
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes else { throw POSIXError(.EIO) }
    }

    func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: path(relative), withIntermediateDirectories: true)
    }

    func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(path(from), path(to)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}

extension WatchRule {
    /// A rule for tests: fast settle, everything under `root`.
    static func test(_ id: String, _ root: String, recursive: Bool = true, include: [String] = [], exclude: [String] = [],
                     settle: Duration = .milliseconds(300), readyMarker: String? = nil, excludedFolders: [String] = [],
                     watchMode: WatchMode = .auto, pollInterval: Duration = .seconds(5)) -> WatchRule {
        WatchRule(id: id, root: root, recursive: recursive, include: include, exclude: exclude, settle: settle,
                  readyMarker: readyMarker, excludedFolders: excludedFolders, watchMode: watchMode, pollInterval: pollInterval)
    }
}
