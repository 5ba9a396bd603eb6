import FerrySystem
import Foundation
import Testing
@testable import FerryAWS

/// An upload's source that cannot be read is a `.localFile` AWSError carrying the failed call as a
/// `SystemError`: the real errno, and the same message shape as every other failed system call.
struct LocalFileErrorTests {
    @Test func missingAndLinkedSourcesCarryTheirErrno() throws {
        let dir = try TempDirectoryPath()
        let missing = dir.path + "/missing.edi"
        let gone = #expect(throws: AWSError.self) { _ = try FileIO.openForReading(missing) }
        #expect(gone?.kind == .localFile && gone?.code == "LocalFileError")
        #expect(gone?.outcome == .notStarted, "a file that cannot be read was never sent")
        #expect(gone?.cause == SystemError("open", path: missing, errno: .noSuchFileOrDirectory))
        #expect(gone?.message == "open \(missing) failed: No such file or directory (errno 2)")
        #expect(symlink(dir.path, dir.path + "/link") == 0)
        let link = #expect(throws: AWSError.self) { _ = try FileIO.openForReading(dir.path + "/link") }
        #expect(link?.cause?.errno == .tooManySymbolicLinkLevels)
        #expect(link?.message.contains("ferry never follows or sends links") == true)
    }
}
