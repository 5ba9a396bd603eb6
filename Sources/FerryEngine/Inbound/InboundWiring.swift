import FerryConfig
import FerryStore
import Foundation
import Logging

/// The daemon's metrics take the poller's counters as they are.
extension Metrics: InboundMetrics {}

extension InboundConnection {
    /// The connector's clients, sharing its rate limiter and in-flight budget with outbound:
    /// StartDirectoryListing and StartFileTransfer from both directions draw on one `requests_per_second`,
    /// and their transfers on one `max_in_flight`.
    init(_ context: ConnectorContext) {
        let limiter = context.limiter
        let inFlight = context.inFlight
        let gate = context.gate
        // Every Start* call of a poll first waits for the connector to be usable (ConnectorMonitor):
        // a PENDING or ERRORED connector is not listed, retrieved from, or tidied.
        self.init(connectorId: context.connector.connectorId, s3: context.s3, transfer: context.transfer,
                  pace: {
                      try await gate.waitUntilOpen()
                      try await limiter.acquire()
                  },
                  inFlight: InFlightGate(enter: { try await inFlight.wait() }, take: { await inFlight.take() }, leave: { await inFlight.signal() }))
    }
}

extension InboundPoller {
    /// The poller for `rules`, over the daemon's per-connector contexts (the same ones outbound uses).
    convenience init(rules: [InboundRule], contexts: [String: ConnectorContext], journal: Journal, metrics: Metrics, logger: Logger) {
        self.init(rules: rules, connections: contexts.mapValues(InboundConnection.init), journal: journal, metrics: metrics, logger: logger)
    }

    /// SIGHUP, over the daemon's new per-connector contexts.
    func reload(rules: [InboundRule], contexts: [String: ConnectorContext]) {
        reload(rules: rules, connections: contexts.mapValues(InboundConnection.init))
    }
}
