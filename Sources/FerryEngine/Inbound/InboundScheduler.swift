import FerryConfig
import Foundation
import Synchronization

/// The time source of the inbound scheduler: the system clock in production, a hand-driven one in tests
/// (so that a cron schedule can be checked over days without sleeping for minutes).
public protocol InboundClock: Sendable {
    /// The current wall-clock time (cron is defined on it, not on a monotonic clock).
    func now() -> Date
    /// Returns once `now()` has reached `deadline`; throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: Date) async throws
}

/// Wall-clock time. Sleeps are capped at one minute and re-checked, so a suspended machine or a clock
/// step does not leave a poll waiting for the old deadline.
public struct SystemInboundClock: InboundClock {
    public init() {}

    public func now() -> Date { Date() }

    public func sleep(until deadline: Date) async throws {
        while true {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return }
            try await Task.sleep(for: .milliseconds(Int64(min(remaining, 60) * 1000) + 1))
        }
    }
}

/// When polls are due: pure functions of the schedule, the last poll's start and the time now.
public enum PollTiming {
    /// The largest random delay added to an `every` schedule: a tenth of the interval, at most 30 s.
    public static func maximumJitter(for interval: Duration) -> TimeInterval {
        min(seconds(interval) / 10, 30)
    }

    /// When the next poll is due. Without a previous poll, an `every` rule polls now and a cron rule at
    /// its next tick. With one, the schedule's next time after that poll's start; if that is already past
    /// — ticks missed while ferry was stopped, or a poll that ran longer than the interval — it is now,
    /// once, however many ticks were missed. `jitter` is added to `every` schedules only: cron times are
    /// what the user wrote.
    public static func due(_ schedule: Schedule, lastStart: Date?, now: Date, timeZone: TimeZone, jitter: TimeInterval) -> Date {
        let next: Date
        switch (schedule, lastStart) {
        case (.every, nil): next = now.addingTimeInterval(jitter)
        case (.cron, nil): return schedule.next(after: now, in: timeZone)
        case (.every, let start?): next = schedule.next(after: start, in: timeZone).addingTimeInterval(jitter)
        case (.cron, let start?): next = schedule.next(after: start, in: timeZone)
        }
        return max(next, now)
    }

    static func seconds(_ duration: Duration) -> TimeInterval {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// Runs each inbound rule's polls on its schedule, one poll per rule at a time; `pollNow` slots a poll in
/// between scheduled ones (it waits for a running poll of that rule to finish first). `update` swaps the
/// rules (SIGHUP): new rules start, removed ones stop after any poll they are running, and a changed
/// schedule applies from the next wait.
public final class InboundScheduler<Report: Sendable>: Sendable {
    /// One rule to schedule.
    public struct Entry: Sendable {
        public var rule: String
        public var schedule: Schedule
        public init(rule: String, schedule: Schedule) {
            self.rule = rule
            self.schedule = schedule
        }
    }

    /// The rules in force, each with the token of the one loop that may run it: a loop whose token is no
    /// longer current (its rule was removed, or removed and added again) ends.
    private struct Rules {
        var entries: [String: (entry: Entry, token: Int)] = [:]
        var nextToken = 0
        var generation = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    let clock: any InboundClock
    let timeZone: TimeZone
    let jitter: @Sendable (Duration) -> TimeInterval
    let lastStart: @Sendable (String) -> Date?
    let willWait: @Sendable (String, Date) -> Void
    let poll: @Sendable (String) async -> Report
    private let rules = Mutex(Rules())
    private let slots = Mutex<[String: RuleSlot]>([:])
    private let started: (stream: AsyncStream<(String, Int)>, continuation: AsyncStream<(String, Int)>.Continuation)

    /// - Parameters:
    ///   - jitter: the random delay for an `every` interval (default: uniform up to `PollTiming.maximumJitter`).
    ///   - lastStart: when the rule's last poll started, from the journal (survives restarts).
    ///   - willWait: told when the next poll of a rule is due, before waiting for it.
    ///   - poll: runs one poll of a rule.
    public init(entries: [Entry], clock: any InboundClock, timeZone: TimeZone = .current,
                jitter: @escaping @Sendable (Duration) -> TimeInterval = { .random(in: 0...PollTiming.maximumJitter(for: $0)) },
                lastStart: @escaping @Sendable (String) -> Date?, willWait: @escaping @Sendable (String, Date) -> Void = { _, _ in },
                poll: @escaping @Sendable (String) async -> Report) {
        self.clock = clock
        self.timeZone = timeZone
        self.jitter = jitter
        self.lastStart = lastStart
        self.willWait = willWait
        self.poll = poll
        started = AsyncStream.makeStream()
        update(entries: entries)
    }

    /// Replaces the scheduled rules.
    public func update(entries: [Entry]) {
        let (added, waiters) = rules.withLock { state -> ([(String, Int)], [CheckedContinuation<Void, Never>]) in
            var added: [(String, Int)] = []
            var next: [String: (entry: Entry, token: Int)] = [:]
            for entry in entries where next[entry.rule] == nil {
                if let existing = state.entries[entry.rule] {
                    next[entry.rule] = (entry, existing.token)
                } else {
                    state.nextToken += 1
                    next[entry.rule] = (entry, state.nextToken)
                    added.append((entry.rule, state.nextToken))
                }
            }
            state.entries = next
            state.generation += 1
            let waiters = Array(state.waiters.values)
            state.waiters = [:]
            return (added, waiters)
        }
        for waiter in waiters { waiter.resume() }
        for loop in added { started.continuation.yield(loop) }
    }

    /// Polls every rule on its schedule until cancelled, starting loops for rules `update` adds.
    public func run() async {
        // Discarding: a rule's loop ends when a reload removes or replaces the rule, and a plain group
        // would keep each ended loop for the daemon's life.
        await withDiscardingTaskGroup { group in
            for await (rule, token) in started.stream {
                group.addTask { await self.loop(rule, token: token) }
            }
            group.cancelAll()
        }
    }

    private func current(_ rule: String, token: Int) -> Entry? {
        rules.withLock { state in
            guard let current = state.entries[rule], current.token == token else { return nil }
            return current.entry
        }
    }

    private func slot(_ rule: String) -> RuleSlot {
        slots.withLock { slots in
            if let slot = slots[rule] { return slot }
            let slot = RuleSlot()
            slots[rule] = slot
            return slot
        }
    }

    private func loop(_ rule: String, token: Int) async {
        var start = lastStart(rule)
        while !Task.isCancelled {
            let generation = rules.withLock { $0.generation }
            guard let entry = current(rule, token: token) else { return }
            let interval: Duration? = if case .every(let interval) = entry.schedule { interval } else { nil }
            let due = PollTiming.due(entry.schedule, lastStart: start, now: clock.now(), timeZone: timeZone,
                                     jitter: interval.map(jitter) ?? 0)
            willWait(rule, due)
            switch await sleep(until: due, orChangeAfter: generation) {
            case .cancelled: return
            case .changed: continue
            case .due:
                guard current(rule, token: token) != nil else { return }
                await slot(rule).exclusive {
                    start = clock.now()
                    _ = await poll(rule)
                }
            }
        }
    }

    private enum Wake: Sendable { case due, changed, cancelled }

    /// Sleeps until `due`, or until `update` changes the rules, whichever is first.
    private func sleep(until due: Date, orChangeAfter generation: Int) async -> Wake {
        await withTaskGroup(of: Wake.self) { group in
            group.addTask {
                do {
                    try await self.clock.sleep(until: due)
                    return .due
                } catch {
                    return .cancelled
                }
            }
            group.addTask {
                await self.waitForChange(after: generation)
                return Task.isCancelled ? .cancelled : .changed
            }
            let first = await group.next() ?? .cancelled
            group.cancelAll()
            return Task.isCancelled ? .cancelled : first
        }
    }

    private func waitForChange(after generation: Int) async {
        let id = rules.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = rules.withLock { state -> Bool in
                    if state.generation != generation || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            rules.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Polls `rule` now (after any poll of it that is running) and returns the report; nil for a rule that
    /// is not scheduled.
    public func pollNow(rule: String) async -> Report? {
        await withSlot(rule: rule) { await poll(rule) }
    }

    /// Runs `body` as the one poll-like activity of `rule` (resuming unfinished work, say); nil for a rule
    /// that is not scheduled.
    public func withSlot<T: Sendable>(rule: String, _ body: () async -> T) async -> T? {
        guard rules.withLock({ $0.entries[rule] != nil }) else { return nil }
        return await slot(rule).exclusive(body)
    }
}

/// A per-rule async mutex: whoever holds it is the one poll of that rule.
final class RuleSlot: Sendable {
    private let state = Mutex<(busy: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func exclusive<T>(_ body: () async -> T) async -> T {
        await acquire()
        defer { release() }
        return await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
