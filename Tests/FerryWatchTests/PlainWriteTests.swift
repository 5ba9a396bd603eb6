import Foundation
import Logging
import Testing
import FerryTestSupport
@testable import FerryWatch

struct PlainWriteTests {
    @Test func aWrittenFileIsReportedOnceWithItsFinalSize() async throws {
        let dir = try TempDirectory()
        let watcher = FolderWatcher(rules: [WatchRule(id: "r", root: dir.path, settle: .milliseconds(200))], logger: Logger(label: "t"))
        let task = Task { try await watcher.run() }
        try await Task.sleep(for: .milliseconds(200))
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: dir.path + "/a.edi"))
        var iterator = watcher.completedFiles.makeAsyncIterator()
        let first = await iterator.next()
        #expect(first?.relativePath == "a.edi")
        #expect(first?.version.size == 4096)
        task.cancel()
        #expect(await iterator.next() == nil, "nothing else is reported and the stream finishes on cancel")
    }
}
