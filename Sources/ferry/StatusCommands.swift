import ArgumentParser
import FerryConfig
import FerryEngine
import Foundation
import Logging

/// `ferry status`: what is waiting, in flight, done, failed — from the journal, while the daemon runs.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show queues, recent transfers and health.",
        discussion: "Exit status: 0 healthy, 1 degraded (quarantined files or a failing poll), 2 the daemon is not running."
    )

    @OptionGroup var options: CommonOptions
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false

    func run() throws {
        let rules = try options.loadRules()
        let report = try StatusReport.compute(rules: rules)
        print(json ? try report.json() : report.text())
        if report.health.exitCode != 0 { throw ExitCode(report.health.exitCode) }
    }
}

/// `ferry retry`: quarantined files back into the queue.
struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Move quarantined and held (in-doubt) files back into the queue.",
        discussion: "Without arguments, every file in .ferry/failed/ and .ferry/in-doubt/ (of --rule, if given) is put back where it was found; the running daemon sends it again. Refuses to run as root without --allow-root."
    )

    @OptionGroup var options: CommonOptions
    @Option(name: .long, help: "Only this outbound rule.") var rule: String?
    @Argument(help: "Only these files (their original or quarantined paths).") var paths: [String] = []
    @Flag(name: .long, help: "Run as root anyway (files put back are then owned as they were; the daemon's user must still read them).")
    var allowRoot = false

    func run() throws {
        // As root, a move would succeed where the service user cannot read the result, and root follows
        // whatever a folder has become: refuse unless asked to.
        if geteuid() == 0, !allowRoot {
            throw ValidationError("ferry retry refuses to run as root: run it as the service user (`sudo -u ferry ferry retry …`), or pass --allow-root")
        }
        let logger = options.makeLogger(label: "ferry.retry")
        let rules = try options.loadRules()
        if let rule, !rules.outbound.contains(where: { $0.name == rule }) {
            throw ValidationError("no outbound rule named '\(rule)' in \(options.configPath)")
        }
        let restored = try QuarantineRetry.run(rules: rules, rule: rule, paths: paths, logger: logger)
        for item in restored { print("\(item.from) -> \(item.to)") }
        print("\(restored.count) file\(restored.count == 1 ? "" : "s") put back in the queue")
    }
}

/// `ferry test-connection CONNECTOR`: asks AWS to test the connector's link to the partner.
struct TestConnectionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-connection",
        abstract: "Call TestConnection for a connector and print the result."
    )

    @OptionGroup var options: CommonOptions
    @Argument(help: "The connector's name in the rules file.") var connector: String

    func run() async throws {
        let logger = options.makeLogger(label: "ferry.test-connection")
        let rules = try options.loadRules()
        guard let target = rules.connector(named: connector) else {
            throw ValidationError("no connector named '\(connector)' in \(options.configPath); defined: \(rules.connectors.map(\.name).joined(separator: ", "))")
        }
        // `ferry doctor` makes the same two checks.
        let checks = try await ConnectorProbe.testConnection(target, logger: logger)
        for check in checks { print(check.text) }
        if checks.contains(where: { $0.level == .fail }) { throw ExitCode(1) }
    }
}
