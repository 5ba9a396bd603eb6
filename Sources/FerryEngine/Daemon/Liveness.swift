import FerryStore
import Foundation

/// Whether every loop of the daemon is making progress, for systemd's watchdog and `ferry status`.
///
/// A loop that waits for work (an empty queue, a schedule, a budget) is alive; a loop that started a
/// piece of work and has not finished it within the limit is stuck. Work is registered two ways:
/// explicitly (`begin`/`end`), and through the journal's activity observer, which names the loop — a task
/// local set once where each loop starts — that waits for or holds the journal. That covers the
/// commonest way a ferry stops moving while its process looks fine: the journal's file system frozen,
/// hung or gone, where every writer blocks inside SQLite. Probes add what a loop knows itself (the
/// watcher's current step).
public final class Liveness: Sendable {
    /// The loop the current task belongs to (e.g. `outbound`, `connector acme`), for the journal hook.
    @TaskLocal public static var loop = "daemon"

    /// A piece of work that has not finished.
    public struct Work: Sendable, Equatable {
        /// The loop doing it.
        public var loop: String
        /// What it is doing, in words.
        public var what: String
        /// Since when.
        public var since: ContinuousClock.Instant
    }

    /// A loop that has been on one piece of work longer than the limit.
    public struct Stuck: Codable, Sendable, Equatable {
        /// The loop's name.
        public var loop: String
        /// What it has been doing.
        public var what: String
        /// For how long, in whole seconds.
        public var seconds: Int
    }

    private let state = Locked<(next: Int, open: [Int: Work])>((0, [:]))
    private let probes = Locked<[@Sendable () -> Work?]>([])
    private let lastBeat = Locked<ContinuousClock.Instant?>(nil)
    private let clock: @Sendable () -> ContinuousClock.Instant

    /// A registry; `clock` is replaceable for tests.
    public init(clock: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.clock = clock
    }

    /// Marks the start of a piece of work; pass the token to `end`.
    public func begin(_ loop: String, _ what: String) -> Int {
        let now = clock()
        return state.withLock { state in
            state.next += 1
            state.open[state.next] = Work(loop: loop, what: what, since: now)
            return state.next
        }
    }

    /// The work of `token` is done.
    public func end(_ token: Int) {
        state.withLock { _ = $0.open.removeValue(forKey: token) }
    }

    /// Adds a source of work the registry cannot see being started, asked at every check.
    public func addProbe(_ probe: @escaping @Sendable () -> Work?) {
        probes.withLock { $0.append(probe) }
    }

    /// The journal's observer: every wait for the journal and every hold of it is work of the calling loop.
    public var journalObserver: any JournalActivityObserver { JournalWork(liveness: self) }

    private struct JournalWork: JournalActivityObserver {
        let liveness: Liveness
        func began() -> Int { liveness.begin(Liveness.loop, "waiting for or writing the journal") }
        func ended(_ token: Int) { liveness.end(token) }
    }

    /// Marks that a task of the task pool ran, every 500 ms until cancelled. If none can run (every
    /// thread of the pool blocked, e.g. in SQLite on a frozen file system), the beat stops and the
    /// `task pool` shows as stuck even when the blocked work was never registered.
    public func beatWhileRunning() async throws {
        while !Task.isCancelled {
            let now = clock()
            lastBeat.withLock { $0 = now }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Every loop that has been on one piece of work for longer than `limit`, the longest first; one
    /// entry per loop (its oldest work).
    public func stuck(longerThan limit: Duration) -> [Stuck] {
        let now = clock()
        var oldest: [String: Work] = [:]
        let open = state.withLock { Array($0.open.values) }
        var probed = probes.withLock({ $0 }).compactMap({ $0() })
        if let beat = lastBeat.withLock({ $0 }) {
            // The beat comes every 500 ms: anything beyond that is time no task could run.
            probed.append(Work(loop: "task pool", what: "no task could run: every thread of the pool is blocked", since: beat + .milliseconds(500)))
        }
        for work in open + probed {
            if let known = oldest[work.loop], known.since <= work.since { continue }
            oldest[work.loop] = work
        }
        return oldest.values
            .filter { now - $0.since > limit }
            .sorted { $0.since < $1.since }
            .map { Stuck(loop: $0.loop, what: $0.what, seconds: Int((now - $0.since).components.seconds)) }
    }
}
