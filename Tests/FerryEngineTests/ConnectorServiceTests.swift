import FerryAWS
import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import FerryWatch
import Foundation
import Logging
import Synchronization
import Testing

/// Issue 15: one connector service per connector, shared by both directions — one tracker of the
/// connector's transfers and one in-flight budget — against `FakeConnector`.
@Suite struct ConnectorServiceTests {
    /// An outbound and an inbound rule on one connector, both directions over one `ConnectorService`.
    struct Setup: @unchecked Sendable {
        let fake = FakeConnector()
        let outbound: OutboundFakeHarness
        let inbox: TempDirectory
        let service: ConnectorService
        let poller: InboundPoller
        /// Transfers (by the fake's id) answered QUEUED until the test lets them go.
        let held = Locked<Set<String>>([])

        init(maxInFlight: Int) throws {
            outbound = try OutboundFakeHarness(fake: fake, maxInFlight: maxInFlight, maxFiles: 1, maxWait: "10ms")
            inbox = try TempDirectory(prefix: "ferry-fake-svc-inbox")
            let yaml = FakeConnector.rulesHeader(stateDir: outbound.state.path, connectorLines: ["max_in_flight: \(maxInFlight)"])
                + FakeConnector.inboundRules(downloadTo: inbox.path)
            let loaded = RulesLoader.load(yaml: yaml, path: "test.yaml")
            let rules = try #require(loaded.rules, "rules did not load: \(loaded.errors.map(\.description))")
            service = try outbound.makeService()
            poller = InboundPoller(rules: rules.inbound, connections: ["partner": InboundConnection(service)], journal: outbound.journal,
                                   metrics: CountingMetrics(), logger: outbound.logger, clock: SystemInboundClock(), timeZone: .current,
                                   settings: InboundSettings(stateDirectory: outbound.state.path), crashHook: nil)
            let held = self.held
            fake.state.withLock { $0.holdWhile = { id in held.withLock { $0.contains(id) } } }
        }

        /// Starts a send (transfer t-1, held QUEUED) and then a poll that retrieves one file, and waits
        /// until the send's transfer has been looked at three times (about 1.75 s on the head's schedule).
        func sendThenPoll() async throws -> Task<PollReport?, Never> {
            held.withLock { $0 = ["t-1"] }
            try outbound.drop(1)
            let fake = fake
            #expect(await eventually(timeout: 60, interval: 0.01) { fake.startCalls.count == 1 }, "the outbound transfer t-1 started")
            fake.putOnPartner("/out/r.csv", Data("report".utf8))
            let poller = poller
            let poll = Task { await poller.pollNow(rule: "reports") }
            #expect(await eventually(timeout: 60, interval: 0.01) { fake.looks(at: "t-1") >= 3 })
            return poll
        }

        /// Lets the send finish and waits for both directions to deliver.
        func finish(_ poll: Task<PollReport?, Never>) async throws {
            held.withLock { $0 = [] }
            let report = try #require(await poll.value)
            #expect(report.error == nil && report.downloaded == 1, "\(report.summary)")
            let journal = outbound.journal
            #expect(await eventually(timeout: 60, interval: 0.01) { (try? journal.outboundFiles(in: [.done]).count) == 1 })
            #expect(fake.partnerFile("/in/f00.edi") != nil)
            #expect(FileManager.default.contents(atPath: inbox.path + "/r.csv") == Data("report".utf8))
            let service = service
            #expect(await eventually(timeout: 60, interval: 0.01) { service.trackedCount == 0 }, "both transfers' tracking ended")
        }

        /// Runs the watcher, the outbound pipeline and the connector service while `body` runs.
        func running(_ body: @escaping @Sendable () async throws -> Void) async throws {
            let (watcher, pipeline, service) = try outbound.makePipeline(service: service)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await watcher.run() }
                group.addTask { try await pipeline.run() }
                group.addTask { await service.run() }
                try await body()
                group.cancelAll()
            }
        }
    }

    /// The connector works through its queue in order, whichever direction submitted each transfer: while
    /// the outbound transfer at the head is unfinished, the inbound one behind it is not looked at (its
    /// first look is due in 30 s), and once the head finishes it is looked at at once — one
    /// ListFileTransferResults for it. Before the service, inbound polled its own transfers every 200 ms.
    @Test func oneTrackerFollowsBothDirectionsHeadOfLine() async throws {
        let s = try Setup(maxInFlight: 10)
        try await s.running {
            let poll = try await s.sendThenPoll()
            let fake = s.fake
            #expect(await eventually(timeout: 60, interval: 0.01) { fake.startCalls.count == 2 }, "the inbound transfer t-2 started")
            #expect(s.fake.looks(at: "t-2") == 0, "the inbound transfer behind the unfinished head is not looked at yet")
            try await s.finish(poll)
        }
        #expect(s.fake.looks(at: "t-2") == 1, "looked at once, as soon as the head finished")
    }

    /// max_in_flight counts both directions' transfers: with one slot taken by an unfinished send, a
    /// retrieval waits — its StartFileTransfer is not made — until the send finishes.
    @Test func maxInFlightIsSharedByBothDirections() async throws {
        let s = try Setup(maxInFlight: 1)
        try await s.running {
            let poll = try await s.sendThenPoll()
            #expect(s.fake.startCalls.count == 1, "the retrieval waits for the send's in-flight slot")
            try await s.finish(poll)
        }
        #expect(s.fake.startCalls.count == 2)
        #expect(s.fake.mostUnfinished == 1, "never more than max_in_flight transfers unfinished at the connector")
    }
}
