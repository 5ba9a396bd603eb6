@testable import FerryEngine
import Testing

/// The pipeline's queues live as long as the daemon: an item taken out must not stay referenced by the
/// queue. Hunting the soak's RSS growth (`make soak`, docs/benchmarks.md) with heaptrack showed one
/// staging key per file ever sent still allocated at exit: every PendingBatch (ten files with their paths
/// and staging keys) a connector's submit loop had taken stayed in the queue's array until 1,024 of them
/// had been taken. (Most of the growth was the submit loop's task group; see OutboundPipeline.submitLoop.)
struct AsyncQueueTests {
    final class Item: Sendable {}

    struct WeakItem {
        weak var item: Item?
    }

    @Test func takenItemsAreNotRetained() async {
        let queue = AsyncQueue<Item>()
        var watched: [WeakItem] = []
        do {
            let items = (0..<100).map { _ in Item() }
            watched = items.map { WeakItem(item: $0) }
            await queue.push(contentsOf: items)
        }
        for _ in 0..<60 { _ = await queue.next() }
        #expect(watched.prefix(60).allSatisfy { $0.item == nil }, "items taken with next() are still referenced by the queue")
        #expect(watched.suffix(40).allSatisfy { $0.item != nil }, "items not yet taken must stay queued")
        _ = await queue.drain(max: 10)
        #expect(watched.prefix(70).allSatisfy { $0.item == nil }, "items taken with drain() are still referenced by the queue")
        for _ in 0..<30 { _ = await queue.next() }
        #expect(watched.allSatisfy { $0.item == nil })
        #expect(await queue.count == 0)
    }

    /// A burst fills a queue with tens of thousands of files (the soak's 200,000-file run queued 80,000);
    /// once they are taken the queue must not keep storage for all of them for the rest of the daemon's
    /// life: after that run the daemon's heap stayed ~40 MB above where it started.
    @Test func anEmptiedQueueGivesBackTheStorageABurstMadeIt() async {
        struct File: Sendable { var payload: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0) }
        let queue = AsyncQueue<File>()
        await queue.push(contentsOf: Array(repeating: File(), count: 100_000))
        #expect(await queue.storageCapacity >= 100_000)
        for _ in 0..<50_000 { _ = await queue.next() }
        _ = await queue.drain(max: 50_000)
        #expect(await queue.count == 0)
        let kept = await queue.storageCapacity
        #expect(kept <= AsyncQueue<File>.keptCapacity, "an empty queue keeps room for \(kept) items (\(kept * MemoryLayout<File?>.stride) bytes)")
        // Taken one at a time to the end, too.
        await queue.push(contentsOf: Array(repeating: File(), count: 20_000))
        for _ in 0..<20_000 { _ = await queue.next() }
        #expect(await queue.storageCapacity <= AsyncQueue<File>.keptCapacity)
        // A queue that stays small keeps its room: no allocation per item in the steady state.
        await queue.push(contentsOf: Array(repeating: File(), count: 100))
        let room = await queue.storageCapacity
        for _ in 0..<100 { _ = await queue.next() }
        #expect(await queue.storageCapacity == room)
    }
}
