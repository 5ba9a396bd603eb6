import FerryConfig
import FerryStore
import Foundation
import Logging

/// The daemon's metrics take the poller's counters as they are.
extension Metrics: InboundMetrics {}

extension InboundConnection {
    /// The connection of a connector service, with the settings it has now: StartDirectoryListing and
    /// StartFileTransfer from both directions draw on one `requests_per_second`, their transfers on one
    /// `max_in_flight`, and one tracker follows them all.
    init(_ service: ConnectorService) {
        let context = service.context
        self.init(connectorId: context.connector.connectorId, s3: context.s3, transfer: context.transfer, service: service)
    }
}

extension InboundPoller {
    /// The poller for `rules`, over the daemon's connector services (the same ones outbound uses).
    convenience init(rules: [InboundRule], services: [String: ConnectorService], journal: Journal, metrics: Metrics, logger: Logger) {
        self.init(rules: rules, connections: services.mapValues(InboundConnection.init), journal: journal, metrics: metrics, logger: logger)
    }

    /// SIGHUP, over the daemon's connector services (their settings already updated).
    func reload(rules: [InboundRule], services: [String: ConnectorService]) {
        reload(rules: rules, connections: services.mapValues(InboundConnection.init))
    }
}
