@testable import FerryEngine
import Logging
import ServiceLifecycle
import Testing

/// The daemon's parts as one ServiceGroup (issue 15): a stop reaches the last part first and each part
/// only after the one behind it has ended (so the pipelines stop before the watcher that feeds them and
/// the first part, which shuts the AWS clients down, stops last); a part that fails stops the rest the
/// same way and its error comes out of the group.
struct DaemonServiceGroupTests {
    struct PartFailed: Error {}

    /// Parts that record their start and stop and run until stopped.
    static func parts(_ names: [String], events: Locked<[String]>, failing: String? = nil) -> [any Service] {
        names.map { name in
            DaemonPart(name, onStop: { events.withLock { $0.append("\(name) asked to stop") } }) {
                events.withLock { $0.append("\(name) started") }
                defer { events.withLock { $0.append("\(name) stopped") } }
                if name == failing {
                    // Fails once every part has started, so that the order of the stop is the group's.
                    while events.withLock({ $0.filter { $0.hasSuffix("started") }.count }) < names.count { await Task.yield() }
                    throw PartFailed()
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
    }

    static func stops(_ events: [String]) -> [String] { events.filter { $0.hasSuffix(" stopped") }.map { String($0.dropLast(8)) } }

    @Test func aStopEndsThePartsInReverseOrderEachAfterTheNext() async throws {
        let events = Locked<[String]>([])
        let group = ServiceGroup(configuration: Daemon.serviceGroupConfiguration(
            parts: Self.parts(["daemon", "watcher", "outbound", "notifier"], events: events), logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            while events.withLock({ $0.filter { $0.hasSuffix("started") }.count }) < 4 { await Task.yield() }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let seen = events.withLock { $0 }
        #expect(Self.stops(seen) == ["notifier", "outbound", "watcher", "daemon"], "\(seen)")
        // Each part is asked only once the one after it has stopped.
        let asked = seen.filter { $0.hasSuffix("asked to stop") }
        #expect(asked.first == "notifier asked to stop", "systemd hears of the stop first: \(seen)")
        #expect(seen.firstIndex(of: "watcher asked to stop").map { $0 > (seen.firstIndex(of: "outbound stopped") ?? .max) } == true, "\(seen)")
    }

    @Test func aPartThatFailsStopsTheOthersInOrderAndTheGroupThrowsItsError() async throws {
        let events = Locked<[String]>([])
        let group = ServiceGroup(configuration: Daemon.serviceGroupConfiguration(
            parts: Self.parts(["daemon", "watcher", "outbound", "notifier"], events: events, failing: "watcher"), logger: Logger(label: "test")))
        await #expect(throws: PartFailed.self) { try await group.run() }
        let seen = events.withLock { $0 }
        #expect(Self.stops(seen).first == "watcher", "the failed part ended first: \(seen)")
        #expect(Self.stops(seen).dropFirst() == ["notifier", "outbound", "daemon"], "then the rest, last part first: \(seen)")
    }
}
