/// The daemon lives for months and its tables are sized by bursts: a backlog of 80,000 files fills the
/// upload queue, the watcher's tables of the files in each folder, its timer heap. Swift's arrays,
/// dictionaries and sets keep their storage when elements are removed, so after such a burst was sent
/// the heap stayed ~40 MB above where it started, for the daemon's life (the soak's 200,000-file run;
/// heaptrack: one 8.6 MB array of queued files, the watcher's per-folder tables, the timer heap).
/// A collection that a burst grew gives its storage back once it is mostly empty: when fewer than a
/// quarter of its capacity is in use and the capacity is above `keptCapacity`, it is copied into storage
/// sized for what it holds. That costs one copy each time the contents fall by three quarters, which
/// amortises to a constant per removal, and nothing in the steady state (below `keptCapacity`).
public enum BurstStorage {
    /// Room every collection may keep for the steady state without giving it back.
    public static let keptCapacity = 1024

    /// Whether storage of `capacity` holding `count` elements should be given back.
    public static func isSparse(count: Int, capacity: Int) -> Bool {
        capacity > keptCapacity && count * 4 < capacity
    }
}

extension Dictionary {
    /// After removals: gives back the storage a burst made (see `BurstStorage`).
    public mutating func releaseBurstStorage() {
        guard BurstStorage.isSparse(count: count, capacity: capacity) else { return }
        var compact = Dictionary(minimumCapacity: count)
        for (key, value) in self { compact[key] = value }
        self = compact
    }
}

extension Set {
    /// After removals: gives back the storage a burst made (see `BurstStorage`).
    public mutating func releaseBurstStorage() {
        guard BurstStorage.isSparse(count: count, capacity: capacity) else { return }
        var compact = Set(minimumCapacity: count)
        for element in self { compact.insert(element) }
        self = compact
    }
}

extension Array {
    /// After removals: gives back the storage a burst made (see `BurstStorage`).
    public mutating func releaseBurstStorage() {
        guard BurstStorage.isSparse(count: count, capacity: capacity) else { return }
        var compact: [Element] = []
        compact.reserveCapacity(count)
        compact.append(contentsOf: self)
        self = compact
    }
}
