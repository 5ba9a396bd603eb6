import ArgumentParser
import FerryEngine
import Foundation

/// `ferry doctor`: everything that will fail, before it fails.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the rules, credentials, connectors, staging buckets, folders, inotify limits, disk space and clock.",
        discussion: """
            Each line is ok, warn or fail, with what to do. Makes real AWS calls: DescribeConnector, TestConnection \
            (at most one a second) and a PutObject + DeleteObject of a probe key `.ferry-doctor-probe-<random>` in each \
            staging location. Run it as the service user (`sudo -u ferry ferry doctor`) to check its credentials. \
            Exit status: 0 when nothing fails (warnings allowed), 1 otherwise.
            """
    )

    @OptionGroup var options: CommonOptions
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false
    @Option(name: .long, help: "The systemd unit to check folders against (default: $FERRY_UNIT, then the installed ferry.service).")
    var unit: String?

    func run() async throws {
        let logger = options.makeLogger(label: "ferry.doctor")
        let settings = DoctorReport.Options(configPath: options.configPath,
                                            unitPath: unit ?? ProcessInfo.processInfo.environment["FERRY_UNIT"])
        let report = await DoctorReport.run(settings, logger: logger)
        print(json ? try report.json() : report.text(), terminator: json ? "\n" : "")
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}
