import Foundation
import Logging

/// Sends systemd's WATCHDOG=1 from a thread of its own while no loop is stuck (`Liveness`), and
/// STATUS=STUCK: … naming the loops while any is.
///
/// Not a task: what makes a loop stuck (a journal on a frozen file system blocking its callers inside
/// SQLite) can block every thread of the task pool, and then a ping task would never run again to
/// withhold the pings or say why; systemd would only see silence.
final class WatchdogThread: Sendable {
    private let notifier: SystemdNotifier
    private let liveness: Liveness
    private let logger: Logger
    private let stopped = Locked(false)

    init(notifier: SystemdNotifier, liveness: Liveness, logger: Logger) {
        self.notifier = notifier
        self.liveness = liveness
        self.logger = logger
    }

    /// Starts pinging.
    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "ferry-watchdog"
        thread.start()
    }

    /// Stops pinging (at shutdown).
    func stop() {
        stopped.withLock { $0 = true }
    }

    private func run() {
        let limit = Daemon.livenessLimit(notifier)
        let interval = min(notifier.watchdogInterval ?? .seconds(15), .seconds(1))
        var reported: [String] = []
        while !stopped.withLock({ $0 }) {
            let stuck = liveness.stuck(longerThan: limit)
            if stuck.isEmpty {
                if notifier.watchdogInterval != nil { try? notifier.watchdog() }
                if !reported.isEmpty {
                    logger.notice("every loop moves again; watchdog pings resumed", metadata: ["loops.recovered": "\(reported.joined(separator: ","))"])
                    try? notifier.status("every loop moves again")
                }
            } else {
                let line = "STUCK: " + stuck.map { "\($0.loop) for \($0.seconds) s (\($0.what))" }.joined(separator: "; ")
                try? notifier.status(line)
                if stuck.map(\.loop) != reported {
                    logger.error("a loop is stuck; systemd watchdog pings withheld", metadata: [
                        "loops.stuck": "\(stuck.map(\.loop).joined(separator: ","))", "stuck": "\(line)"])
                }
            }
            reported = stuck.map(\.loop)
            Thread.sleep(forTimeInterval: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
        }
    }
}
