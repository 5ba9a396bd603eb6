/// A FIFO that many tasks may push to and pop from; `next()` waits for an item and returns nil once the
/// queue is closed and empty. Used between pipeline stages so each stage can have several workers.
actor AsyncQueue<Element: Sendable> {
    private var items: [Element] = []
    private var head = 0
    private var waiters: [CheckedContinuation<Element?, Never>] = []
    private var closed = false

    var count: Int { items.count - head }

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
            head += 1
            if head > 1024, head * 2 > items.count {
                items.removeFirst(head)
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
        let taken = Array(items[head..<end])
        head = end
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
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
actor RateLimiter {
    private let rate: Double
    private let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(perSecond rate: Double, burst: Double? = nil) {
        self.rate = max(rate, 0.001)
        self.burst = max(burst ?? max(rate, 1), 1)
        self.tokens = self.burst
        self.last = .now
    }

    /// Waits until a token is available and takes it.
    func acquire() async throws {
        while true {
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
actor AsyncSemaphore {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { available = count }

    func wait() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    /// Takes a slot without waiting, even beyond the limit (recovered transfers already exist at AWS).
    func take() { available -= 1 }

    func signal() {
        if !waiters.isEmpty {
            waiters.removeFirst().resume()
        } else {
            available += 1
        }
    }
}

import Synchronization

/// A mutex-guarded value that closures can share (a `Mutex` itself cannot be captured).
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { try body(&$0) }
    }
}
