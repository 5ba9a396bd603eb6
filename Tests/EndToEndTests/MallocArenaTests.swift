import Foundation
import Testing
import FerryTestSupport

/// `ferry run` keeps its heap in two malloc arenas (start.c): after the 200,000-file soak's backlog was
/// sent, eight per-thread arenas held 5–12 MB resident each around 5–6 MB of live heap in all, pages
/// `malloc_trim` cannot return because each still holds something (docs/operations.md, "Memory").
@Suite(.serialized) struct MallocArenaTests {
    /// glibc's arenas other than the main one, in a process's memory map: each is a heap mapped at a
    /// 64 MiB boundary, 64 MiB in all, the part in use read-write and the rest reserved (`---p`).
    static func secondaryArenas(pid: Int32) throws -> Int {
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        var regions: [(start: UInt64, end: UInt64, perms: String, anonymous: Bool)] = []
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5 else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16) else { continue }
            regions.append((start, end, String(fields[1]), fields.count == 5))
        }
        let heapSize: UInt64 = 64 << 20
        var arenas = 0
        for (index, region) in regions.enumerated() where region.anonymous && region.perms.hasPrefix("rw") && region.start % heapSize == 0 {
            let reserved = index + 1 < regions.count && regions[index + 1].anonymous && regions[index + 1].perms == "---p"
                && regions[index + 1].start == region.end ? regions[index + 1].end - region.end : 0
            if region.end - region.start + reserved == heapSize { arenas += 1 }
        }
        return arenas
    }

    @Test func theDaemonsHeapStaysInTwoArenasWhateverItsThreads() async throws {
        let scenario = try OutboundScenario(afterSend: "archive")
        try scenario.start()
        let daemon = try #require(scenario.daemon)
        // Work on every thread the daemon has: the watcher, uploads on the HTTP thread, journal writes,
        // submissions and tracking on the pool.
        let written = try scenario.drop(300)
        #expect(await eventually(timeout: 120) { scenario.partnerFiles().count >= written.count },
                "\(scenario.partnerFiles().count) of \(written.count) arrived; log:\n\(daemon.log.suffix(2000))")
        let pid = daemon.process.processIdentifier
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count
        let arenas = try Self.secondaryArenas(pid: pid)
        #expect(threads > 2, "the daemon runs \(threads) threads")
        #expect(arenas <= 1, "\(arenas) arenas besides the main one (\(threads) threads): glibc's default of one per thread")
        #expect(await daemon.stop() == 0)
    }
}
