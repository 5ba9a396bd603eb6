@testable import FerryEngine
import Foundation
import Testing

/// The liveness registry's judgement, with a clock the test moves.
struct LivenessUnitTests {
    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var current = ContinuousClock.now
        var now: ContinuousClock.Instant { lock.withLock { current } }
        func advance(_ duration: Duration) { lock.withLock { current = current + duration } }
    }

    @Test func workLongerThanTheLimitIsStuckAndFinishedWorkIsNot() {
        let clock = Clock()
        let liveness = Liveness(clock: { clock.now })
        let upload = liveness.begin("outbound", "archiving a.edi")
        let quick = liveness.begin("connector acme", "recording a batch")
        clock.advance(.seconds(1))
        liveness.end(quick)
        #expect(liveness.stuck(longerThan: .seconds(2)).isEmpty, "1 s of work is not stuck")
        clock.advance(.seconds(2))
        #expect(liveness.stuck(longerThan: .seconds(2)) == [.init(loop: "outbound", what: "archiving a.edi", seconds: 3)])
        liveness.end(upload)
        #expect(liveness.stuck(longerThan: .seconds(2)).isEmpty, "done: alive again")
    }

    @Test func eachLoopIsNamedOnceByItsOldestWorkAndTheLongestComesFirst() {
        let clock = Clock()
        let liveness = Liveness(clock: { clock.now })
        _ = liveness.begin("watcher", "scan")
        clock.advance(.seconds(5))
        _ = liveness.begin("outbound", "first")
        clock.advance(.seconds(1))
        _ = liveness.begin("outbound", "second")
        clock.advance(.seconds(10))
        let stuck = liveness.stuck(longerThan: .seconds(2))
        #expect(stuck.map(\.loop) == ["watcher", "outbound"])
        #expect(stuck.last?.what == "first" && stuck.last?.seconds == 11)
    }

    @Test func theJournalObserverNamesTheLoopOfTheCallingTask() async {
        let clock = Clock()
        let liveness = Liveness(clock: { clock.now })
        let observer = liveness.journalObserver
        let token = Liveness.$loop.withValue("connector acme") { observer.began() }
        clock.advance(.seconds(30))
        #expect(liveness.stuck(longerThan: .seconds(2)).map(\.loop) == ["connector acme"])
        observer.ended(token)
        #expect(liveness.stuck(longerThan: .seconds(2)).isEmpty)
    }

    @Test func probesAreAskedAtEveryCheck() {
        let clock = Clock()
        let liveness = Liveness(clock: { clock.now })
        let since = clock.now
        let held = Locked(true)
        liveness.addProbe { held.withLock { $0 } ? .init(loop: "journal", what: "held", since: since) : nil }
        clock.advance(.seconds(3))
        #expect(liveness.stuck(longerThan: .seconds(2)).map(\.loop) == ["journal"])
        held.withLock { $0 = false }
        #expect(liveness.stuck(longerThan: .seconds(2)).isEmpty)
    }
}

/// The pruner's step size: it follows how long steps hold the journal.
struct PruneStepSizeTests {
    @Test func slowStepsShrinkTheNextAndQuickOnesGrowItBack() {
        var size = StepSize(maximum: 500, target: .milliseconds(20))
        #expect(size.current == 500)
        size.adjust(after: .milliseconds(80))
        #expect(size.current == 250)
        for _ in 0..<10 { size.adjust(after: .milliseconds(80)) }
        #expect(size.current == 25, "never below the minimum")
        size.adjust(after: .milliseconds(10))
        #expect(size.current == 25, "between a quarter of the target and the target: unchanged")
        size.adjust(after: .milliseconds(2))
        #expect(size.current == 37)
        for _ in 0..<20 { size.adjust(after: .milliseconds(1)) }
        #expect(size.current == 500, "never above the maximum")
    }
}
