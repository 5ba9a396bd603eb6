import Foundation
import Testing
import FerryTestSupport

/// Issue #15: a SIGTERM that arrives while ferry is still starting (loading, parsing the rules, opening
/// the journal, before the service group listens for signals) is a stop request like any other: ferry
/// exits 0, not 143 (killed by the signal's default action), and systemd sees a clean stop.
struct EarlySignalTests {
    /// ferry started as systemd starts it: SIGTERM neither blocked nor ignored. (A child of the test
    /// runner inherits the runner's blocked signals, SIGTERM among them, which hides the defect: the
    /// signal waits, blocked, until ferry listens.) Python resets the mask and the disposition, creates
    /// `marker` (the exec is then microseconds away) and execs ferry.
    static func launch(config: String, environment: [String: String], log: String, marker: String) throws -> Process {
        let reset = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); signal.signal(signal.SIGTERM, signal.SIG_DFL); open(sys.argv[1], 'w').close(); os.execv(sys.argv[2], sys.argv[2:])"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", reset, marker, FerryBinary.path, "run", "--config", config]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Delays after the exec. Before the dynamic loader has mapped ferry and its libraries no code of
    /// ferry's can run, and the default action still applies: a few milliseconds for the packaged
    /// (static) binary, up to ~20 ms for the debug build these tests run on a loaded machine. From
    /// .preinit_array on (CFerryStart), the signal is ferry's.
    @Test(arguments: [50, 100, 200, 400])
    func aSigtermWhileStartingExitsCleanly(delayMs: Int) async throws {
        let scenario = try OutboundScenario()
        let log = scenario.root.path + "/ferry.log"
        let marker = scenario.root.path + "/exec-now"
        let process = try Self.launch(config: scenario.configPath, environment: scenario.emulator.environment, log: log, marker: marker)
        // Busy-waiting on purpose: the signal must land within milliseconds of the exec.
        while !FileManager.default.fileExists(atPath: marker), process.isRunning { usleep(200) }
        usleep(UInt32(delayMs * 1000))
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(35)
        while process.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let running = process.isRunning
        if running { kill(process.processIdentifier, SIGKILL) }
        #expect(!running, "ferry did not stop within 35 s of a SIGTERM \(delayMs) ms after it started")
        let killed = process.terminationReason == .uncaughtSignal
        #expect(!running && !killed && process.terminationStatus == 0,
                "a SIGTERM \(delayMs) ms after start: \(killed ? "killed by signal \(process.terminationStatus) (exit \(128 + process.terminationStatus))" : "exit \(process.terminationStatus)"); log:\n\((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(1500) ?? "")")
    }
}
