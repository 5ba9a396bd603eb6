import FerryAWS
import FerryConfig
import Foundation
import Logging

/// Whether a connector may be given work now. Closed while DescribeConnector says the connector is
/// PENDING (being created or updated) or ERRORED, or is not of the type the rules say: work sent then
/// would only fail, count against each file's `retries` and end quarantined, while waiting costs nothing.
/// Both directions wait here before every Start* call of the connector.
final class ConnectorGate: Sendable {
    private let held = Locked<String?>(nil)

    /// Why work is held, or nil while the gate is open.
    var holdReason: String? { held.withLock { $0 } }

    func hold(_ reason: String) { held.withLock { $0 = reason } }

    func open() { held.withLock { $0 = nil } }

    /// Returns once the gate is open. Polled every 250 ms: it changes at most every few seconds (each
    /// DescribeConnector), and a sleeping waiter is cancelled at once by shutdown.
    func waitUntilOpen() async throws {
        while held.withLock({ $0 }) != nil { try await Task.sleep(for: .milliseconds(250)) }
    }
}

/// What `ferry status` shows of each connector: DescribeConnector's answer as last seen by the daemon,
/// published in `<state_dir>/connectors.json`.
public struct ConnectorState: Codable, Sendable, Equatable {
    /// The connector's name in the rules.
    public var name: String
    public var connectorId: String
    /// The type the rules give it (sftp | as2).
    public var type: String
    /// ACTIVE, PENDING or ERRORED; nil until the first DescribeConnector answered.
    public var status: String?
    public var errorMessage: String?
    public var egressType: String?
    public var egressIPAddresses: [String]
    public var maxConcurrentConnections: Int?
    /// Why work is held for this connector, if it is.
    public var held: String?
    /// The last DescribeConnector failure, if the last call failed (work is not held for that).
    public var describeError: String?
    public var checkedAt: Date?

    /// The file a state_dir's connector states are published in.
    public static func path(stateDir: String) -> String { (stateDir as NSString).appendingPathComponent("connectors.json") }

    /// What the daemon last published (empty when there is no file).
    public static func read(stateDir: String) -> [ConnectorState] {
        guard let data = FileManager.default.contents(atPath: path(stateDir: stateDir)) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return (try? decoder.decode([ConnectorState].self, from: data)) ?? []
    }
}

/// Asks DescribeConnector about every connector: at start, after each reload, every `activeInterval`
/// while the connector is ACTIVE and every `waitingInterval` while it is not, so that sending resumes
/// soon after a connector becomes ACTIVE. It opens and closes each connector's `ConnectorGate`, makes
/// `ferry status` degraded (health key `connector:<name>`) while a connector is held, and publishes
/// what it learned for `ferry status`.
final class ConnectorMonitor: Sendable {
    static let activeInterval: Duration = .seconds(300)
    static let waitingInterval: Duration = .seconds(5)

    private let stateDir: String
    private let health: DaemonHealth
    private let logger: Logger
    private let due = Locked<[String: ContinuousClock.Instant]>([:])
    private let states = Locked<[String: ConnectorState]>([:])

    init(stateDir: String, health: DaemonHealth, logger: Logger) {
        self.stateDir = stateDir
        self.health = health
        self.logger = logger
    }

    /// A reload: every connector is asked again at once (a new `connector_id` or `type` among them).
    func reloaded() { due.withLock { $0.removeAll() } }

    /// Runs until cancelled over the connector services `current` returns (those the rules in force name).
    func run(current: @escaping @Sendable () -> [String: ConnectorService]) async throws {
        while !Task.isCancelled {
            let contexts = current()
            let now = ContinuousClock.now
            var checked = false
            for (name, service) in contexts.sorted(by: { $0.key < $1.key }) {
                let next = due.withLock { $0[name] }
                if let next, next > now { continue }
                let interval = await check(name: name, context: service.context, gate: service.gate)
                due.withLock { $0[name] = ContinuousClock.now.advanced(by: interval) }
                checked = true
            }
            // Connectors the rules no longer name are forgotten (their health, their row in status).
            let gone = states.withLock { states in
                let names = states.keys.filter { contexts[$0] == nil }
                for name in names { states[name] = nil }
                return names
            }
            for name in gone { health.clear("connector:\(name)") }
            // Written only when something was asked or forgotten, not on every turn of the loop.
            if checked || !gone.isEmpty { publish() }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// One DescribeConnector; returns when to ask again.
    func check(name: String, context: ConnectorContext, gate: ConnectorGate) async -> Duration {
        let connector = context.connector
        var state = ConnectorState(name: name, connectorId: connector.connectorId, type: connector.type.rawValue,
                                   egressIPAddresses: [], checkedAt: Date())
        let description: ConnectorDescription
        do {
            description = try await context.transfer.describeConnector(connectorId: connector.connectorId)
        } catch {
            // Not a reason to hold work: the role may lack transfer:DescribeConnector, and sending
            // still works without it. Said once per distinct error, shown by status.
            let text = "\(error)"
            let previous = states.withLock { $0[name]?.describeError }
            if previous != text {
                logger.warning("DescribeConnector failed; sending goes on without knowing the connector's status",
                               metadata: ["connector": "\(name)", "connector.id": "\(connector.connectorId)", "error": "\(text)"])
            }
            state = states.withLock { $0[name] } ?? state
            state.describeError = text
            state.checkedAt = Date()
            states.withLock { $0[name] = state }
            return Self.waitingInterval * 6
        }
        state.status = description.status
        state.errorMessage = description.errorMessage
        state.egressType = description.egressType
        state.egressIPAddresses = description.egressIPAddresses
        state.maxConcurrentConnections = description.maxConcurrentConnections
        let held = description.holdReason(name: name, rulesType: connector.type.rawValue)
        state.held = held
        let before = states.withLock { states -> ConnectorState? in
            defer { states[name] = state }
            return states[name]
        }
        if let held {
            gate.hold(held)
            health.set("connector:\(name)", held)
            if before?.held != held {
                logger.warning("connector not usable; its work is held", metadata: ["connector": "\(name)", "connector.id": "\(connector.connectorId)",
                                                                                 "reason": "\(held)"])
            }
            return Self.waitingInterval
        }
        gate.open()
        health.clear("connector:\(name)")
        if let previous = before?.held {
            logger.notice("connector usable again; held work goes on", metadata: ["connector": "\(name)", "connector.id": "\(connector.connectorId)",
                                                                                "was": "\(previous)"])
        }
        return Self.activeInterval
    }

    /// Rewrites connectors.json (temporary file, then rename): status information only, so a failure
    /// (a full disk) is ignored; health.json carries the problems.
    private func publish() {
        let list = states.withLock { $0.values.sorted { $0.name < $1.name } }
        StateFile.writeJSON(list, to: ConnectorState.path(stateDir: stateDir))
    }
}

extension ConnectorDescription {
    /// Why the connector cannot take work, from its description; nil when it can.
    public func holdReason(name: String, rulesType: String) -> String? {
        let description = self
        if description.type != "unknown", description.type != rulesType {
            return "connector \(name) (\(description.connectorId)) is an \(description.type.uppercased()) connector in AWS, but the rules say `type: \(rulesType)`: correct `type` (or `connector_id`) in the rules file and reload"
        }
        switch description.status {
        case "PENDING"?:
            return "connector \(name) (\(description.connectorId)) is PENDING in AWS (being created or updated): its work waits until it is ACTIVE"
        case "ERRORED"?:
            let why = description.errorMessage.map { ": \($0)" } ?? ""
            return "connector \(name) (\(description.connectorId)) is ERRORED in AWS\(why); its work waits until it is ACTIVE again (see `aws transfer describe-connector --connector-id \(description.connectorId)`)"
        default:
            return nil
        }
    }
}
