import ArgumentParser
import FerryEngine

@main
/// The `ferry` command line: thin, parses arguments and calls FerryEngine.
struct Ferry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "Moves business files to and from trading partners through AWS Transfer Family connectors.",
        version: FerryVersion.string,
        subcommands: [RunCommand.self, ValidateCommand.self, StatusCommand.self, HistoryCommand.self, ExplainCommand.self, DoctorCommand.self, RetryCommand.self, PollCommand.self, TestConnectionCommand.self, VersionCommand.self]
    )
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print ferry's version.")
    func run() throws {
        print("ferry \(FerryVersion.string)")
    }
}
