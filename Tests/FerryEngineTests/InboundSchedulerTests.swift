import FerryConfig
import FerryEngine
import Foundation
import Synchronization
import Testing

/// A clock the test moves by hand: sleepers wake only when the test advances time past their deadline.
final class ManualClock: InboundClock {
    private let state: Mutex<(now: Date, sleepers: [(deadline: Date, id: Int, continuation: CheckedContinuation<Void, any Error>)], nextID: Int)>

    init(_ start: Date) {
        state = Mutex((start, [], 0))
    }

    func now() -> Date { state.withLock { $0.now } }

    func sleep(until deadline: Date) async throws {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let ready = state.withLock { state -> Bool in
                    if deadline <= state.now { return true }
                    state.sleepers.append((deadline, id, continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index).continuation
            }
            sleeper?.resume(throwing: CancellationError())
        }
    }

    /// Waits until `count` tasks sleep, then moves time to the earliest deadline and wakes those due.
    func advanceToNextDeadline(sleepers count: Int = 1) async throws -> Date {
        try await eventually { self.state.withLock { $0.sleepers.count } >= count }
        let woken = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            let earliest = state.sleepers.map(\.deadline).min()!
            state.now = max(state.now, earliest)
            let due = state.sleepers.filter { $0.deadline <= state.now }
            state.sleepers.removeAll { $0.deadline <= state.now }
            return due.map(\.continuation)
        }
        for continuation in woken { continuation.resume() }
        return now()
    }

    var sleeperDeadlines: [Date] { state.withLock { $0.sleepers.map(\.deadline) } }
}

/// Waits (in real time, briefly and repeatedly) for another task to reach a state; fails after 10 s.
func eventually(_ condition: @Sendable () -> Bool) async throws {
    for _ in 0..<2000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("condition not reached within 10 s")
    throw CancellationError()
}

final class PollLog: Sendable {
    let entries = Mutex<[(rule: String, at: Date)]>([])
    func append(_ rule: String, _ at: Date) { entries.withLock { $0.append((rule, at)) } }
    var count: Int { entries.withLock { $0.count } }
    func times(_ rule: String) -> [Date] { entries.withLock { $0.filter { $0.rule == rule }.map(\.at) } }
}

struct InboundSchedulerTests {
    let berlin = TimeZone(identifier: "Europe/Berlin")!
    let utc = TimeZone(identifier: "UTC")!

    func date(_ text: String) -> Date { try! Date(text, strategy: .iso8601) }

    @Test func everyFiresAtIntervalPlusJitterStartingNow() async throws {
        let start = date("2026-11-27T10:00:00Z")
        let clock = ManualClock(start)
        let log = PollLog()
        let scheduler = InboundScheduler<Void>(entries: [.init(rule: "r", schedule: .every(.seconds(300)))], clock: clock, timeZone: utc,
                                               jitter: { _ in 7 }, lastStart: { _ in nil }, poll: { log.append($0, clock.now()) })
        let task = Task { await scheduler.run() }
        defer { task.cancel() }
        for _ in 0..<4 {
            let target = log.count + 1
            _ = try await clock.advanceToNextDeadline()
            try await eventually { log.count >= target }
        }
        #expect(log.times("r") == [start.addingTimeInterval(7), start.addingTimeInterval(314), start.addingTimeInterval(621),
                                   start.addingTimeInterval(928)])
    }

    @Test func cronFiresOnItsMinutesInTheLocalTimeZone() async throws {
        // Friday 2026-11-27, 06:50 UTC = 07:50 in Berlin.
        let clock = ManualClock(date("2026-11-27T06:50:00Z"))
        let log = PollLog()
        let entries: [InboundScheduler<Void>.Entry] = [
            .init(rule: "weekday-0930", schedule: .cron(try CronExpression("30 9 * * 1-5"))),
            .init(rule: "quarter", schedule: .cron(try CronExpression("*/15 8 * * *"))),
        ]
        let scheduler = InboundScheduler<Void>(entries: entries, clock: clock, timeZone: berlin, jitter: { _ in 999 },
                                               lastStart: { _ in nil }, poll: { log.append($0, clock.now()) })
        let task = Task { await scheduler.run() }
        defer { task.cancel() }
        for _ in 0..<5 {
            let target = log.count + 1
            _ = try await clock.advanceToNextDeadline(sleepers: 2)
            try await eventually { log.count >= target }
        }
        #expect(log.times("quarter") == ["07:00", "07:15", "07:30", "07:45"].map { date("2026-11-27T\($0):00Z") },
                "08:00-08:45 Berlin is 07:00-07:45 UTC, and no jitter is added to cron")
        // 09:30 Berlin on Friday, then (skipping the weekend) Monday.
        #expect(log.times("weekday-0930") == [date("2026-11-27T08:30:00Z")])
        // Each rule goes back to sleep after its poll; wait for both before reading their deadlines.
        try await eventually { clock.sleeperDeadlines.count == 2 }
        #expect(clock.sleeperDeadlines.sorted() == [date("2026-11-28T07:00:00Z"), date("2026-11-30T08:30:00Z")])
    }

    @Test func missedTicksWhileStoppedRunOnceAtStart() async throws {
        let now = date("2026-11-27T12:00:00Z")
        let clock = ManualClock(now)
        let log = PollLog()
        // Stopped for three hours: 36 ticks of `every 5m` and 3 hourly cron ticks were missed.
        let lastStarts = ["every": now.addingTimeInterval(-3 * 3600), "hourly": now.addingTimeInterval(-3 * 3600 - 60)]
        let scheduler = InboundScheduler<Void>(
            entries: [.init(rule: "every", schedule: .every(.seconds(300))), .init(rule: "hourly", schedule: .cron(try CronExpression("0 * * * *")))],
            clock: clock, timeZone: utc, jitter: { _ in 0 }, lastStart: { lastStarts[$0] }, poll: { log.append($0, clock.now()) })
        let task = Task { await scheduler.run() }
        defer { task.cancel() }
        try await eventually { log.count == 2 }
        #expect(log.times("every") == [now])
        #expect(log.times("hourly") == [now])
        try await eventually { clock.sleeperDeadlines.count == 2 }
        #expect(clock.sleeperDeadlines.sorted() == [now.addingTimeInterval(300), date("2026-11-27T13:00:00Z")],
                "after the catch-up poll, the schedule continues from it")
        #expect(log.count == 2, "one catch-up poll, not one per missed tick")
    }

    @Test func onePollPerRuleAtATime() async throws {
        let clock = ManualClock(date("2026-11-27T12:00:00Z"))
        let running = Mutex((now: 0, most: 0, polls: 0))
        let permits = Mutex(0)
        let scheduler = InboundScheduler<Int>(entries: [.init(rule: "r", schedule: .every(.seconds(60)))], clock: clock, timeZone: utc,
                                              jitter: { _ in 0 }, lastStart: { _ in nil }, poll: { _ in
            let number = running.withLock { state -> Int in
                state.now += 1
                state.most = max(state.most, state.now)
                state.polls += 1
                return state.polls
            }
            // Hold the poll open until the test lets it finish.
            try? await eventually {
                permits.withLock { permits in
                    guard permits > 0 else { return false }
                    permits -= 1
                    return true
                }
            }
            running.withLock { $0.now -= 1 }
            return number
        })
        let task = Task { await scheduler.run() }
        defer { task.cancel() }
        try await eventually { running.withLock { $0.now } == 1 }
        // Two manual polls arrive while the scheduled one is still running: they queue behind it.
        async let first = scheduler.pollNow(rule: "r")
        async let second = scheduler.pollNow(rule: "r")
        permits.withLock { $0 = 3 }
        let numbers = await [first, second]
        #expect(Set(numbers.compactMap { $0 }) == [2, 3])
        #expect(running.withLock { $0.most } == 1)
        #expect(await scheduler.pollNow(rule: "unknown") == nil)
    }

    @Test func updateAddsRemovesAndReschedulesRules() async throws {
        let start = date("2026-11-27T10:00:00Z")
        let clock = ManualClock(start)
        let log = PollLog()
        let starts = Mutex<[String: Date]>([:])
        let scheduler = InboundScheduler<Void>(
            entries: [.init(rule: "a", schedule: .every(.seconds(600))), .init(rule: "b", schedule: .every(.seconds(600)))],
            clock: clock, timeZone: utc, jitter: { _ in 0 }, lastStart: { rule in starts.withLock { $0[rule] } },
            poll: { rule in
                starts.withLock { $0[rule] = clock.now() }
                log.append(rule, clock.now())
            })
        let task = Task { await scheduler.run() }
        defer { task.cancel() }
        try await eventually { log.count == 2 }
        try await eventually { clock.sleeperDeadlines.count == 2 }
        // SIGHUP: b is removed, a now polls every minute, c is new.
        scheduler.update(entries: [.init(rule: "a", schedule: .every(.seconds(60))), .init(rule: "c", schedule: .cron(try CronExpression("30 10 * * *")))])
        try await eventually { Set(clock.sleeperDeadlines) == [start.addingTimeInterval(60), date("2026-11-27T10:30:00Z")] }
        #expect(await scheduler.pollNow(rule: "b") == nil, "a removed rule is no longer polled")
        for _ in 0..<2 {
            let target = log.count + 1
            _ = try await clock.advanceToNextDeadline(sleepers: 2)
            try await eventually { log.count >= target }
        }
        #expect(log.times("a") == [start, start.addingTimeInterval(60), start.addingTimeInterval(120)])
        #expect(log.times("b") == [start])
        #expect(log.times("c").isEmpty)
    }

    @Test func timingIsAPureFunction() throws {
        let now = date("2026-11-27T12:00:00Z")
        let every = Schedule.every(.seconds(600))
        #expect(PollTiming.due(every, lastStart: nil, now: now, timeZone: utc, jitter: 3) == now.addingTimeInterval(3))
        #expect(PollTiming.due(every, lastStart: now.addingTimeInterval(-60), now: now, timeZone: utc, jitter: 3) == now.addingTimeInterval(543))
        #expect(PollTiming.due(every, lastStart: now.addingTimeInterval(-6000), now: now, timeZone: utc, jitter: 3) == now)
        let cron = Schedule.cron(try CronExpression("0 2 * * *"))
        #expect(PollTiming.due(cron, lastStart: nil, now: now, timeZone: berlin, jitter: 3) == date("2026-11-28T01:00:00Z"))
        #expect(PollTiming.due(cron, lastStart: date("2026-11-26T01:00:00Z"), now: now, timeZone: berlin, jitter: 3) == now)
        #expect(PollTiming.maximumJitter(for: .seconds(60)) == 6)
        #expect(PollTiming.maximumJitter(for: .seconds(3600)) == 30)
    }
}
