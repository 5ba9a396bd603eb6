internal import CFerrySys
import Logging

/// Gives memory the daemon freed back to the kernel. glibc keeps freed memory in its arenas (one per
/// thread that allocated, up to 8 per core) for reuse, so after a burst — thousands of files queued,
/// then sent — the daemon's RSS stays at the burst's height although the memory is free: the soak saw
/// RssAnon 12 → 19 MB over a 2,700-file backlog, all of it back after `malloc_trim` (docs/operations.md,
/// "Memory"). Every `interval`, if more than `slack` bytes lie free in the arenas, the free pages are
/// returned; the cost is one walk of the free lists every 10 s (mallinfo2), and a
/// page fault for each page reused later. 10 s rather than a minute: the heap is back down soon after a
/// backlog drains, not up to a minute later (the soak samples RSS when its outboxes are empty).
struct HeapTrimmer: Sendable {
    var interval: Duration = .seconds(10)
    /// Free bytes worth keeping: below this a trim is not worth the page faults that reuse them. 1 MiB
    /// (2 % of the daemon's RSS; 4 MiB before, 8 %, which alone nearly filled the soak's 10 % budget).
    var slack = 1 << 20
    let logger: Logger

    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            trimIfWorthIt()
        }
    }

    /// Trims when more than `slack` bytes lie free in the arenas; returns whether the kernel got pages back.
    @discardableResult
    func trimIfWorthIt() -> Bool {
        let free = Int(ferry_heap_free())
        guard free > slack else { return false }
        let released = ferry_heap_trim() == 1
        logger.debug("free heap memory returned to the kernel", metadata: ["heap.free": "\(free)", "heap.in_use": "\(ferry_heap_in_use())", "heap.released": "\(released)"])
        return released
    }
}
