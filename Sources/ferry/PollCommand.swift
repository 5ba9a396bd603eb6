import ArgumentParser
import FerryConfig
import FerryEngine
import Foundation

/// `ferry poll RULE`: poll an inbound rule now.
struct PollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poll",
        abstract: "Poll an inbound rule now.",
        discussion: "Through the running daemon if there is one (after any poll of that rule already running); otherwise polls once and exits. Exit status 1 if the poll failed."
    )

    @OptionGroup var options: CommonOptions
    @Argument(help: "The inbound rule's name in the rules file.") var rule: String

    func run() async throws {
        let logger = options.makeLogger(label: "ferry.poll")
        let rules = try options.loadRules()
        guard rules.inbound.contains(where: { $0.name == rule }) else {
            throw ValidationError("no inbound rule named '\(rule)' in \(options.configPath); defined: \(rules.inbound.map(\.name).joined(separator: ", "))")
        }
        let report: PollReport
        if DaemonLock.runningPID(stateDir: rules.stateDir) != nil {
            report = try await PollRequests.submit(stateDir: rules.stateDir, rule: rule)
        } else {
            guard let once = await (try Daemon(rules: rules, logger: logger)).pollOnce(rule: rule) else { throw ExitCode(1) }
            report = once
        }
        print("\(rule): \(report.summary)")
        for warning in report.warnings { print("warning: \(warning)") }
        if let error = report.error {
            print("error: \(error)")
            throw ExitCode(1)
        }
    }
}
