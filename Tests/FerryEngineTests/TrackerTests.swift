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

    @Test func theTransferBehindAFinishedHeadIsLookedAtAtOnce() async {
        let tracker = Tracker()
        await tracker.submitted(Self.batch(1))
        await tracker.submitted(Self.batch(2))
        await tracker.submitted(Self.batch(3))
        let head = await tracker.nextDue()?.map(\.id)
        #expect(head == [1])
        await tracker.finished(Self.batch(1))
        let due = await Self.next(tracker)
        #expect(due == [2], "batch 2 is the new head and due now; batch 3 still waits its 30 s")
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
}
