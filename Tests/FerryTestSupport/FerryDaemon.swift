import Foundation

/// A `ferry run` process started by a test, with its log captured to a file.
public final class FerryDaemon: @unchecked Sendable {
    /// The child process.
    public let process: Process
    /// Where its standard error (the log) goes.
    public let logPath: String

    /// Starts `ferry run --config <config>` with `environment` added to this process's environment.
    public init(config: String, environment: [String: String], logPath: String, extraArguments: [String] = []) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process = Process()
        process.executableURL = URL(fileURLWithPath: FerryBinary.path)
        process.arguments = ["run", "--config", config] + extraArguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The log so far.
    public var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Sends a signal.
    public func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// SIGTERM and wait up to `timeout` seconds; returns the exit status, or nil if it had to be killed.
    @discardableResult
    public func stop(timeout: Double = 35) -> Int32? {
        signal(SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(50_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    /// Waits for the process to exit on its own; returns its status, or nil on timeout.
    public func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(50_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// SIGKILL, as a crash would.
    public func crash() {
        signal(SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Polls `condition` until it holds or `timeout` seconds pass; returns whether it held.
public func eventually(timeout: Double, interval: Double = 0.1, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(UInt32(interval * 1_000_000))
    }
    return try condition()
}

/// `eventually` for async tests: sleeps with `Task.sleep`, so waiting never holds one of the few
/// cooperative threads that every other test in the run shares.
public func eventually(timeout: Double, interval: Double = 0.1, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
    }
    return try condition()
}

extension FerryDaemon {
    /// Async `stop`: SIGTERM, then wait without blocking a cooperative thread.
    @discardableResult
    public func stop(timeout: Double = 35) async -> Int32? {
        signal(SIGTERM)
        if let status = await waitForExit(timeout: timeout) { return status }
        crash()
        return nil
    }

    /// Async `waitForExit`.
    public func waitForExit(timeout: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return process.isRunning ? nil : process.terminationStatus
    }
}
