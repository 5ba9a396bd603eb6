import ArgumentParser
import FerryEngine
import Foundation

/// `ferry explain PATH`: the first command a support engineer runs — why a file is or is not being sent.
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Say, in plain words, which rule owns a file and where it stands, or why no rule sends it.",
        discussion: """
            Reads the rules, the file system and the journal (read-only; safe while the daemon runs). Exit status: 0 when \
            the file will be or was sent, 1 otherwise (no rule takes it, or it is quarantined or held in doubt).
            """
    )

    @OptionGroup var options: CommonOptions
    @Argument(help: "The file: an absolute path, or one relative to the current folder.") var path: String
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false

    func run() throws {
        let rules = try options.loadRules()
        let report = try ExplainReport.compute(rules: rules, path: path)
        print(json ? try report.json() : report.text())
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
