import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Logging
import Synchronization
import Testing
import FerrySystem

/// Retention's promise (#16, must show 1): with `retention` lowered, waves of files keep the journal's row
/// count and size bounded, and a `keep` rule's files still on disk stay known, so none is sent again.
///
/// The minimum `retention` is 1 h, so time is the journal's injectable clock (`Journal(now:)`) and the
/// pruner's, moved by an hour per wave: the test takes seconds, not a day. The files are real files on
/// disk, and "known" is the very question the daemon's watcher asks (`Journal.isKnown`).
struct JournalRetentionTests {
    final class Clock: Sendable {
        private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { current.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    struct Version {
        var path: String
        var version: FileVersion
    }

    static func write(_ path: String, bytes: Int) throws -> Version {
        try Data(repeating: 0x41, count: bytes).write(to: URL(fileURLWithPath: path))
        var info = stat()
        guard lstat(path, &info) == 0 else { throw CocoaError(.fileReadUnknown) }
        return Version(path: path, version: FileVersion(info))
    }

    /// Journals `versions` for `rule` and takes them to `done` in batches of ten, as the pipeline does.
    static func send(_ versions: [Version], rule: String, root: String, journal: Journal, wave: Int) throws {
        for (index, chunk) in stride(from: 0, to: versions.count, by: 10).map({ Array(versions[$0..<min($0 + 10, versions.count)]) }).enumerated() {
            let rows = try journal.recordDetected(chunk.map {
                NewOutboundFile(rule: rule, path: $0.path, relativePath: String($0.path.dropFirst(root.count + 1)),
                                version: $0.version, remoteDirectory: "/in")
            })
            try journal.markStaged(rows.map { Journal.StagedCopy(id: $0.id, bucket: "staging", key: "out/\($0.relativePath)", checksum: "c") })
            let batch = try journal.createBatch(rule: rule, connector: "acme", connectorID: "c-1", remoteDirectory: "/in", fileIDs: rows.map(\.id))
            try journal.markSubmitted(batch: batch, transferID: "t-\(rule)-\(wave)-\(index)")
            try journal.recordOutcomes(batch: batch, Dictionary(uniqueKeysWithValues: rows.map { ($0.id, FileOutcome.completed) }))
            try journal.markDone(rows.map(\.id))
        }
    }

    @Test func wavesKeepTheJournalBoundedAndKeptFilesKnown() async throws {
        let state = try TempDirectory(prefix: "ferry-retention-state")
        let kept = try TempDirectory(prefix: "ferry-retention-kept")
        let archived = try TempDirectory(prefix: "ferry-retention-archived")
        let clock = Clock()
        var logger = Logger(label: "retention-test")
        logger.logLevel = .warning
        let journal = try Journal(directory: state.path, logger: logger, now: { clock.now })
        let rules = Rules(stateDir: state.path, retention: .seconds(2 * 3600), aws: AWSSettings(region: "us-east-1"), connectors: [],
                          outbound: [try OutboundRule(name: "kept", watch: kept.path, connector: "acme", afterSend: .keep),
                                     try OutboundRule(name: "archived", watch: archived.path, connector: "acme", afterSend: .archive)])
        let pruner = JournalPruner(journal: journal, rules: { rules }, logger: logger, now: { clock.now }, batchSize: 50, pause: .zero)

        // Sent in the first wave and never touched again: older than retention from wave 3 on, and still
        // the only thing that stops the watcher sending it again.
        let forever = try (0..<5).map { try Self.write(kept.path + "/forever-\($0).csv", bytes: 100) }
        try Self.send(forever, rule: "kept", root: kept.path, journal: journal, wave: 0)

        var keptOnDisk: [[Version]] = []
        var rows: [Int] = []
        var sizes: [Int64] = []
        var stepped = false
        for wave in 1...12 {
            // The keep rule's application removes its files three waves later, so for a wave the rows are old and the files still there; the archive rule's files leave the folder at once.
            let keptWave = try (0..<20).map { try Self.write(kept.path + "/w\(wave)-\($0).csv", bytes: 100) }
            try Self.send(keptWave, rule: "kept", root: kept.path, journal: journal, wave: wave)
            keptOnDisk.append(keptWave)
            if keptOnDisk.count > 3 {
                for version in keptOnDisk.removeFirst() { try FileManager.default.removeItem(atPath: version.path) }
            }
            let archivedWave = try (0..<60).map { try Self.write(archived.path + "/w\(wave)-\($0).edi", bytes: 100) }
            try Self.send(archivedWave, rule: "archived", root: archived.path, journal: journal, wave: wave)
            for version in archivedWave { try FileManager.default.removeItem(atPath: version.path) }

            clock.advance(3600)
            let report = try await pruner.pass()
            // Small transactions, never one big DELETE: no step takes more than the step size (50 rows).
            #expect(report.outboundFiles <= report.steps * 50, "wave \(wave): \(report.outboundFiles) rows in \(report.steps) steps")
            stepped = stepped || (report.outboundFiles > 50 && report.steps > 1)
            let figures = try journal.storageFigures()
            #expect(figures.freePages == 0, "wave \(wave): freed pages are given back")
            rows.append(figures.outboundRows)
            sizes.append(figures.bytes)

            // Every kept file still on disk — the oldest included — is still known: the watcher sends none again.
            for version in forever + keptOnDisk.flatMap({ $0 }) {
                #expect(try journal.isKnown(path: version.path, version: version.version, doneCounts: true),
                        "wave \(wave): \(version.path) would be sent again")
            }
        }
        // Steady state from wave 4: two hours of waves (80 rows each), the older kept files still on disk, and `forever`.
        #expect(rows[3...].allSatisfy { $0 == rows[3] }, "rows per wave: \(rows)")
        #expect(rows[3] <= 2 * 80 + 5 + 40, "rows per wave: \(rows)")
        #expect(sizes[11] <= sizes[4] + 8192, "journal bytes per wave: \(sizes)")
        #expect(try journal.batches(in: .finished).count <= 3 * 8, "batches go with their files")
        // How long a step holds the journal is measured by bench/journal, not here (no timing thresholds in unit tests).
        #expect(stepped, "some pass pruned more rows than one step takes, in several steps")
    }

    /// The pruner waits an hour between passes; with a retention lowered for a test it must come back
    /// within the retention, or a 15-minute soak would never see a second pass.
    @Test func thePrunerComesBackWithinTheRetention() {
        #expect(JournalPruner.nextPass(interval: .seconds(3600), retention: .seconds(90 * 86_400)) == .seconds(3600))
        #expect(JournalPruner.nextPass(interval: .seconds(3600), retention: .seconds(3600)) == .seconds(3600))
        #expect(JournalPruner.nextPass(interval: .seconds(3600), retention: .seconds(30)) == .seconds(30))
        #expect(JournalPruner.nextPass(interval: .seconds(3600), retention: .zero) == .seconds(3600))
    }
}
