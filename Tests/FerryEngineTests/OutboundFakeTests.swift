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

/// The outbound pipeline (a real watcher on a temporary folder, a real journal) against `FakeConnector`:
/// the whole stage logic, with the connector's answers under the test's control.
final class OutboundFakeHarness: @unchecked Sendable {
    let watch: TempDirectory
    let state: TempDirectory
    let fake: FakeConnector
    let journal: Journal
    let rules: Rules
    let logger: Logger
    /// Files per rule the pipeline holds in memory (`OutboundBacklog`).
    let window: Int

    init(fake: FakeConnector = FakeConnector(), maxInFlight: Int = 100, retries: Int = 2, maxFiles: Int = 10, maxWait: String = "50ms",
         onInDoubt: String = "hold", window: Int = OutboundBacklog.defaultWindow) throws {
        self.fake = fake
        self.window = window
        watch = try TempDirectory(prefix: "ferry-fake-out")
        state = try TempDirectory(prefix: "ferry-fake-state")
        var logger = Logger(label: "outbound-fake")
        logger.logLevel = .critical
        self.logger = logger
        let yaml = FakeConnector.rulesHeader(stateDir: state.path, connectorLines: [
            "staging: s3://staging/out/", "max_in_flight: \(maxInFlight)", "requests_per_second: 1000", "on_in_doubt: \(onInDoubt)"]) + """
            outbound:
              - name: docs
                watch: \(watch.path)
                connector: partner
                remote_directory_path: /in
                settle: 50ms
                batch: { max_files: \(maxFiles), max_wait: \(maxWait) }
                retries: \(retries)
                after_send: archive

            """
        let loaded = RulesLoader.load(yaml: yaml, path: "test.yaml")
        rules = try #require(loaded.rules, "rules did not load: \(loaded.errors.map(\.description))")
        journal = try Journal(directory: state.path, logger: logger)
    }

    /// Writes `count` files named `f00.edi`… into the watched folder.
    func drop(_ count: Int, prefix: String = "f") throws {
        for index in 0..<count {
            try Data("\(prefix) \(index)\n".utf8).write(to: URL(fileURLWithPath: watch.path + "/" + Self.name(index, prefix: prefix)))
        }
    }

    /// The name `drop` gives file `index`.
    static func name(_ index: Int, prefix: String = "f") -> String { String(format: "\(prefix)%02d.edi", index) }

    func count(_ state: OutboundState) -> Int {
        (try? journal.outboundFiles(in: [state]).count) ?? 0
    }

    /// Runs the watcher and the pipeline until `done` holds (checked every 10 ms; a deadline, not a
    /// measurement), then stops them as SIGTERM does.
    func run(until done: @escaping @Sendable () -> Bool) async throws -> Bool {
        let (watcher, pipeline, service) = try makePipeline()
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await watcher.run()) != nil }
            group.addTask { (try? await pipeline.run()) != nil }
            group.addTask {
                await service.run()
                return false
            }
            group.addTask { await eventually(timeout: 60, interval: 0.01) { done() } }
            let reached = await group.next() ?? false
            group.cancelAll()
            await group.waitForAll()
            return reached
        }
    }

    /// The connector's service over the fake, as the daemon makes it (its own budgets), not yet running.
    func makeService() throws -> ConnectorService {
        let connector = try #require(rules.connectors.first)
        return ConnectorService(ConnectorContext(connector: connector, s3: fake, transfer: fake),
                                limiter: RateLimiter(perSecond: connector.requestsPerSecond), health: nil, logger: logger)
    }

    /// A watcher on the folder, the connector's service and the pipeline over them, not yet running.
    func makePipeline(service given: ConnectorService? = nil) throws -> (FolderWatcher, OutboundPipeline, ConnectorService) {
        let service = try given ?? makeService()
        let watcher = FolderWatcher(rules: Daemon.watchRules(rules), logger: logger)
        let pipeline = OutboundPipeline(rules: rules.outbound, connectors: ["partner": service], journal: journal, watcher: watcher,
                                        metrics: Metrics(), logger: logger, retryBase: .milliseconds(10), backlogWindow: window)
        return (watcher, pipeline, service)
    }

    func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: watch.path + "/" + relative) }
}

/// Issue 15, must-show 6 (outbound): batching, retries, quarantine, in-doubt batches, tracking and the
/// in-flight budget, against a fake connector — no emulator, no sshd, no network.
@Suite struct OutboundFakeTests {
    @Test func filesGoInBatchesOfAtMostTenAndEachArrivesOnce() async throws {
        // max_wait is an hour: only full batches can go within the test's deadline.
        let h = try OutboundFakeHarness(maxWait: "1h")
        try h.drop(20)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.done]).count) == 20 })
        let calls = h.fake.startCalls
        #expect(calls.map(\.count) == [10, 10], "full batches go at once, each file in one StartFileTransfer")
        for index in 0..<20 {
            let name = String(format: "f%02d.edi", index)
            #expect(h.fake.partnerFile("/in/\(name)") == Data("f \(index)\n".utf8), "\(name) on the partner")
            #expect(!h.exists(name), "\(name) archived after the send")
        }
    }

    @Test func aPartBatchGoesAfterMaxWait() async throws {
        let h = try OutboundFakeHarness(maxWait: "100ms")
        try h.drop(3)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.done]).count) == 3 })
        #expect(h.fake.startCalls.map(\.count) == [3], "three files, one batch, sent when max_wait passed")
    }

    @Test func aThrottledSubmissionIsSentAgainWithoutSpendingAnAttempt() async throws {
        let fake = FakeConnector()
        fake.script([.throttle(retryAfterSeconds: 0.05), .throttle(retryAfterSeconds: 0.05)])
        let h = try OutboundFakeHarness(fake: fake, retries: 0)
        try h.drop(2)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.done]).count) == 2 })
        #expect(fake.startCalls.count == 3, "refused twice before any work, then started")
        #expect(h.count(.quarantined) == 0, "with retries: 0 a throttled call costs no attempt")
        #expect(fake.partnerFile("/in/f00.edi") != nil && fake.partnerFile("/in/f01.edi") != nil)
    }

    @Test func aRefusedSubmissionCountsTowardRetriesThenQuarantines() async throws {
        let fake = FakeConnector()
        fake.script([.refuse, .refuse, .refuse, .refuse])
        let h = try OutboundFakeHarness(fake: fake, retries: 1)
        try h.drop(1)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.quarantined]).count) == 1 })
        #expect(fake.startCalls.count == 2, "the first attempt and one retry")
        #expect(h.exists(".ferry/failed/f00.edi"))
        let reason = try String(contentsOfFile: h.watch.path + "/.ferry/failed/f00.edi.reason", encoding: .utf8)
        #expect(reason.contains("ValidationException"), "\(reason)")
        #expect(fake.partnerFile("/in/f00.edi") == nil)
    }

    @Test func aFileThePartnerFailsIsRetriedThenQuarantined() async throws {
        let fake = FakeConnector()
        fake.state.withLock { $0.failSends["f00.edi"] = "REMOTE_PERMISSION_DENIED" }
        let h = try OutboundFakeHarness(fake: fake, retries: 2)
        try h.drop(2)
        let journal = h.journal
        #expect(try await h.run {
            (try? journal.outboundFiles(in: [.quarantined]).count) == 1 && (try? journal.outboundFiles(in: [.done]).count) == 1
        })
        let sendsOfFailing = fake.startCalls.filter { $0.contains { $0.hasSuffix("/f00.edi") } }.count
        #expect(sendsOfFailing == 3, "the first send and two retries, then quarantine")
        #expect(fake.startCalls.filter { $0.contains { $0.hasSuffix("/f01.edi") } }.count == 1, "the good file is sent once")
        #expect(h.exists(".ferry/failed/f00.edi"))
        let reason = try String(contentsOfFile: h.watch.path + "/.ferry/failed/f00.edi.reason", encoding: .utf8)
        #expect(reason.contains("REMOTE_PERMISSION_DENIED"), "\(reason)")
        #expect(!h.exists("f01.edi") && fake.partnerFile("/in/f01.edi") != nil)
    }

    @Test func anUnknownOutcomeIsHeldInDoubtAndNeverResentSilently() async throws {
        let fake = FakeConnector()
        fake.script([.lostAnswer])
        let h = try OutboundFakeHarness(fake: fake, retries: 5, onInDoubt: "hold")
        try h.drop(2)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.inDoubt]).count) == 2 })
        #expect(fake.startCalls.count == 1, "sent once; the lost answer is not retried below the journal")
        #expect(h.exists(".ferry/in-doubt/f00.edi") && h.exists(".ferry/in-doubt/f01.edi"))
        #expect(h.count(.done) == 0)
    }

    /// A stop must end every loop of the pipeline, also one waiting for a max_in_flight slot that no
    /// transfer will free (the tracker stops too). Found by JournalStallTests under load: the submit
    /// loop waited for ever, and the daemon's stop ran into the ServiceGroup's 30 s bound.
    @Test func aStopWhileABatchWaitsForAnInFlightSlotEndsThePipeline() async throws {
        let fake = FakeConnector()
        fake.state.withLock { $0.holdWhile = { _ in true } }  // no transfer ever finishes
        let h = try OutboundFakeHarness(fake: fake, maxInFlight: 1, maxFiles: 1, maxWait: "10ms")
        try h.drop(3)
        let (watcher, pipeline, service) = try h.makePipeline()
        let ended = Locked(false)
        let running = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await watcher.run() }
                group.addTask { try? await pipeline.run() }
                group.addTask { await service.run() }
            }
            ended.withLock { $0 = true }
        }
        // One transfer holds the only slot; the other two files are uploaded and wait for it.
        #expect(await eventually(timeout: 60, interval: 0.01) {
            fake.startCalls.count == 1 && fake.listObjectsCount(bucket: "staging", prefix: "out/") == 3
        })
        try await Task.sleep(for: .milliseconds(100))
        running.cancel()
        #expect(await eventually(timeout: 60, interval: 0.01) { ended.withLock { $0 } }, "the pipeline did not stop")
        #expect(fake.startCalls.count == 1, "nothing more was sent while stopping")
    }

    @Test func transfersInFlightNeverExceedMaxInFlight() async throws {
        // Each transfer is QUEUED at its first look, so transfers pile up unless the budget holds them.
        let fake = FakeConnector(looksUntilDone: 2)
        let h = try OutboundFakeHarness(fake: fake, maxInFlight: 2, maxFiles: 2, maxWait: "10ms")
        try h.drop(12)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.done]).count) == 12 })
        #expect(fake.startCalls.count >= 6)
        #expect(fake.mostUnfinished == 2, "max_in_flight 2: never more than two transfers unfinished at the connector")
    }
}

/// A StartFileTransfer refused for the connector itself — denied credentials, or a connector id AWS
/// does not know (ResourceNotFoundException) — is not the batch's failure: the batch is held and sent
/// once a call is allowed, without spending any of the file's `retries` (here none).
@Suite struct OutboundConnectorRefusalTests {
    @Test(arguments: [FakeConnector.Answer.deny, .unknownConnector])
    func aSendRefusedForTheConnectorIsHeldNotQuarantined(_ answer: FakeConnector.Answer) async throws {
        let fake = FakeConnector()
        fake.script([answer, answer])
        let h = try OutboundFakeHarness(fake: fake, retries: 0)
        try h.drop(1)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.done]).count) == 1 })
        #expect(fake.startCalls.count == 3, "refused twice, then sent")
        #expect(h.count(.quarantined) == 0, "with retries: 0 a refusal for the connector costs no attempt")
        #expect(fake.partnerFile("/in/f00.edi") == Data("f 0\n".utf8))
    }
}
