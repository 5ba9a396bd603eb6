import FerryAWS
import FerryStore
import FerryTestSupport
import Foundation
import Testing
@testable import FerryEngine
import FerrySystem

/// Stage logic of the outbound pipeline that needs no emulator: what a failed StartFileTransfer means,
/// how results are matched to files, and the claim that after_send acts on.
struct OutboundStageTests {
    static func file(id: Int64, key: String, remoteDirectory: String?) -> OutboundFile {
        OutboundFile(id: id, rule: "r", path: "/srv/out/x", relativePath: "x", version: FileVersion(device: 1, inode: UInt64(id), size: 1, mtimeNanoseconds: 1),
                     state: .submitted, remoteDirectory: remoteDirectory, bucket: "staging", key: key, checksum: nil, batchID: 1,
                     transferID: "t", attempts: 0, lastError: nil, nextAttemptAt: nil, createdAt: Date(), updatedAt: Date())
    }

    /// AWS documents FilePath as where the file "was sent to or retrieved from": either form matches.
    @Test func resultsMatchTheS3SourceInBothFormsOrTheRemoteDestination() {
        let files = [Self.file(id: 1, key: "out/r/1/a.edi", remoteDirectory: "/inbound"),
                     Self.file(id: 2, key: "out/r/2/b.edi", remoteDirectory: "/inbound/")]
        let matcher = ResultMatcher(files: files)
        #expect(matcher.file(for: "/staging/out/r/1/a.edi") == 1)
        #expect(matcher.file(for: "staging/out/r/1/a.edi") == 1)
        #expect(matcher.file(for: "/inbound/a.edi") == 1)
        #expect(matcher.file(for: "/inbound/b.edi") == 2, "a trailing slash on the remote directory does not matter")
        #expect(matcher.file(for: "/inbound/c.edi") == nil)
        #expect(matcher.file(for: "/other/out/r/1/a.edi") == nil)
    }

    /// NFC and NFD spellings of one name are two files; Swift's String equality would make them one.
    @Test func resultsMatchNamesByTheirBytes() {
        let nfc = "caf\u{E9}.edi", nfd = "cafe\u{301}.edi"
        let matcher = ResultMatcher(files: [Self.file(id: 1, key: "k/1/\(nfc)", remoteDirectory: "/in"),
                                            Self.file(id: 2, key: "k/2/\(nfd)", remoteDirectory: "/in")])
        #expect(matcher.file(for: "/in/\(nfc)") == 1)
        #expect(matcher.file(for: "/in/\(nfd)") == 2)
    }

    /// Two files of one transfer with the same destination cannot be told apart by it.
    @Test func anAmbiguousRemoteDestinationMatchesNeither() {
        let matcher = ResultMatcher(files: [Self.file(id: 1, key: "k/1/a.edi", remoteDirectory: "/in"),
                                            Self.file(id: 2, key: "k/2/a.edi", remoteDirectory: "/in")])
        #expect(matcher.file(for: "/in/a.edi") == nil)
        #expect(matcher.file(for: "/staging/k/2/a.edi") == 2)
    }

    /// Only a call AWS answered with a 4xx provably did not start a transfer; everything else is in doubt.
    @Test func onlyA4xxAnswerIsNotInDoubt() {
        var throttled = AWSError(kind: .service, code: "ThrottlingException", message: "Rate exceeded", httpStatus: 400)
        throttled.retryAfterSeconds = 4
        #expect(SubmissionFailure(throttled) == .throttled(.seconds(4)))
        #expect(SubmissionFailure(AWSError(kind: .service, code: "ValidationException", message: "no", httpStatus: 400)) == .refused)
        // The credentials' problem, not the batch's: held without spending the files' retries.
        #expect(SubmissionFailure(AWSError(kind: .service, code: "AccessDeniedException", message: "no", httpStatus: 403)) == .denied)
        #expect(SubmissionFailure(AWSError(kind: .service, code: "InternalServiceError", message: "x", httpStatus: 500)) == .inDoubt)
        #expect(SubmissionFailure(AWSError(kind: .service, code: "HTTP504", message: "x", httpStatus: 504)) == .inDoubt)
        #expect(SubmissionFailure(AWSError(kind: .timeout, code: "Timeout", message: "x")) == .inDoubt)
        var reset = AWSError(kind: .network, code: "NetworkError", message: "connection reset")
        reset.outcome = .unknown
        #expect(SubmissionFailure(reset) == .inDoubt)
        var refused = AWSError(kind: .network, code: "NetworkError", message: "connection refused")
        refused.outcome = .notStarted
        #expect(SubmissionFailure(refused) == .throttled(.seconds(10)), "unreachable: not started, and not the file's fault")
        #expect(SubmissionFailure(nil) == .inDoubt)
    }

    /// after_send claims the sent version under a private name; a different version at the path is
    /// never claimed, and stays where it is.
    @Test func claimTakesOnlyTheExpectedVersion() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/a.edi"
        try Data("sent".utf8).write(to: URL(fileURLWithPath: path))
        let sent = try #require(LocalFiles.currentVersion(path))
        // A newer version renamed into place.
        try Data("newer!".utf8).write(to: URL(fileURLWithPath: path + ".tmp"))
        #expect(rename(path + ".tmp", path) == 0)
        #expect(try LocalFiles.claim(path, expected: sent, as: dir.path + "/.ferry/claim/1") == false)
        #expect(FileManager.default.contents(atPath: path) == Data("newer!".utf8), "the newer version stays")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/.ferry/claim/1"))
        let newer = try #require(LocalFiles.currentVersion(path))
        #expect(try LocalFiles.claim(path, expected: newer, as: dir.path + "/.ferry/claim/2"))
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(LocalFiles.currentVersion(dir.path + "/.ferry/claim/2") == newer)
    }

    /// A read lease is refused while another process has the file open for writing.
    @Test func openForWritingIsSeenThroughALease() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/w.edi"
        try Data("x".utf8).write(to: URL(fileURLWithPath: path))
        let reader = try LocalFiles.OpenFile(path: path)
        #expect(LocalFiles.isOpenForWriting(reader.descriptor) == false)
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", "exec 3>>'\(path)'; sleep 3"]
        try writer.run()
        defer { writer.terminate(); writer.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(LocalFiles.isOpenForWriting(reader.descriptor) == true)
    }
}
