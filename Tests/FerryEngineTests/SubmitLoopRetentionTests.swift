import CFerrySys
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import FerryWatch
import Foundation
import Testing

/// The connector's submit loop lives as long as the daemon and starts a child task per batch. A plain
/// task group keeps every finished child (its task object and the stack slabs its awaits used) until it
/// is awaited, which a loop that never ends never does: the soak saw RSS grow ~1.5 KB per file sent
/// (docs/benchmarks.md, "What the soak found"). Here the heap in use is counted before and after a
/// thousand more one-file batches: what a finished batch leaves behind shows there, per batch.
@Suite(.serialized) struct SubmitLoopRetentionTests {
    /// Bytes the allocator hands out now, over every arena (glibc's mallinfo2: in-use chunks plus mmapped ones).
    static func heapInUse() -> Int {
        Int(ferry_heap_in_use())
    }

    @Test func aFinishedBatchLeavesNoTaskBehind() async throws {
        // One file a batch: every file is one submit child task.
        let h = try OutboundFakeHarness(maxFiles: 1, maxWait: "1ms")
        let journal = h.journal
        let (watcher, pipeline, service) = try h.makePipeline()
        let warmUp = 200, measured = 1000
        func doneCount() -> Int { (try? journal.outboundFiles(in: [.done]).count) ?? -1 }
        let heap = try await withThrowingTaskGroup(of: (before: Int, after: Int)?.self) { group in
            group.addTask { try? await watcher.run(); return nil }
            group.addTask { try? await pipeline.run(); return nil }
            group.addTask { await service.run(); return nil }
            group.addTask {
                // Warm up first (the journal's page cache, the connection's buffers, the watcher's tables),
                // so that what the second round adds is what each batch leaves.
                try h.drop(warmUp, prefix: "warm")
                guard await eventually(timeout: 120, interval: 0.05, { doneCount() == warmUp }) else { return nil }
                let before = Self.heapInUse()
                try h.drop(measured, prefix: "sent")
                guard await eventually(timeout: 300, interval: 0.05, { doneCount() == warmUp + measured }) else { return nil }
                return (before, Self.heapInUse())
            }
            var result: (before: Int, after: Int)?
            while let next = try await group.next() {
                if let next { result = next; break }
            }
            group.cancelAll()
            return result
        }
        let counted = try #require(heap, "the files were not all sent: \(doneCount()) of \(warmUp + measured) done")
        #expect(h.fake.startCalls.count == warmUp + measured, "one StartFileTransfer per file")
        // What the fake and the journal keep per file (the partner's copy, the StartFileTransfer call
        // record, journal rows in SQLite's page cache) is what a batch adds with the discarding group:
        // ~1.5 KB measured; with a plain task group the finished children stay and it was ~9.4 KB.
        let perBatch = Double(counted.after - counted.before) / Double(measured)
        #expect(perBatch < Self.bytesPerBatch, "the heap grew \(counted.after - counted.before) bytes over \(measured) batches: \(Int(perBatch)) bytes a batch")
    }

    /// Between the two measured on 2026-12-07 (debug build, glibc 2.36, this test alone): 1,505 bytes a
    /// batch with `withDiscardingTaskGroup` in the submit loop, 9,384 with `withTaskGroup(of: Void.self)`.
    static let bytesPerBatch = 4096.0
}
