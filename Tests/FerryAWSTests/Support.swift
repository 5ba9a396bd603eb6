import Foundation
import Logging
import Testing
import FerryTestSupport
@testable import FerryAWS

/// The shared emulator (FerryTestSupport's `Emulator`), with what these tests need on top.
final class EmulatorProcess: @unchecked Sendable {
    let emulator: Emulator
    var endpoint: String { emulator.endpoint }
    var region: String { emulator.region }
    var accessKeyId: String { emulator.accessKeyId }
    var secretAccessKey: String { emulator.secretAccessKey }
    var stagingBucket: String { emulator.stagingBucket }
    var inboundBucket: String { emulator.inboundBucket }
    var sftpConnectorId: String { emulator.sftpConnectorId }
    var partnerRoot: String { emulator.partnerRoot }

    init(faultRate: Double = 0, faultKinds: [String] = [], seed: Int? = nil, latencyMs: Int = 0) throws {
        emulator = try Emulator.start(faultRate: faultRate, faultKinds: faultKinds, latencyMs: latencyMs, seed: seed)
    }

    /// (operation, status, fault) of every request the emulator saw.
    func requestLog() throws -> [(operation: String?, status: Int?, fault: String?)] {
        try emulator.requestLog().map { ($0.operation, $0.status, $0.fault) }
    }

    func stop() { emulator.stop() }

    func clientConfiguration() -> AWSClientConfiguration {
        var c = AWSClientConfiguration(region: region, endpointURL: endpoint,
                                       environment: ["AWS_ACCESS_KEY_ID": accessKeyId, "AWS_SECRET_ACCESS_KEY": secretAccessKey,
                                                     "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"])
        c.retryBaseDelay = .milliseconds(20)
        return c
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Keeps every log line (message and metadata, all levels) so tests can grep them for secrets.
final class CapturedLogs: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    func logger(_ label: String = "ferry.aws.test") -> Logger {
        var logger = Logger(label: label) { _ in CapturingHandler(sink: self) }
        logger.logLevel = .trace
        return logger
    }
}

struct CapturingHandler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        sink.append("\(event.level) \(event.message) \(all.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " "))")
    }
}

/// Records every finished call, to count attempts.
final class RecordingObserver: AWSObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var items: [AWSRequestRecord] = []
    func requestFinished(_ record: AWSRequestRecord) { lock.lock(); items.append(record); lock.unlock() }
    var records: [AWSRequestRecord] { lock.lock(); defer { lock.unlock() }; return items }
}

func writeFile(_ path: String, size: Int, seed: UInt64) throws {
    var rng = SplitMix64(state: seed)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TestFailure("cannot create \(path)") }
    defer { close(fd) }
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    var left = size
    while left > 0 {
        let n = min(left, chunk.count)
        chunk.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<(n + 7) / 8 where i < words.count { words[i] = rng.next() }
        }
        _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, n) }
        left -= n
    }
}

func sha256OfFile(_ path: String) throws -> String {
    let (fd, size) = try FileIO.openForReading(path)
    defer { close(fd) }
    return try FileIO.hashes(fd: fd, offset: 0, length: size, path: path).sha256
}

/// A child process started with posix_spawn, its first stdout line read, stopped by PID.
/// (Foundation's Process.waitUntilExit spins here when the child was started off the main thread.)
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    let firstLine: String
    private var stopped = false

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestFailure("pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Test threads block signals; without resetting the mask the child would ignore SIGTERM.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        defer { posix_spawnattr_destroy(&attributes) }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, executable, &actions, &attributes, argv, env)
        close(fds[1])
        guard spawned == 0 else { close(fds[0]); throw TestFailure("cannot start \(executable): errno \(spawned)") }
        pid = child
        var line = [UInt8]()
        var byte: UInt8 = 0
        while read(fds[0], &byte, 1) == 1 && byte != 0x0A { line.append(byte) }
        close(fds[0])
        firstLine = String(decoding: line, as: UTF8.self)
    }

    func stop() {
        if stopped { return }
        stopped = true
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    deinit { stop() }
}
