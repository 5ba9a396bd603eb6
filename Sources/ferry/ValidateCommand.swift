import ArgumentParser
import FerryConfig
import FerryEngine
import Foundation

/// `ferry validate`: loads the rules file and reports every problem, as a compiler would.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a rules file and print every error with its line and column.",
        discussion: "Exits 0 when the file is valid (warnings go to stderr), 78 (EX_CONFIG) when it is not."
    )

    @Option(name: .long, help: "The rules file (default: $FERRY_CONFIG, then /etc/ferry/rules.yaml).")
    var config: String?

    @Argument(help: "The rules file, as an alternative to --config.")
    var path: String?

    /// sysexits.h's EX_CONFIG: the configuration is wrong.
    static let exitConfigError: Int32 = 78

    func validate() throws {
        if config != nil && path != nil && config != path {
            throw ValidationError("give the rules file either as --config or as an argument, not both")
        }
    }

    func run() throws {
        let file = path ?? config ?? ProcessInfo.processInfo.environment["FERRY_CONFIG"] ?? "/etc/ferry/rules.yaml"
        let result = RulesLoader.load(path: file, fileSystem: Daemon.fileSystem(of:))
        var standardError = ValidateErrorStream()
        for diagnostic in result.diagnostics {
            print(diagnostic, to: &standardError)
        }
        guard let rules = result.rules else {
            let count = result.errors.count
            print("\(file): \(count) \(count == 1 ? "error" : "errors"), not valid", to: &standardError)
            throw ExitCode(Self.exitConfigError)
        }
        print("\(file): OK — \(Self.counted(rules.connectors.count, "connector")), \(Self.counted(rules.outbound.count, "outbound rule")), \(Self.counted(rules.inbound.count, "inbound rule"))")
    }

    static func counted(_ count: Int, _ noun: String) -> String {
        "\(count) \(noun)\(count == 1 ? "" : "s")"
    }
}

/// Diagnostics go to stderr so that the summary on stdout stays one line a script can read.
private struct ValidateErrorStream: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}
