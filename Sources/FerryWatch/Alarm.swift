import Synchronization

/// A wake-up at a deadline that can move earlier, waited for by one long-lived loop of its owner (the
/// watcher's timer, the engine's `DelayQueue`). It replaces a `Task {}` fired for each deadline to sleep
/// and then push: such a task belongs to no one, outlives a shutdown unless someone remembers to cancel
/// it, and re-arming meant cancelling one task and starting another.
///
/// `arm(notAfter:)` may be called from anywhere; `wait()` from one loop at a time. The sleep itself is a
/// child task of `wait()`, so cancelling the loop's task ends it.
public final class Alarm: Sendable {
    private struct State {
        var deadline: ContinuousClock.Instant?
        var waiter: CheckedContinuation<Void, Never>?
        /// Something happened (an earlier deadline, the sleep's end) while no `wait()` was suspended: the
        /// next suspension returns at once so that its caller looks again.
        var woken = false
    }

    private let state = Mutex(State())

    public init() {}

    /// The deadline the alarm will ring at, if armed.
    public var deadline: ContinuousClock.Instant? { state.withLock { $0.deadline } }

    /// Makes the alarm ring at `deadline` at the latest: an armed deadline that is earlier stays; a later
    /// one is brought forward (waking the waiting loop so that it sleeps until the new one).
    public func arm(notAfter deadline: ContinuousClock.Instant) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let armed = state.deadline, armed <= deadline { return nil }
            state.deadline = deadline
            return Self.takeWaiter(&state)
        }
        waiter?.resume()
    }

    /// Waits until the armed deadline passes (returns true; the alarm is then disarmed), or until the
    /// deadline moves earlier or the task is cancelled (returns false: the caller looks again). Unarmed,
    /// it waits for an `arm` or the cancellation.
    public func wait() async -> Bool {
        let deadline = state.withLock { state -> ContinuousClock.Instant? in
            state.woken = false
            return state.deadline
        }
        await withTaskGroup(of: Void.self) { sleeper in
            if let deadline {
                sleeper.addTask {
                    if (try? await Task.sleep(until: deadline, clock: .continuous)) != nil { self.wake() }
                }
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { state -> Bool in
                        if state.woken || Task.isCancelled { return true }
                        state.waiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                self.wake()
            }
            sleeper.cancelAll()
        }
        return state.withLock { state -> Bool in
            guard let armed = state.deadline, armed <= ContinuousClock.now else { return false }
            state.deadline = nil
            return true
        }
    }

    private func wake() {
        let waiter = state.withLock { Self.takeWaiter(&$0) }
        waiter?.resume()
    }

    private static func takeWaiter(_ state: inout State) -> CheckedContinuation<Void, Never>? {
        guard let waiter = state.waiter else {
            state.woken = true
            return nil
        }
        state.waiter = nil
        return waiter
    }
}
