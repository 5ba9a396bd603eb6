@testable import FerryEngine
import FerryTestSupport
import Foundation
import Testing

/// The pipeline's one delay queue: actions run in deadline order from one loop, an earlier deadline
/// wakes a loop sleeping for a later one, and stopping the loop drops what still waits.
struct DelayQueueTests {
    /// Runs `queue` until `done` holds or the deadline (a bound on a failing test, not a measurement).
    static func run(_ queue: DelayQueue, until done: @escaping @Sendable () -> Bool) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await queue.run()
                return false
            }
            group.addTask { await eventually(timeout: 60, interval: 0.005) { done() } }
            let reached = await group.next() ?? false
            group.cancelAll()
            await group.waitForAll()
            return reached
        }
    }

    @Test func actionsRunInDeadlineOrderNotTheOrderTheyWereScheduled() async {
        let queue = DelayQueue()
        let ran = Locked<[String]>([])
        queue.schedule(after: .milliseconds(90)) { ran.withLock { $0.append("c") } }
        queue.schedule(after: .milliseconds(30)) { ran.withLock { $0.append("a") } }
        queue.schedule(after: .milliseconds(60)) { ran.withLock { $0.append("b") } }
        #expect(await Self.run(queue) { ran.withLock { $0.count } == 3 })
        #expect(ran.withLock { $0 } == ["a", "b", "c"])
    }

    /// The loop sleeps until the earliest deadline it knows; a sooner one scheduled meanwhile must wake
    /// it, or a 10 ms retry would wait behind an hour-long one.
    @Test func aSoonerDeadlineWakesTheLoopSleepingForALaterOne() async {
        let queue = DelayQueue()
        let ran = Locked<[String]>([])
        queue.schedule(after: .seconds(3600)) { ran.withLock { $0.append("hour") } }
        let reached = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await Self.run(queue) { ran.withLock { $0 } == ["soon"] } }
            group.addTask {
                // Scheduled while the loop already sleeps for the hour (or before it does: either way).
                try? await Task.sleep(for: .milliseconds(50))
                queue.schedule(after: .milliseconds(10)) { ran.withLock { $0.append("soon") } }
                return true
            }
            return await group.reduce(true) { $0 && $1 }
        }
        #expect(reached)
        #expect(queue.count == 0, "a stopped queue keeps nothing")
    }

    @Test func stoppingDropsWhatWaitsAndLaterSchedulesAreIgnored() async {
        let queue = DelayQueue()
        let ran = Locked(0)
        queue.schedule(after: .seconds(3600)) { ran.withLock { $0 += 1 } }
        queue.schedule(after: .zero) { ran.withLock { $0 += 1 } }
        #expect(await Self.run(queue) { ran.withLock { $0 } == 1 })
        #expect(queue.count == 0)
        queue.schedule(after: .zero) { ran.withLock { $0 += 1 } }
        #expect(queue.count == 0, "scheduled after the stop: dropped, the journal resumes it at the next start")
        #expect(ran.withLock { $0 } == 1)
    }
}
