import FerryWatch
import Testing

/// The alarm that replaced the watcher's `Task {}` per timer deadline (issue #15: "no `Task {}` fired to
/// sleep-and-push"): one loop waits on it; deadlines move earlier; cancelling the loop ends the sleep.
@Suite struct AlarmTests {
    @Test func ringsOnceTheDeadlineHasPassedAndIsThenDisarmed() async {
        let alarm = Alarm()
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(30))
        alarm.arm(notAfter: deadline)
        var rang = false
        while !rang { rang = await alarm.wait() }
        #expect(ContinuousClock.now >= deadline, "rang before its deadline")
        #expect(alarm.deadline == nil, "disarmed once it rang")
    }

    @Test func anEarlierDeadlineWakesALoopSleepingForALaterOne() async {
        let alarm = Alarm()
        alarm.arm(notAfter: ContinuousClock.now.advanced(by: .seconds(3600)))
        let loop = Task {
            var rings = 0
            while rings == 0 { if await alarm.wait() { rings += 1 } }
            return rings
        }
        // The loop is asleep until an hour from now; an earlier deadline must wake it to ring at that one.
        try? await Task.sleep(for: .milliseconds(20))
        let earlier = ContinuousClock.now.advanced(by: .milliseconds(20))
        alarm.arm(notAfter: earlier)
        #expect(await loop.value == 1)
        #expect(ContinuousClock.now >= earlier)
    }

    @Test func aLaterDeadlineDoesNotPostponeTheArmedOne() {
        let alarm = Alarm()
        let first = ContinuousClock.now.advanced(by: .seconds(1))
        alarm.arm(notAfter: first)
        alarm.arm(notAfter: first.advanced(by: .seconds(60)))
        #expect(alarm.deadline == first)
    }

    @Test func cancellingTheLoopEndsItsWaitWithoutARing() async {
        let alarm = Alarm()
        alarm.arm(notAfter: ContinuousClock.now.advanced(by: .seconds(3600)))
        let loop = Task { await alarm.wait() }
        try? await Task.sleep(for: .milliseconds(20))
        loop.cancel()
        // Had the sleep not been a child of the wait, the wait would last the hour.
        #expect(await loop.value == false)
        #expect(alarm.deadline != nil, "still armed: nothing rang")
    }

    @Test func anUnarmedAlarmWaitsForItsFirstDeadline() async {
        let alarm = Alarm()
        let loop = Task {
            while !(await alarm.wait()) {}
        }
        try? await Task.sleep(for: .milliseconds(20))
        alarm.arm(notAfter: ContinuousClock.now)
        await loop.value
        #expect(alarm.deadline == nil)
    }
}
