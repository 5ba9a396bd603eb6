import FerryWatch
import Synchronization

/// Work to do later (a retry after its backoff, a batch's `max_wait`, an in-doubt batch's pause before
/// its partner check), kept in one deadline heap and started by one loop, `run()`, that its owner runs
/// as part of its own service. Before this, each delay was a `Task {}` fired to sleep and then push:
/// unowned by anyone, not stopped by a shutdown, and a thousand retries were a thousand sleeping tasks.
///
/// Actions due together run one after another in deadline order, each batch in a child task of `run`,
/// so the loop itself never waits for an action. When `run` is cancelled, actions still waiting are
/// dropped: every caller has journaled what the action would continue (the next start resumes it).
final class DelayQueue: Sendable {
    typealias Action = @Sendable () async -> Void

    private struct State {
        var heap = DeadlineHeap<Action>()
        var stopped = false
    }

    private let state = Mutex(State())
    /// Rings at the earliest deadline; `run()`'s loop waits on it.
    private let alarm = Alarm()

    /// Actions waiting for their deadline.
    var count: Int { state.withLock { $0.heap.count } }

    /// Runs `action` once `delay` has passed (or soon after), from `run()`'s loop. Dropped if the queue
    /// has stopped.
    func schedule(after delay: Duration, _ action: @escaping Action) {
        let deadline = ContinuousClock.now.advanced(by: delay)
        let scheduled = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.heap.insert(action, at: deadline)
            return true
        }
        // The loop sleeps until the earliest deadline it knew of; an earlier one must wake it.
        if scheduled { alarm.arm(notAfter: deadline) }
    }

    /// Starts each action when it is due, until the calling task is cancelled. The children are in a
    /// discarding group: a plain one keeps every finished child until it is awaited, which this loop
    /// never does (1.3 KB an action; `DelayQueueTests.aFinishedActionLeavesNoTaskBehind`).
    func run() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let (due, earliest) = state.withLock { state -> ([Action], ContinuousClock.Instant?) in
                    var due: [Action] = []
                    let now = ContinuousClock.now
                    while let entry = state.heap.popDue(at: now) { due.append(entry.payload) }
                    return (due, state.heap.earliest)
                }
                if !due.isEmpty {
                    group.addTask {
                        for action in due { await action() }
                    }
                    continue
                }
                if let earliest { alarm.arm(notAfter: earliest) }
                _ = await alarm.wait()
            }
            state.withLock { state in
                state.stopped = true
                state.heap = DeadlineHeap()
            }
            group.cancelAll()
        }
    }
}
