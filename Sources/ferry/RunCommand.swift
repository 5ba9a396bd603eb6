import ArgumentParser
import CFerryStart
import FerryConfig
import FerryEngine
import Foundation
import Logging
import ServiceLifecycle

/// `ferry run`: the daemon, in the foreground (systemd runs it this way).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon in the foreground: watch, send, retrieve.",
        discussion: "SIGTERM or SIGINT stops it cleanly within 30 s; a second signal exits at once. Everything in flight is journaled and resumes on the next start."
    )

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let logger = options.makeLogger(label: "ferry")
        let rules = try options.loadRules()
        let daemon: Daemon
        do {
            daemon = try Daemon(rules: rules, logger: logger)
        } catch let error as DaemonStartError {
            FileHandle.standardError.write(Data("ferry: \(error.message)\n".utf8))
            throw ExitCode(78)
        }
        // SIGHUP is ignored from here on (its default action ends the process); the reloader, one of
        // the group's services, applies each one.
        let reloader = ReloadSignal(options: options, daemon: daemon, logger: logger)
        // No signals for the group itself: StopSignals reads SIGTERM/SIGINT (blocked since the first
        // instruction) and asks the group to shut down gracefully, within the daemon's bounds.
        let group = ServiceGroup(configuration: daemon.serviceGroupConfiguration(more: [reloader]))
        let stop = StopSignals(group: group, logger: logger)
        stop.install()
        try await group.run()
    }
}

/// Options every subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "The rules file (default: $FERRY_CONFIG, then /etc/ferry/rules.yaml).")
    var config: String?

    @Option(name: .long, help: "Log format: text or json.")
    var logFormat: String = "text"

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    var configPath: String {
        config ?? ProcessInfo.processInfo.environment["FERRY_CONFIG"] ?? "/etc/ferry/rules.yaml"
    }

    func validate() throws {
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("--log-format must be text or json") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical") }
    }

    func makeLogger(label: String) -> Logger {
        let format: FerryLogHandler.Format = logFormat == "json" ? .json : .text
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap(FerryLogHandler.factory(format: format, logLevel: level))
        return Logger(label: label)
    }

    /// Loads and validates the rules; on error prints every diagnostic and exits 78 (EX_CONFIG).
    func loadRules() throws -> Rules {
        let result = RulesLoader.load(path: configPath)
        for diagnostic in result.diagnostics {
            FileHandle.standardError.write(Data("\(diagnostic)\n".utf8))
        }
        guard let rules = result.rules else { throw ExitCode(78) }
        return rules
    }
}

/// SIGTERM and SIGINT: the first stops the daemon gracefully, a second while draining exits at once
/// (the journal keeps everything resumable).
///
/// From the process's first instruction a handler (a constructor in CFerryStart) writes them into a
/// pipe, read here on a thread of their own: a stop requested while ferry is still starting waits in
/// the pipe and is a stop like any other, never a kill by the default action (exit 143). The service
/// group is given no signals of its own, so nothing replaces that handler.
final class StopSignals: @unchecked Sendable {
    private let group: ServiceGroup
    private let logger: Logger

    init(group: ServiceGroup, logger: Logger) {
        self.group = group
        self.logger = logger
    }

    /// False when the constructor could not take the signals over (then their default action stands).
    @discardableResult
    func install() -> Bool {
        let fd = ferry_stop_signal_fd()
        guard fd >= 0 else {
            logger.warning("cannot take SIGTERM/SIGINT over (no pipe); a stop signal ends ferry without draining")
            return false
        }
        let group = self.group
        let thread = Thread {
            var count = 0
            while true {
                let signalNumber = ferry_next_stop_signal(fd)
                guard signalNumber > 0 else { return }
                count += 1
                if count >= 2 {
                    FileHandle.standardError.write(Data("second signal: exiting now; the journal keeps everything resumable\n".utf8))
                    _exit(130)
                }
                Task { await group.triggerGracefulShutdown() }
            }
        }
        thread.name = "ferry.stop-signals"
        thread.start()
        return true
    }
}

/// SIGHUP: validate the rules file again and, only if it is valid, apply it; otherwise log every error
/// (file:line:col) and keep running with the rules in force. A service of the daemon's group: reloads
/// are applied one at a time, in its own task, and end with the group.
final class ReloadSignal: Service, CustomStringConvertible, @unchecked Sendable {
    private let options: CommonOptions
    private let daemon: Daemon
    private let logger: Logger
    private let source: DispatchSourceSignal
    private let signals: AsyncStream<Void>
    var description: String { "reload" }

    /// Ignores SIGHUP from now on (its default action would end the process before `run` starts).
    init(options: CommonOptions, daemon: Daemon, logger: Logger) {
        self.options = options
        self.daemon = daemon
        self.logger = logger
        signal(SIGHUP, SIG_IGN)
        let (signals, arrived) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.signals = signals
        source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "ferry.reload"))
        // Several SIGHUPs while a reload runs make one more reload: it reads the file as it is then.
        source.setEventHandler { arrived.yield() }
        source.resume()
    }

    func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            await reload()
        }
        source.cancel()
    }

    private func reload() async {
        let result = RulesLoader.load(path: options.configPath)
        for diagnostic in result.diagnostics {
            let level: Logger.Level = diagnostic.severity == .error ? .error : .warning
            logger.log(level: level, "\(diagnostic)", metadata: ["config.path": "\(options.configPath)"])
        }
        guard let rules = result.rules else {
            logger.error("reload refused: the rules file has errors; the running rules stay in force",
                         metadata: ["config.path": "\(options.configPath)", "config.errors": "\(result.errors.count)"])
            return
        }
        do {
            try await daemon.reload(rules)
        } catch {
            logger.error("reload failed; the running rules stay in force", metadata: ["error": "\(error)"])
        }
    }
}
