import FerrySystem
import FerryTestSupport
import Foundation
import Testing
@testable import FerryAWS

/// An upload's source that cannot be read is a `.localFile` AWSError carrying the failed call as a
/// `SystemError`: the real errno, and the same message shape as every other failed system call.
@Suite(.serialized) struct LocalFileErrorTests {
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

    /// A download into a full file system fails with the write's own errno and the disk-full advice,
    /// not a bare transport error (a real tmpfs filled to the last block, the emulator's S3).
    @Test func aDownloadOntoAFullDiskSaysSo() async throws {
        let emulator = try EmulatorProcess()
        defer { emulator.stop() }
        let client = try AWSClient(configuration: emulator.clientConfiguration(), logger: CapturedLogs().logger())
        defer { client.shutdown() }
        let s3 = S3Client(client: client)
        let dir = try TempDirectoryPath()
        try writeFile(dir.path + "/big", size: 256 << 10, seed: 7)
        _ = try await s3.putObject(bucket: emulator.stagingBucket, key: "big", fileAt: dir.path + "/big")
        let disk = try Tmpfs(at: dir.path + "/small", size: "64k")
        disk.fill()
        let error = await #expect(throws: AWSError.self) {
            _ = try await s3.getObject(bucket: emulator.stagingBucket, key: "big", toFileAt: disk.path + "/big")
        }
        #expect(error?.message.contains("writing the download failed: No space left on device (errno 28) — the disk is full") == true,
                "\(String(describing: error))")
    }
}
