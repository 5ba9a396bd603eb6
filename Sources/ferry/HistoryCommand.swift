import ArgumentParser
import FerryEngine
import Foundation

/// `ferry history`: the audit trail from the journal — what was sent and retrieved, when, and how it ended.
struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show what the journal knows of each file sent or retrieved: times, S3 keys, TransferIds, outcomes.",
        discussion: """
            Reads the journal read-only; safe while the daemon runs. A file is listed when its journey (detected, or first \
            listed, until it finished) overlaps --since/--until. Times are ISO 8601 (2026-12-01T08:00:00Z, 2026-12-01) or \
            ages (90s, 30m, 2h, 1d, 1w). NAME-OR-PATH is a file name (invoice-4711.edi), an absolute local or remote path, \
            or a path relative to the rule's watched folder. Rows older than `retention` have been pruned.
            """
    )

    @OptionGroup var options: CommonOptions
    @Option(name: .long, help: "Only this rule (outbound or inbound).") var rule: String?
    @Option(name: .long, help: "Only files still going on at or after this time.") var since: String?
    @Option(name: .long, help: "Only files detected (or listed) at or before this time.") var until: String?
    @Option(name: .long, help: "Only files in this state (repeatable): done, detected, staged, submitting, submitted, completed, failed, quarantined, in_doubt, dropped, retried, listed, retrieving, in_s3, downloading, downloaded, refused.")
    var state: [String] = []
    @Argument(help: "Only these files: names or paths.") var names: [String] = []
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false
    @Flag(name: .long, help: "Print CSV (RFC 4180, with a header row).") var csv = false

    func validate() throws {
        if json && csv { throw ValidationError("--json and --csv exclude each other: choose one") }
    }

    func run() throws {
        let rules = try options.loadRules()
        if let rule, !rules.outbound.contains(where: { $0.name == rule }), !rules.inbound.contains(where: { $0.name == rule }) {
            FileHandle.standardError.write(Data("note: no rule named '\(rule)' in \(options.configPath); showing what the journal still holds for it\n".utf8))
        }
        let report: HistoryReport
        do {
            report = try HistoryReport.compute(rules: rules, rule: rule, since: since, until: until, states: state, names: names)
        } catch let error as HistoryArgumentError {
            throw ValidationError(error.message)
        }
        if json {
            print(try report.json())
        } else if csv {
            FileHandle.standardOutput.write(Data(report.csv().utf8))
        } else {
            print(report.text())
        }
    }
}
