import FerryAWS
import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Testing

/// Issue 15, must-show 6 (inbound): listing → selection → retrieval → placement per transfer, a failed
/// retrieval retried, hostile names refused — the poller against `FakeConnector`, no emulator or sshd.
@Suite struct InboundFakeTests {
    struct Setup {
        let fake: FakeConnector
        let state: TempDirectory
        let inbox: TempDirectory
        let journal: Journal
        let poller: InboundPoller
        let metrics = CountingMetrics()
        let rules: Rules
        let settings: InboundSettings
        let logger: Logger

        init(fake: FakeConnector = FakeConnector(), trackTimeout: Duration = .seconds(1800)) throws {
            self.fake = fake
            state = try TempDirectory(prefix: "ferry-fake-in-state")
            inbox = try TempDirectory(prefix: "ferry-fake-inbox")
            var logger = Logger(label: "inbound-fake")
            logger.logLevel = .critical
            let yaml = FakeConnector.rulesHeader(stateDir: state.path) + FakeConnector.inboundRules(downloadTo: inbox.path)
            let loaded = RulesLoader.load(yaml: yaml, path: "test.yaml")
            rules = try #require(loaded.rules, "rules did not load: \(loaded.errors.map(\.description))")
            journal = try Journal(directory: state.path, logger: logger)
            var settings = InboundSettings(stateDirectory: state.path)
            settings.trackTimeout = trackTimeout
            self.settings = settings
            self.logger = logger
            poller = Self.poller(fake: fake, connectorId: FakeConnector.connectorID, rules: rules, journal: journal, metrics: metrics,
                                 settings: settings, logger: logger)
        }

        static func poller(fake: FakeConnector, connectorId: String, rules: Rules, journal: Journal, metrics: CountingMetrics,
                           settings: InboundSettings, logger: Logger) -> InboundPoller {
            let connection = InboundConnection(connectorId: connectorId, s3: fake, transfer: fake, pace: {})
            return InboundPoller(rules: rules.inbound, connections: ["partner": connection], journal: journal, metrics: metrics,
                                 logger: logger, clock: SystemInboundClock(), timeZone: .current, settings: settings, crashHook: nil)
        }

        /// The poller of a restarted ferry on the same journal, whose rules now name `connectorId`.
        func restarted(connectorId: String) -> InboundPoller {
            Self.poller(fake: fake, connectorId: connectorId, rules: rules, journal: journal, metrics: metrics, settings: settings, logger: logger)
        }

        func inboxFile(_ name: String) -> Data? { FileManager.default.contents(atPath: inbox.path + "/" + name) }
        func inboxNames() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: inbox.path).sorted() }
    }

    static func name(_ index: Int) -> String { String(format: "r%02d.csv", index) }

    @Test func aPollListsSelectsRetrievesAndPlacesEachFileOnce() async throws {
        let s = try Setup()
        for index in 0..<25 { s.fake.putOnPartner("/out/\(Self.name(index))", Data("report \(index)".utf8)) }
        s.fake.putOnPartner("/out/notes.txt", Data("not a csv".utf8))
        let report = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(report.error == nil)
        #expect(report.listed == 26)
        #expect(report.filteredOut == 1, "notes.txt does not match include")
        #expect(report.requested == 25)
        #expect(report.retrieved == 25)
        #expect(report.downloaded == 25)
        #expect(report.finished == 25)
        #expect(s.fake.startCalls.map(\.count).sorted() == [5, 10, 10], "retrievals of at most 10 paths")
        for index in 0..<25 {
            #expect(s.inboxFile(Self.name(index)) == Data("report \(index)".utf8))
            #expect(s.fake.object("inbound", "reports/\(Self.name(index))") == Data("report \(index)".utf8))
        }
        #expect(try s.inboxNames().count == 25)

        let again = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(again.requested == 0, "a version is retrieved once")
        #expect(s.fake.startCalls.count == 3)
    }

    /// The first transfer's files are placed while the poll's last transfer is still running: the fake
    /// keeps the last transfer QUEUED until a file of the first one is in download_to. Before issue 15's
    /// streaming, placement waited for every transfer, so the last one never finished within the poll.
    @Test func eachTransfersFilesArePlacedWhileLaterTransfersRun() async throws {
        let fake = FakeConnector()
        let s = try Setup(fake: fake, trackTimeout: .seconds(20))
        for index in 0..<30 { fake.putOnPartner("/out/\(Self.name(index))", Data("report \(index)".utf8)) }
        let inbox = s.inbox.path
        let firstTransfer = (0..<10).map { Self.name($0) }
        fake.state.withLock {
            $0.holdWhile = { transferID in
                transferID == "t-3" && !firstTransfer.contains { FileManager.default.fileExists(atPath: inbox + "/" + $0) }
            }
        }
        let report = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(report.error == nil)
        #expect(report.retrieved == 30, "\(report.summary)")
        #expect(report.downloaded == 30, "\(report.summary)")
        #expect(report.warnings.isEmpty, "\(report.warnings)")
    }

    /// A retrieval still running when ferry stops is followed, after the restart, under the connector id
    /// it was started with — even when the rules now name another one (issue 15: "transfers already
    /// submitted finish tracking against the connector id they were sent with"). Asked under the new id,
    /// AWS does not know the transfer: its files would count as failed and be retrieved a second time.
    @Test func aRetrievalRunningAcrossARestartIsTrackedUnderTheConnectorIdItWasStartedWith() async throws {
        let fake = FakeConnector()
        let s = try Setup(fake: fake, trackTimeout: .milliseconds(300))
        for index in 0..<3 { fake.putOnPartner("/out/\(Self.name(index))", Data("report \(index)".utf8)) }
        fake.state.withLock { $0.holdWhile = { _ in true } }
        let first = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(first.retrieved == 0, "the transfer is still queued when the first run stops following it")
        #expect(fake.startCalls.count == 1)

        fake.state.withLock { $0.holdWhile = nil }
        let restarted = s.restarted(connectorId: "c-0000000000000new")
        let second = try #require(await restarted.pollNow(rule: "reports"))
        #expect(second.failed == 0, "\(second.summary)")
        #expect(fake.startCalls.count == 1, "retrieved once, not again after the restart: \(fake.startCalls)")
        #expect(try s.inboxNames() == (0..<3).map { Self.name($0) })
    }

    @Test func aFailedRetrievalIsRetriedByTheNextPoll() async throws {
        let s = try Setup()
        for index in 0..<3 { s.fake.putOnPartner("/out/\(Self.name(index))", Data("report \(index)".utf8)) }
        _ = s.fake.state.withLock { $0.failNextRetrieval.insert("/out/\(Self.name(1))") }
        let first = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(first.retrieved == 2)
        #expect(first.failed == 1)
        #expect(s.inboxFile(Self.name(1)) == nil)
        #expect(s.metrics.value("ferry_inbound_retrieve_failures_total") == 1)
        let second = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(second.requested == 1, "only the failed file is asked for again")
        #expect(second.retrieved == 1)
        #expect(s.inboxFile(Self.name(1)) == Data("report 1".utf8))
        #expect(try s.inboxNames() == (0..<3).map { Self.name($0) })
    }

    /// A StartFileTransfer refused for the connector's sake — denied credentials (AccessDenied, an expired
    /// token) or a connector id AWS does not know — is not the file's failure: the retrieval is held,
    /// spending none of the file's attempts, and goes once a call is allowed. More refusals than a file
    /// has attempts, then the fixed connector still brings it.
    @Test(arguments: [FakeConnector.Answer.deny, .unknownConnector])
    func aRetrievalRefusedForTheConnectorIsHeldWithoutSpendingAnAttempt(_ answer: FakeConnector.Answer) async throws {
        let s = try Setup()
        s.fake.putOnPartner("/out/\(Self.name(0))", Data("report 0".utf8))
        let refusals = InboundSettings(stateDirectory: s.state.path).maxAttempts + 1
        s.fake.script(Array(repeating: answer, count: refusals))
        for _ in 0..<refusals {
            let report = try #require(await s.poller.pollNow(rule: "reports"))
            #expect(report.error != nil, "the poll says why nothing came")
            #expect(report.failed == 0, "a refusal for the connector is not the file's failure: \(report.summary)")
        }
        #expect(try s.journal.inboundFiles(in: [.failed], rule: "reports").isEmpty)
        let allowed = try #require(await s.poller.pollNow(rule: "reports"))
        #expect(allowed.retrieved == 1, "\(allowed.summary)")
        #expect(s.inboxFile(Self.name(0)) == Data("report 0".utf8))
        #expect(s.fake.startCalls.count == refusals + 1, "one StartFileTransfer per poll")
    }

    @Test func hostileNamesAreRefusedAndNeverRequestedOrWritten() async throws {
        let s = try Setup()
        s.fake.putOnPartner("/out/ok.csv", Data("fine".utf8))
        let stamp = "2026-01-01T00:00:00Z"
        let date = ISO8601DateFormatter().date(from: stamp)
        let hostile = ["/out/../etc.csv", "/out/a\u{0}b.csv", "/out/sub/x.csv", "/out/\u{202E}vsc.exe.csv", "/other/y.csv"]
        let listing = DirectoryListing(files: (hostile + ["/out/ok.csv"]).map {
            DirectoryListing.Entry(filePath: $0, size: $0 == "/out/ok.csv" ? 4 : 1, modifiedText: stamp, modified: date)
        })
        s.fake.state.withLock { $0.partner["/out/ok.csv"]?.mtime = date ?? Date() }
        let report = await s.poller.poll(ruleNamed: "reports", listing: { _ in listing })
        #expect(report.error == nil)
        #expect(report.refused == hostile.count, "\(report.summary)")
        #expect(report.retrieved == 1)
        #expect(s.fake.startCalls.flatMap { $0 } == ["/out/ok.csv"], "no hostile name is ever asked for")
        #expect(try s.inboxNames() == ["ok.csv"])
        #expect(!FileManager.default.fileExists(atPath: (s.inbox.path as NSString).deletingLastPathComponent + "/etc.csv"))
        #expect(s.metrics.value("ferry_inbound_refused_total") == Double(hostile.count))
    }
}
