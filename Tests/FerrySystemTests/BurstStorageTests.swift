import FerrySystem
import Testing

/// Tables sized by a burst give their storage back once mostly empty, and keep it in the steady state.
struct BurstStorageTests {
    @Test func aDictionaryABurstGrewShrinksOnceMostlyEmpty() {
        var table: [Int: String] = [:]
        for key in 0..<80_000 { table[key] = "file \(key)" }
        let burst = table.capacity
        for key in 0..<79_000 {
            table.removeValue(forKey: key)
            table.releaseBurstStorage()
        }
        #expect(table.count == 1_000)
        #expect(table.capacity < burst / 16, "capacity \(table.capacity) after the burst of \(burst)")
        #expect(table[79_500] == "file 79500", "what remains is kept")
    }

    @Test func aSetAndAnArrayToo() {
        var set = Set(0..<50_000)
        var array = Array(0..<50_000)
        for value in 0..<49_900 {
            set.remove(value)
            set.releaseBurstStorage()
        }
        array.removeFirst(49_900)
        array.releaseBurstStorage()
        #expect(set.count == 100 && set.capacity <= BurstStorage.keptCapacity * 2, "set capacity \(set.capacity)")
        #expect(array == Array(49_900..<50_000) && array.capacity <= BurstStorage.keptCapacity, "array capacity \(array.capacity)")
    }

    /// Below the kept capacity nothing is copied: the steady state allocates nothing per removal.
    @Test func theSteadyStateKeepsItsRoom() {
        var table: [Int: Int] = [:]
        for key in 0..<600 { table[key] = key }
        let room = table.capacity
        for key in 0..<600 {
            table.removeValue(forKey: key)
            table.releaseBurstStorage()
        }
        #expect(table.capacity == room)
    }
}
