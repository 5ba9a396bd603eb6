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
        var waiter: CheckedContinuation<Void, Never>?
        /// A wake-up that came while the loop was not waiting: its next wait returns at once.
        var kicked = false
        var stopped = false
    }

    private let state = Mutex(State())

    /// Actions waiting for their deadline.
    var count: Int { state.withLock { $0.heap.count } }

    /// Runs `action` once `delay` has passed (or soon after), from `run()`'s loop. Dropped if the queue
    /// has stopped.
    func schedule(after delay: Duration, _ action: @escaping Action) {
        let wakeLoop = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            let deadline = ContinuousClock.now.advanced(by: delay)
            let sooner = state.heap.earliest.map { deadline < $0 } ?? true
            state.heap.insert(action, at: deadline)
            return sooner
        }
        // The loop sleeps until the earliest deadline it knew of; an earlier one must wake it.
        if wakeLoop { kick() }
    }

    /// Starts each action when it is due, until the calling task is cancelled.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
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
                await sleep(until: earliest)
            }
            state.withLock { state in
                state.stopped = true
                state.heap = DeadlineHeap()
            }
            group.cancelAll()
        }
    }

    /// Waits until `deadline` (nil: until something is scheduled), an earlier schedule, or cancellation.
    private func sleep(until deadline: ContinuousClock.Instant?) async {
        await withTaskGroup(of: Void.self) { timer in
            if let deadline {
                timer.addTask {
                    if (try? await Task.sleep(until: deadline, clock: .continuous)) != nil { self.kick() }
                }
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { state -> Bool in
                        if state.kicked || Task.isCancelled {
                            state.kicked = false
                            return true
                        }
                        state.waiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                self.kick()
            }
            timer.cancelAll()
        }
    }

    private func kick() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.kicked = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
