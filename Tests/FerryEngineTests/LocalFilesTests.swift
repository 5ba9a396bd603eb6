import FerryTestSupport
import Foundation
import Testing
import FerrySystem
@testable import FerryEngine

/// The small local-file and naming helpers of the outbound pipeline.
struct LocalFilesTests {
    /// Both ways of moving: renameat2(RENAME_NOREPLACE), and link + unlink where a file system lacks it.
    @Test(arguments: [true, false])
    func moveNoReplaceMakesTheFolderAndNeverOverwrites(rename: Bool) throws {
        let dir = try TempDirectory()
        for name in ["a.edi", "b.edi", "c.edi"] {
            try Data(name.utf8).write(to: URL(fileURLWithPath: dir.path + "/" + name))
        }
        let target = dir.path + "/sent/2026-11-27/x.edi"
        #expect(try LocalFiles.moveNoReplace(dir.path + "/a.edi", to: target, rename: rename) == target, "a missing day folder is created")
        #expect(try LocalFiles.moveNoReplace(dir.path + "/b.edi", to: target, rename: rename) == dir.path + "/sent/2026-11-27/x (1).edi")
        #expect(try LocalFiles.moveNoReplace(dir.path + "/c.edi", to: target, rename: rename) == dir.path + "/sent/2026-11-27/x (2).edi")
        #expect(FileManager.default.contents(atPath: target) == Data("a.edi".utf8), "the first one was not overwritten")
        #expect(FileManager.default.contents(atPath: dir.path + "/sent/2026-11-27/x (2).edi") == Data("c.edi".utf8))
        for name in ["a.edi", "b.edi", "c.edi"] { #expect(!FileManager.default.fileExists(atPath: dir.path + "/" + name)) }
        let vanished = #expect(throws: SystemError.self, "a vanished source is an error, not an empty archive entry") {
            try LocalFiles.moveNoReplace(dir.path + "/a.edi", to: dir.path + "/sent/other/y.edi", rename: rename)
        }
        #expect(vanished?.errno == .noSuchFileOrDirectory, "the error carries the call's errno: \(String(describing: vanished))")
    }

    @Test func calendarDaysArePaddedAndUseTheRequestedZone() {
        let date = Date(timeIntervalSince1970: 1_767_225_599)  // 2025-12-31T23:59:59Z
        #expect(CalendarDay(date, utc: true).formatted(separator: "/") == "2025/12/31")
        #expect(CalendarDay(Date(timeIntervalSince1970: 86_400 * 40), utc: true).formatted(separator: "-") == "1970-02-10")
        var parts = tm()
        var seconds = time_t(1_767_225_599)
        localtime_r(&seconds, &parts)
        #expect(CalendarDay(date, utc: false).day == parts.tm_mday, "archive folders follow local time")
    }

    @Test func asyncQueueDrainTakesWhatIsQueuedEvenWithAnUnboundedMaximum() async {
        let queue = AsyncQueue<Int>()
        await queue.push(contentsOf: [1, 2, 3])
        #expect(await queue.next() == 1)
        #expect(await queue.drain(max: .max) == [2, 3])
        #expect(await queue.drain(max: .max) == [])
        await queue.push(4)
        #expect(await queue.drain(max: 0) == [])
        #expect(await queue.count == 1)
    }
}
