@testable import FerryEngine
import FerryStore
import FerrySystem
import FerryTestSupport
import Foundation
import Testing

/// A backlog larger than the window waits in the journal, not in memory (issue 16, must-show 7: the
/// 200,000-file soak's RSS followed the peak of its backlog, every queued file held in memory at once).
@Suite struct OutboundBacklogTests {
    /// A `detected` row as the journal returns it.
    static func file(_ id: Int64, rule: String = "docs") -> OutboundFile {
        OutboundFile(id: id, rule: rule, path: "/watch/\(id).edi", relativePath: "\(id).edi",
                     version: FileVersion(device: 1, inode: UInt64(id), size: 1, mtimeNanoseconds: 0), state: .detected,
                     remoteDirectory: nil, bucket: nil, key: nil, checksum: nil, batchID: nil, transferID: nil, attempts: 0,
                     lastError: nil, nextAttemptAt: nil, createdAt: Date(), updatedAt: Date())
    }

    /// The journal's `detected` rows of the test, and what was read from it.
    final class Rows: @unchecked Sendable {
        let rows = Locked<[OutboundFile]>([])
        /// Runs inside a read, after the page was taken: what another task does meanwhile.
        let duringRead = Locked<(@Sendable () -> Void)?>(nil)

        func insert(_ ids: ClosedRange<Int64>, rule: String = "docs") -> [OutboundFile] {
            let files = ids.map { OutboundBacklogTests.file($0, rule: rule) }
            rows.withLock { $0 += files }
            return files
        }

        func page(rule: String, after id: Int64, limit: Int) -> [OutboundFile] {
            let page = rows.withLock { rows in Array(rows.filter { $0.rule == rule && $0.id > id }.prefix(limit)) }
            duringRead.withLock { $0 }?()
            return page
        }
    }

    @Test func filesBeyondTheWindowWaitInTheJournalAndComeBackInOrderAsRoomFrees() {
        let rows = Rows()
        let backlog = OutboundBacklog(window: 4) { rows.page(rule: $0, after: $1, limit: $2) }
        var held = backlog.admit(rows.insert(1...10))
        #expect(held.map(\.file.id) == [1, 2, 3, 4], "the window's worth goes on; the rest stays in the journal")
        #expect(backlog.held("docs") == 4 && backlog.isSpilled)
        #expect(backlog.admit(rows.insert(11...12)).isEmpty, "once spilled, new files queue behind those waiting in the journal")
        #expect(backlog.refill().admitted.isEmpty, "no room: nothing is read")
        held.removeFirst(2)  // two submitted: their tickets go
        #expect(backlog.held("docs") == 2)
        held += backlog.refill().admitted
        #expect(held.map(\.file.id) == [3, 4, 5, 6], "read back from the journal in order, up to the window")
        held.removeAll()
        var rest: [Admitted] = []
        while true {
            let (admitted, more) = backlog.refill()
            rest += admitted
            if admitted.isEmpty && !more { break }
            rest.removeAll()  // sent
            if rest.count > 100 { break }
        }
        #expect(!backlog.isSpilled, "caught up with the journal")
        #expect(backlog.held("docs") == 0)
        let later = backlog.admit(rows.insert(13...13))
        #expect(later.map(\.file.id) == [13], "caught up, a new file goes on at once")
    }

    @Test func aTicketsPlaceIsFreedWhateverWayTheFileLeaves() async {
        let rows = Rows()
        let backlog = OutboundBacklog(window: 10) { rows.page(rule: $0, after: $1, limit: $2) }
        var admitted = backlog.admit(rows.insert(1...3))
        #expect(backlog.held("docs") == 3)
        // Kept by a closure for a while (a retry's delay), then by a batch; gone when both are.
        let kept = admitted[0]
        let closure: @Sendable () -> Int64 = { kept.file.id }
        admitted.removeAll()
        #expect(backlog.held("docs") == 1, "two dropped, one still referenced")
        _ = closure()
        _ = consume closure
        _ = consume kept
        #expect(backlog.held("docs") == 0)
        let extra = backlog.extraTicket(rule: "docs")
        #expect(backlog.held("docs") == 1, "a re-upload outside the journal's order is counted")
        _ = consume extra
        #expect(backlog.held("docs") == 0)
    }

    @Test func eachRuleHasItsOwnWindow() {
        let rows = Rows()
        let backlog = OutboundBacklog(window: 2) { rows.page(rule: $0, after: $1, limit: $2) }
        let first = backlog.admit(rows.insert(1...5, rule: "a"))
        let second = backlog.admit(rows.insert(6...7, rule: "b"))
        #expect(first.map(\.file.id) == [1, 2])
        #expect(second.map(\.file.id) == [6, 7], "a rule whose partner is slow does not hold up another's files")
        _ = (first, second)
    }

    /// Admissions racing refills (new files journaled while a refill reads the journal), releases at
    /// random: every file is handed on exactly once, in order per rule, and none is left behind.
    @Test(arguments: 0..<20)
    func racingAdmissionsAndRefillsHandEveryFileOnOnceAndLoseNone(seed: Int) {
        var random = SeededGenerator(state: 0xBAC6_1060 ^ UInt64(seed))
        let rows = Rows()
        let window = Int.random(in: 1...8, using: &random)
        let backlog = OutboundBacklog(window: window) { rows.page(rule: $0, after: $1, limit: $2) }
        let handed = Locked<[Int64]>([])
        let inMemory = Locked<[Admitted]>([])
        let nextID = Locked<Int64>(1)
        let rules = ["a", "b"]
        @Sendable func journalSome(_ count: Int, rule: String) {
            let ids = nextID.withLock { next -> ClosedRange<Int64> in
                defer { next += Int64(count) }
                return next...(next + Int64(count) - 1)
            }
            let got = backlog.admit(rows.insert(ids, rule: rule))
            handed.withLock { $0 += got.map(\.file.id) }
            inMemory.withLock { $0 += got }
        }
        backlog.spill(rules: rules)
        for step in 0..<400 {
            let rule = rules[step % 2]
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                journalSome(Int.random(in: 1...5, using: &random), rule: rule)
            case 1:
                // A file journaled while the refill reads: the read may or may not have seen it.
                let count = Int.random(in: 1...3, using: &random)
                rows.duringRead.withLock { $0 = { journalSome(count, rule: rule) } }
                let got = backlog.refill().admitted
                rows.duringRead.withLock { $0 = nil }
                handed.withLock { $0 += got.map(\.file.id) }
                inMemory.withLock { $0 += got }
            case 2:
                let got = backlog.refill().admitted
                handed.withLock { $0 += got.map(\.file.id) }
                inMemory.withLock { $0 += got }
            default:
                // Some files leave memory (submitted, dropped).
                let leave = Int.random(in: 0...3, using: &random)
                inMemory.withLock { memory in
                    for _ in 0..<min(leave, memory.count) { memory.remove(at: Int.random(in: 0..<memory.count, using: &random)) }
                }
            }
            for rule in rules { #expect(backlog.held(rule) <= window, "never more than the window in memory") }
        }
        // Drain: everything in memory is sent, refills run until nothing is left.
        for _ in 0..<10_000 {
            inMemory.withLock { $0.removeAll() }
            let (got, more) = backlog.refill()
            handed.withLock { $0 += got.map(\.file.id) }
            inMemory.withLock { $0 += got }
            if got.isEmpty && !more && !backlog.isSpilled { break }
        }
        let all = rows.rows.withLock { $0 }
        let ids = handed.withLock { $0 }
        #expect(ids.count == Set(ids).count, "a file was handed on twice (window \(window))")
        #expect(Set(ids) == Set(all.map(\.id)), "files left in the journal: \(Set(all.map(\.id)).subtracting(ids).sorted())")
        for rule in rules {
            let order = ids.filter { id in all.first { $0.id == id }?.rule == rule }
            #expect(order == order.sorted(), "rule \(rule)'s files out of journal order")
        }
    }
}

/// The pipeline over the fake connector with a backlog larger than the window.
@Suite struct OutboundBacklogPipelineTests {
    /// A partner slower than the files arriving: before, every journaled file was uploaded and queued in
    /// memory; now the window's worth is, the rest waits `detected` in the journal, and all of it is
    /// sent once the partner keeps up, also across a restart, each file once.
    @Test func aBacklogBeyondTheWindowWaitsInTheJournalAndIsAllSentOnce() async throws {
        let fake = FakeConnector()
        fake.state.withLock { $0.holdWhile = { _ in true } }  // no transfer finishes: 100 in flight, then none
        let h = try OutboundFakeHarness(fake: fake, maxInFlight: 100, maxWait: "10ms", window: 2_000)
        let inFlight = 100 * 10
        let total = h.window + inFlight + 600
        try h.drop(total)
        let journal = h.journal
        let window = h.window
        @Sendable func count(_ state: OutboundState) -> Int { (try? journal.outboundFiles(in: [state]).count) ?? -1 }
        @Sendable func uploads() -> Int { fake.listObjectsCount(bucket: "staging", prefix: "out/") }
        let (watcher, pipeline, service) = try h.makePipeline()
        let running = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await watcher.run() }
                group.addTask { try? await pipeline.run() }
                group.addTask { await service.run() }
            }
        }
        // Everything journaled and every slot taken; then a moment for uploads that would still go.
        #expect(await eventually(timeout: 60, interval: 0.01) {
            fake.startCalls.count == 100 && count(.detected) + count(.staged) + count(.submitted) == total
        }, "detected \(h.count(.detected)), staged \(h.count(.staged)), submitted \(h.count(.submitted))")
        try await Task.sleep(for: .seconds(1))
        let uploaded = uploads()
        #expect(uploaded <= window + inFlight && h.count(.staged) <= window,
                "uploaded \(uploaded), staged \(h.count(.staged)): at most the window's worth uploaded and waiting for StartFileTransfer")
        #expect(h.count(.detected) >= total - window - inFlight, "\(h.count(.detected)) detected: the rest of the backlog waits in the journal")
        #expect(pipeline.backlog.held("docs") <= window)
        running.cancel()
        await running.value

        // Restarted, with the partner keeping up: the staged files and the backlog in the journal go.
        fake.state.withLock { $0.holdWhile = nil }
        // Every file sent and nothing left open. The restart's scan reports files the recovered batches
        // are sending; a report that arrives after its file was sent and archived must change nothing
        // (before: the send's row became `retried` and the late report's row `dropped`, file gone).
        @Sendable func sentNames() -> Set<String> { Set(fake.startCalls.joined().map { ($0 as NSString).lastPathComponent }) }
        let open: [OutboundState] = [.detected, .staged, .submitting, .submitted, .completed, .failed]
        #expect(try await h.run { sentNames().count == total && (try? journal.outboundFiles(in: open).isEmpty) == true },
                "sent \(sentNames().count) of \(total); detected \(h.count(.detected)), staged \(h.count(.staged)), submitted \(h.count(.submitted))")
        #expect(h.count(.inDoubt) == 0 && h.count(.quarantined) == 0)
        #expect(h.count(.done) == total && h.count(.retried) == 0 && h.count(.dropped) == 0,
                "done \(h.count(.done)), retried \(h.count(.retried)), dropped \(h.count(.dropped)): each file's row says it was sent")
        #expect(uploaded < total)
        var sends: [String: Int] = [:]
        for path in fake.startCalls.joined() { sends[(path as NSString).lastPathComponent, default: 0] += 1 }
        #expect(sends.count == total && sends.values.allSatisfy { $0 == 1 }, "every file sent exactly once")
        for index in [0, window - 1, window, total - 1] {
            let name = OutboundFakeHarness.name(index)
            #expect(fake.partnerFile("/in/\(name)") == Data("f \(index)\n".utf8), "\(name) on the partner")
        }
    }

    /// Many passes through a small window (releases crossing its low water, pages read back) with
    /// several transfers in flight: every file arrives once.
    @Test func aSmallWindowStillSendsEveryFileOnce() async throws {
        let fake = FakeConnector(looksUntilDone: 1)
        let h = try OutboundFakeHarness(fake: fake, maxInFlight: 3, maxFiles: 3, maxWait: "10ms", window: 7)
        try h.drop(120)
        let journal = h.journal
        #expect(try await h.run { (try? journal.outboundFiles(in: [.done]).count) == 120 }, "done \(h.count(.done)) of 120")
        let sent = fake.startCalls.joined().map { ($0 as NSString).lastPathComponent }
        #expect(sent.count == 120 && Set(sent).count == 120, "every file sent exactly once")
    }
}
