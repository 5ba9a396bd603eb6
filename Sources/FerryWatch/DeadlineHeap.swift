import FerrySystem

/// A binary min-heap of deadlines: the watcher's single timer structure. Every settling file, root
/// re-check, move expiry and periodic scan is one entry here, and one sleeping task waits for the
/// earliest, so a thousand settling files cost one timer, not a thousand.
///
/// Entries are never removed early; an owner that moves its deadline later leaves the old entry in
/// place and re-inserts when it pops (lazy deletion), so each file has at most one entry.
///
/// Public for the engine's delay queue (FerryEngine's `DelayQueue`), which keeps its retries and
/// waits in one heap the same way.
public struct DeadlineHeap<Payload> {
    /// One deadline and what is due then.
    public struct Entry {
        public var deadline: ContinuousClock.Instant
        public var payload: Payload
    }

    public private(set) var entries: [Entry] = []

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
    public var earliest: ContinuousClock.Instant? { entries.first?.deadline }

    public mutating func insert(_ payload: Payload, at deadline: ContinuousClock.Instant) {
        entries.append(Entry(deadline: deadline, payload: payload))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if entries[parent].deadline <= entries[child].deadline { break }
            entries.swapAt(parent, child)
            child = parent
        }
    }

    /// Removes and returns the earliest entry if it is due at `now`. A heap a burst grew (a settle timer
    /// for each of 24,000 files) gives its storage back once mostly empty (`BurstStorage`).
    public mutating func popDue(at now: ContinuousClock.Instant) -> Entry? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        let last = entries.removeLast()
        defer { entries.releaseBurstStorage() }
        if entries.isEmpty { return first }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count, entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count, entries[right].deadline < entries[smallest].deadline { smallest = right }
            if smallest == parent { break }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }

    /// Drops entries the predicate selects; used when rules change and whole kinds of entries go stale.
    public mutating func removeAll(where shouldRemove: (Payload) -> Bool) {
        let kept = entries.filter { !shouldRemove($0.payload) }
        entries = []
        for entry in kept { insert(entry.payload, at: entry.deadline) }
    }
}
