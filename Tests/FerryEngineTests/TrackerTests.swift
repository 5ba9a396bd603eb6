import Foundation
import Testing
@testable import FerryEngine

/// The tracker's head-of-line schedule (bench/connector: about one ListFileTransferResults per
/// transfer): a connector finishes its transfers in the order they were submitted, so only the oldest
/// unfinished one is looked at often, and the one behind it is looked at as soon as it finishes.
struct TrackerTests {
    static func batch(_ id: Int64, connector: String = "c-1") -> TrackedTransfer {
        TrackedTransfer(id: id, connectorID: connector, transferID: "t-\(id)", submittedAt: Date(), backoff: Tracker.headFirstLook)
    }

    /// The next transfers due, or nil if none is due within `deadline` (a deadline, not a measurement:
    /// the schedule under test is 250 ms for a head and 30 s for the rest).
    static func next(_ tracker: Tracker, within deadline: Duration = .seconds(10)) async -> [Int64]? {
        await withTaskGroup(of: [Int64]?.self) { group in
            group.addTask { await tracker.nextDue()?.map(\.id) }
            group.addTask {
                try? await Task.sleep(for: deadline)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            await tracker.close()
            return first
        }
    }

    @Test func onlyTheOldestTransferOfAConnectorIsLookedAtSoon() async {
        let tracker = Tracker()
        await tracker.submitted(Self.batch(2))
        await tracker.submitted(Self.batch(1))  // recovered at start: older, so the head
        await tracker.submitted(Self.batch(7, connector: "c-2"))
        let due = await Self.next(tracker)
        #expect(due.map(Set.init) == [1, 7], "the head of each connector, and nothing behind them")
    }

    @Test func theTransfersBehindAFinishedHeadAreLookedAtAtOnce() async {
        let tracker = Tracker()
        for id in Int64(1)...6 { await tracker.submitted(Self.batch(id)) }
        let head = await tracker.nextDue()?.map(\.id)
        #expect(head == [1])
        await tracker.finished(Self.batch(1))
        let due = await Self.next(tracker)
        #expect(due.map(Set.init) == Set(2...(2 + Int64(Tracker.lookahead))),
                "batch 2 is the new head and due now with the \(Tracker.lookahead) behind it; batch 6 still waits its 30 s")
    }

    @Test func aLookaheadTransferNotYetFinishedWaitsUntilItIsTheHead() async throws {
        let tracker = Tracker()
        for id in Int64(1)...3 { await tracker.submitted(Self.batch(id)) }
        _ = await tracker.nextDue()
        await tracker.finished(Self.batch(1))
        let looked = try #require(await tracker.nextDue())
        #expect(Set(looked.map(\.id)) == [2, 3])
        // Batch 3 was looked at early and is not finished: it waits its turn, and 2 (the head) comes first.
        for transfer in looked { await tracker.notFinished(transfer) }
        #expect(await Self.next(tracker) == [2])
    }

    @Test func anUnfinishedHeadIsLookedAtAgainSoonAndTheOthersAreNot() async {
        let tracker = Tracker()
        await tracker.submitted(Self.batch(1))
        await tracker.submitted(Self.batch(2))
        #expect(await tracker.nextDue()?.map(\.id) == [1])
        await tracker.notFinished(Self.batch(1))
        let due = await Self.next(tracker)
        #expect(due == [1])
    }

    /// bench/connector: the last transfers were seen 0.85 s after their last delivery, because the head
    /// they waited behind had doubled its wait while its files were being sent. A head whose look finds
    /// more files finished than the last keeps the first wait; one that made no progress doubles.
    @Test func aHeadThatProgressesKeepsTheFirstWaitAndOneThatDoesNotDoubles() async throws {
        let tracker = Tracker()
        await tracker.submitted(Self.batch(1))
        let first = await tracker.nextDue()
        var head = try #require(first?.first)
        #expect(head.backoff == Tracker.headFirstLook)
        await tracker.notFinished(head, settledFiles: 4)  // 4 of its files finished: progress
        head = try #require(await tracker.nextDue()?.first)
        #expect(head.backoff == Tracker.headFirstLook, "progressing: looked at again after the first wait")
        #expect(head.settledFiles == 4)
        await tracker.notFinished(head, settledFiles: 4)  // nothing more finished
        head = try #require(await tracker.nextDue()?.first)
        #expect(head.backoff == Tracker.headFirstLook * 2, "no progress: the wait doubles")
        await tracker.notFinished(head, settledFiles: 4)
        head = try #require(await tracker.nextDue()?.first)
        #expect(head.backoff == Tracker.headFirstLook * 4)
        await tracker.close()
    }
}
