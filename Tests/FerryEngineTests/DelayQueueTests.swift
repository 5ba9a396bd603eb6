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

    /// The queue lives as long as the pipeline and starts a child task for each group of actions that
    /// fall due together (a batch's `max_wait`, a retry, an in-doubt check). A plain task group keeps
    /// every finished child until it is awaited, which a loop that never ends never does: the soak's
    /// last daemon grew ~600 bytes per file it sent (heaptrack: the stack slabs of hundreds of finished
    /// children of `DelayQueue.run`, docs/benchmarks.md "What the soak found"). Here the heap in use is
    /// counted before and after thousands more actions, each due alone and each suspending once.
    @Test func aFinishedActionLeavesNoTaskBehind() async {
        let queue = DelayQueue()
        let ran = Locked(0)
        let warmUp = 200, measured = 4000
        func runActions(_ count: Int) async -> Bool {
            for _ in 0..<count {
                let before = ran.withLock { $0 }
                queue.schedule(after: .zero) {
                    await Task.yield()  // an action that awaits, as every real one does, uses its task's stack
                    ran.withLock { $0 += 1 }
                }
                // One at a time: each action is its own child task of the loop.
                guard await eventually(timeout: 60, interval: 0.0005, { ran.withLock { $0 } > before }) else { return false }
            }
            return true
        }
        let heap = await withTaskGroup(of: (before: Int, after: Int)?.self) { group in
            group.addTask {
                await queue.run()
                return nil
            }
            group.addTask {
                guard await runActions(warmUp) else { return nil }
                let before = SubmitLoopRetentionTests.heapInUse()
                guard await runActions(measured) else { return nil }
                return (before, SubmitLoopRetentionTests.heapInUse())
            }
            var result: (before: Int, after: Int)?
            while let next = await group.next() {
                if let next { result = next; break }
            }
            group.cancelAll()
            return result
        }
        guard let heap else {
            Issue.record("the actions did not all run: \(ran.withLock { $0 }) of \(warmUp + measured)")
            return
        }
        let perAction = Double(heap.after - heap.before) / Double(measured)
        #expect(perAction < Self.bytesPerAction, "the heap grew \(heap.after - heap.before) bytes over \(measured) actions: \(Int(perAction)) bytes an action")
    }

    /// Measured on 2026-12-07 (debug build, glibc 2.36, this test alone): 1,339 bytes an action with
    /// `withTaskGroup(of: Void.self)` in `run`, 2-4 with `withDiscardingTaskGroup`.
    static let bytesPerAction = 256.0
}
