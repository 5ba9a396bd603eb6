import FerrySystem
import FerryTestSupport
import Foundation
import Synchronization
import Testing
@testable import FerryWatch

enum FerryTestSupportTemp {
    static func make() throws -> TempDirectory { try TempDirectory(prefix: "ferry-watch") }
}

@Suite struct InotifyTests {
    @Test func addWatchOnAMissingFolderThrowsWithErrno() throws {
        let inotify = try Inotify()
        #expect { try inotify.addWatch("/nonexistent/ferry/folder") } throws: { error in
            let error = error as? WatchError
            return error?.errno == .noSuchFileOrDirectory && error?.message.contains("/nonexistent/ferry/folder") == true
        }
    }

    @Test func readerDeliversEventsAndStopsCleanly() async throws {
        let temp = try FerryTestSupportTemp.make()
        let inotify = try Inotify()
        let wd = try inotify.addWatch(temp.path)
        let (stream, continuation) = AsyncStream<[InotifyEvent]>.makeStream()
        try inotify.startReader { continuation.yield($0) }
        try WatchHarness.write(temp.path + "/hello.txt")
        var names: [String] = []
        for await batch in stream {
            names += batch.filter { $0.wd == wd && $0.has(InotifyFlag.closeWrite) }.map(\.name)
            inotify.batchConsumed()
            if !names.isEmpty { break }
        }
        #expect(names == ["hello.txt"])
        // stop() returns only after the reader thread has exited; a second call is harmless.
        inotify.stop()
        inotify.stop()
        continuation.finish()
    }

    @Test func deadlineHeapPopsInDeadlineOrder() {
        var heap = DeadlineHeap<Int>()
        let start = ContinuousClock.now
        for value in [5, 1, 9, 3, 7, 2, 8] { heap.insert(value, at: start.advanced(by: .seconds(value))) }
        #expect(heap.popDue(at: start) == nil)
        var popped: [Int] = []
        while let entry = heap.popDue(at: start.advanced(by: .seconds(7))) { popped.append(entry.payload) }
        #expect(popped == [1, 2, 3, 5, 7])
        #expect(heap.count == 2)
    }

    /// A settle timer for each of 24,000 files at once: once they have fired the heap's storage goes back.
    @Test func aDeadlineHeapGivesBackWhatABurstMadeIt() {
        var heap = DeadlineHeap<Int>()
        let start = ContinuousClock.now
        for value in 0..<24_000 { heap.insert(value, at: start.advanced(by: .milliseconds(value))) }
        while heap.popDue(at: start.advanced(by: .seconds(24))) != nil {}
        #expect(heap.isEmpty)
        #expect(heap.entries.capacity <= BurstStorage.keptCapacity, "capacity \(heap.entries.capacity) after 24,000 timers")
    }

    /// The watcher's tables of a folder's files (reported versions, files settling) after 24,000 files
    /// came and went.
    @Test func aNameTableGivesBackWhatABurstMadeIt() {
        var table = NameTable<Int>()
        for index in 0..<24_000 { table["w000-a-\(index).edi"] = index }
        for index in 0..<24_000 where index % 2 == 0 { table.removeValue(forKey: "w000-a-\(index).edi") }
        for index in 0..<24_000 where index % 2 == 1 { table["w000-a-\(index).edi"] = nil }
        #expect(table.isEmpty)
        #expect(table.storage.capacity <= BurstStorage.keptCapacity, "capacity \(table.storage.capacity) after 24,000 names")
        var names = NameSet()
        for index in 0..<24_000 { names.insert("sub-\(index)") }
        for index in 0..<24_000 { names.remove("sub-\(index)") }
        #expect(names.storage.capacity <= BurstStorage.keptCapacity, "capacity \(names.storage.capacity) after 24,000 names")
    }
}
