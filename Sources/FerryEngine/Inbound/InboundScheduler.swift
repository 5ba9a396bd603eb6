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
/// between scheduled ones (it waits for a running poll of that rule to finish first).
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

    let entries: [Entry]
    let clock: any InboundClock
    let timeZone: TimeZone
    let jitter: @Sendable (Duration) -> TimeInterval
    let lastStart: @Sendable (String) -> Date?
    let willWait: @Sendable (String, Date) -> Void
    let poll: @Sendable (String) async -> Report
    private let slots: [String: RuleSlot]

    /// - Parameters:
    ///   - jitter: the random delay for an `every` interval (default: uniform up to `PollTiming.maximumJitter`).
    ///   - lastStart: when the rule's last poll started, from the journal (survives restarts).
    ///   - willWait: told when the next poll of a rule is due, before waiting for it.
    ///   - poll: runs one poll of a rule.
    public init(entries: [Entry], clock: any InboundClock, timeZone: TimeZone = .current,
                jitter: @escaping @Sendable (Duration) -> TimeInterval = { .random(in: 0...PollTiming.maximumJitter(for: $0)) },
                lastStart: @escaping @Sendable (String) -> Date?, willWait: @escaping @Sendable (String, Date) -> Void = { _, _ in },
                poll: @escaping @Sendable (String) async -> Report) {
        self.entries = entries
        self.clock = clock
        self.timeZone = timeZone
        self.jitter = jitter
        self.lastStart = lastStart
        self.willWait = willWait
        self.poll = poll
        slots = Dictionary(entries.map { ($0.rule, RuleSlot()) }, uniquingKeysWith: { first, _ in first })
    }

    /// Polls every rule on its schedule until cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for entry in entries {
                group.addTask { await self.loop(entry) }
            }
        }
    }

    private func loop(_ entry: Entry) async {
        guard let slot = slots[entry.rule] else { return }
        var start = lastStart(entry.rule)
        while !Task.isCancelled {
            let interval: Duration? = if case .every(let interval) = entry.schedule { interval } else { nil }
            let due = PollTiming.due(entry.schedule, lastStart: start, now: clock.now(), timeZone: timeZone,
                                     jitter: interval.map(jitter) ?? 0)
            willWait(entry.rule, due)
            do {
                try await clock.sleep(until: due)
            } catch {
                return
            }
            await slot.exclusive {
                start = clock.now()
                _ = await poll(entry.rule)
            }
        }
    }

    /// Polls `rule` now (after any poll of it that is running) and returns the report; nil for an unknown rule.
    public func pollNow(rule: String) async -> Report? {
        await withSlot(rule: rule) { await poll(rule) }
    }

    /// Runs `body` as the one poll-like activity of `rule` (resuming unfinished work, say); nil for an unknown rule.
    public func withSlot<T: Sendable>(rule: String, _ body: () async -> T) async -> T? {
        guard let slot = slots[rule] else { return nil }
        return await slot.exclusive(body)
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
