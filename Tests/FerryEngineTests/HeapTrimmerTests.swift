import CFerrySys
@testable import FerryEngine
import Foundation
import Logging
import Testing

/// What the daemon does with memory it freed after a burst (HeapTrimmer; docs/operations.md, "Memory"):
/// glibc keeps it mapped, the trimmer gives it back. Measured as an operator would: RssAnon in
/// /proc/self/status, with 64 MiB freed — far above what the tests running beside this one allocate.
@Suite(.serialized) struct HeapTrimmerTests {
    static func rssAnonKiB() -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("RssAnon:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    @Test func freedHeapGoesBackToTheKernel() throws {
        // 16,384 blocks of 4 KiB: below glibc's mmap threshold, so they come from an arena, as a queue
        // of files' state does; each page touched so that it counts in RSS.
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<16_384 {
            let block = try #require(malloc(4096))
            memset(block, 0x5a, 4096)
            blocks.append(block)
        }
        // Keep the last block so that the arena's top cannot simply shrink: the freed pages lie inside it,
        // as they do in a daemon that still holds its long-lived state above them.
        let kept = blocks.removeLast()
        defer { free(kept) }
        for block in blocks { free(block) }
        let freed = Self.rssAnonKiB()
        let released = HeapTrimmer(logger: Logger(label: "heap-trimmer-test")).trimIfWorthIt()
        let after = Self.rssAnonKiB()
        #expect(released, "malloc_trim said it gave nothing back")
        #expect(freed - after >= 48 * 1024, "RssAnon \(freed) KiB with 64 MiB freed, \(after) KiB after the trim")
    }

    @Test func littleFreeMemoryIsLeftAlone() {
        let trimmer = HeapTrimmer(slack: Int.max / 2, logger: Logger(label: "heap-trimmer-test"))
        #expect(!trimmer.trimIfWorthIt(), "with less free than `slack` nothing is trimmed")
    }
}
