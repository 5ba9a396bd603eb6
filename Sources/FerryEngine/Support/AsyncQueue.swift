import FerrySystem
import Synchronization

/// A FIFO that many tasks may push to and pop from; `next()` waits for an item and returns nil once the
/// queue is closed and empty. Used between pipeline stages so each stage can have several workers.
actor AsyncQueue<Element: Sendable> {
    /// A taken item's slot is set to nil at once: the queue lives as long as the daemon, and a taken item
    /// (a batch of ten files with their paths and staging keys) must not stay referenced until the array
    /// is compacted. Before, it did, until 1,024 had been taken (heaptrack during the soak: every staging
    /// key ever made still allocated at exit).
    private var items: [Element?] = []
    private var head = 0
    private var waiters: [CheckedContinuation<Element?, Never>] = []
    private var closed = false

    var count: Int { items.count - head }

    /// Room an emptied queue keeps for the next items; beyond it the storage is given back. A burst can
    /// queue tens of thousands of files, and an array keeps its capacity when emptied: after the soak's
    /// 24,000-file burst was sent, the upload queue's 8.6 MB array was still allocated (`BurstStorage`).
    static var keptCapacity: Int { BurstStorage.keptCapacity }

    /// The storage's capacity, in items (for tests).
    var storageCapacity: Int { items.capacity }

    /// After the last queued item was taken: start over, with the storage a burst made given back.
    private func emptied() {
        items.removeAll(keepingCapacity: true)
        items.releaseBurstStorage()
        head = 0
    }

    func push(_ item: Element) {
        guard !closed else { return }
        if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: item)
        } else {
            items.append(item)
        }
    }

    func push(contentsOf newItems: [Element]) {
        for item in newItems { push(item) }
    }

    func next() async -> Element? {
        if head < items.count {
            let item = items[head]
            items[head] = nil
            head += 1
            if head == items.count {
                emptied()
            } else if head > 1024, head * 2 > items.count {
                items.removeFirst(head)
                items.releaseBurstStorage()
                head = 0
            }
            return item
        }
        if closed { return nil }
        return await withCheckedContinuation { waiters.append($0) }
    }

    /// Takes up to `max` items that are already queued, without waiting.
    func drain(max: Int) -> [Element] {
        let end = head + min(max, items.count - head)
        let taken = items[head..<end].compactMap { $0 }
        for index in head..<end { items[index] = nil }
        head = end
        if head == items.count { emptied() }
        return taken
    }

    /// Wakes every waiter with nil; later pushes are ignored.
    func close() {
        closed = true
        for waiter in waiters { waiter.resume(returning: nil) }
        waiters.removeAll()
    }
}

/// A token bucket: at most `rate` acquisitions per second on average, bursts up to `burst`.
///
/// One per connector for the daemon's whole life: a reload changes its rate in place (`update`), so
/// the tokens already spent still count and both directions keep sharing one budget.
actor RateLimiter {
    private var rate: Double
    private var burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(perSecond rate: Double, burst: Double? = nil) {
        self.rate = max(rate, 0.001)
        self.burst = max(burst ?? max(rate, 1), 1)
        self.tokens = self.burst
        self.last = .now
    }

    /// A new rate (a reload): tokens earned so far are kept, capped at the new burst, so a reload never
    /// grants a fresh burst on top of what was just spent.
    func update(perSecond newRate: Double, burst newBurst: Double? = nil) {
        rate = max(newRate, 0.001)
        burst = max(newBurst ?? max(newRate, 1), 1)
        tokens = min(tokens, burst)
    }

    /// No token before this instant: the service said how long to wait (`RetryAfterSeconds`).
    private var notBefore: ContinuousClock.Instant?

    /// The service throttled a call and asked for `seconds` of quiet: no acquisition succeeds before
    /// then, and the bucket restarts empty, so calls resume at the rate, not in a burst.
    func holdOff(seconds: Double) {
        let until = ContinuousClock.now.advanced(by: .milliseconds(Int(seconds * 1000)))
        if notBefore.map({ $0 < until }) ?? true { notBefore = until }
        tokens = 0
        last = .now
    }

    /// Waits until a token is available and takes it.
    func acquire() async throws {
        while true {
            if let notBefore {
                if notBefore > .now {
                    try await Task.sleep(until: notBefore)
                    continue
                }
                self.notBefore = nil
                last = .now
            }
            let now = ContinuousClock.now
            let elapsed = now - last
            last = now
            tokens = min(burst, tokens + rate * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
            if tokens >= 1 {
                tokens -= 1
                return
            }
            let wait = (1 - tokens) / rate
            try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 1))
        }
    }
}

/// A counting semaphore for async code: `max_in_flight` transfers per connector.
///
/// One per connector for the daemon's whole life: a reload changes its capacity in place (`resize`),
/// so the slots held by transfers already submitted still count against the new limit.
///
/// A waiter that is cancelled stops waiting at once (`wait` throws `CancellationError`): at a stop the
/// tracker that would free slots stops too, and a waiter left behind would keep the pipeline, and ferry,
/// from ever ending. A class over a mutex rather than an actor, so that cancellation can take the
/// waiter out synchronously.
final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var capacity: Int
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        state = Mutex(State(available: count, capacity: count))
    }

    /// A new capacity (a reload). Slots in use stay in use: lowering the limit below them makes new
    /// work wait until enough finish; raising it lets waiters in at once.
    func resize(to newCapacity: Int) async {
        let admitted = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.available += newCapacity - state.capacity
            state.capacity = newCapacity
            var admitted: [CheckedContinuation<Void, any Error>] = []
            while state.available > 0, !state.waiters.isEmpty {
                state.available -= 1
                admitted.append(state.waiters.removeFirst().continuation)
            }
            return admitted
        }
        for waiter in admitted { waiter.resume() }
    }

    /// Waits for a free slot and takes it; throws `CancellationError` (holding no slot) if the task is
    /// cancelled first.
    func wait() async throws {
        let id = state.withLock { state -> UInt64? in
            if state.available > 0 {
                state.available -= 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLock { state -> Bool in
                    if Task.isCancelled { return true }
                    state.waiters.append((id, continuation))
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    /// Takes a slot without waiting, even beyond the limit (recovered transfers already exist at AWS).
    func take() async {
        state.withLock { $0.available -= 1 }
    }

    func signal() async {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if !state.waiters.isEmpty { return state.waiters.removeFirst().continuation }
            state.available += 1
            return nil
        }
        next?.resume()
    }
}

/// A mutex-guarded value that closures can share (a `Mutex` itself cannot be captured).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { try body(&$0) }
    }
}
