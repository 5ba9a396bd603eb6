import Logging
import FerryAWS
import FerryConfig
import Foundation

/// One finding of `ferry doctor` (and of `ferry test-connection`): a subject, how it stands, and for a
/// warning or failure what to do about it.
public struct DoctorCheck: Codable, Sendable, Equatable {
    /// ok: works; warn: works now but will or may fail; fail: does not work.
    public enum Level: String, Codable, Sendable, Comparable {
        case ok, warn, fail
        public static func < (a: Level, b: Level) -> Bool { [.ok, .warn, .fail].firstIndex(of: a)! < [.ok, .warn, .fail].firstIndex(of: b)! }
    }

    /// What was checked: `rules`, `credentials`, `connector partner`, `folder /srv/ferry/out`, …
    public var subject: String
    public var level: Level
    /// What was found.
    public var message: String
    /// What to do, for a warning or failure.
    public var remedy: String?

    public init(_ subject: String, _ level: Level, _ message: String, remedy: String? = nil) {
        self.subject = subject
        self.level = level
        self.message = message
        self.remedy = remedy
    }

    /// `ok    subject: message`, and the remedy on its own line below.
    public var text: String {
        var line = level.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) + subject + ": " + message
        if let remedy { line += "\n      → " + remedy }
        return line
    }
}

/// The connector checks `ferry doctor` and `ferry test-connection` share: DescribeConnector (status,
/// type, egress) and TestConnection (the partner reached, its host key).
public enum ConnectorProbe {
    /// `ferry test-connection`: DescribeConnector then TestConnection for one connector of the rules,
    /// through a client of its own (the command line reaches AWS only through the engine).
    public static func testConnection(_ connector: Connector, logger: Logger) async throws -> [DoctorCheck] {
        let client = try AWSClient(configuration: Daemon.configuration(connector.aws), logger: logger)
        defer { client.shutdown() }
        let transfer = TransferClient(client: client)
        // DescribeConnector first: a PENDING, ERRORED or wrongly typed connector explains a failed test
        // better than the test itself, and the egress addresses are what a partner allow-lists.
        return [await describe(connector, transfer: transfer), await testConnection(connector, transfer: transfer)]
    }

    /// DescribeConnector: fail when the connector is PENDING, ERRORED or of another type than the rules
    /// say (work would be held); warn when it cannot be described (sending works without it).
    public static func describe(_ connector: Connector, transfer: TransferClient) async -> DoctorCheck {
        let subject = "connector \(connector.name) (\(connector.connectorId))"
        let description: ConnectorDescription
        do {
            description = try await transfer.describeConnector(connectorId: connector.connectorId)
        } catch {
            return DoctorCheck(subject, .warn, "DescribeConnector failed: \(error)",
                               remedy: "grant transfer:DescribeConnector to the credentials in use so ferry can tell a PENDING or ERRORED connector; check the connector_id")
        }
        var message = "\(description.type.uppercased()) connector, status \(description.status ?? "unknown")"
            + (description.errorMessage.map { " — \($0)" } ?? "")
        message += "; egress: \(description.egressType ?? "unknown")"
        if !description.egressIPAddresses.isEmpty { message += ", addresses \(description.egressIPAddresses.joined(separator: ", "))" }
        if let connections = description.maxConcurrentConnections { message += ", MaxConcurrentConnections \(connections)" }
        if let reason = description.holdReason(name: connector.name, rulesType: connector.type.rawValue) {
            return DoctorCheck(subject, .fail, message, remedy: reason)
        }
        return DoctorCheck(subject, .ok, message)
    }

    /// TestConnection (SFTP connectors; AWS tests no AS2 connector): the partner's host key when it answers.
    public static func testConnection(_ connector: Connector, transfer: TransferClient) async -> DoctorCheck {
        let subject = "connection \(connector.name) (\(connector.connectorId))"
        guard connector.type == .sftp else {
            return DoctorCheck(subject, .ok, "not tested: TestConnection is for SFTP connectors, this one is AS2")
        }
        do {
            let result = try await transfer.testConnection(connectorId: connector.connectorId)
            let hostKey = result.hostKey.map { "; partner host key: \($0)" } ?? ""
            if result.succeeded { return DoctorCheck(subject, .ok, "\(result.status)\(hostKey)") }
            return DoctorCheck(subject, .fail, "\(result.status)\(result.statusMessage.map { " — \($0)" } ?? "")\(hostKey)",
                               remedy: "check the partner's address and port in the connector's URL, that its host key is among the connector's TrustedHostKeys, and the user and key in the connector's secret")
        } catch {
            return DoctorCheck(subject, .fail, "TestConnection failed: \(error)",
                               remedy: "grant transfer:TestConnection to the credentials in use and check the connector_id")
        }
    }
}
