import FerryStore
import FerrySystem
import FerryTestSupport
import Foundation
import Logging
import Testing
@testable import FerryEngine

/// Each place the engine reports a failed system call (the former `LocalFileError`, `DownloadError`
/// and the daemon lock) reports it as a `SystemError` carrying the real errno of a real failure, and
/// tells the operator what to do. Real file systems: a chmod 000 folder seen by an ordinary user, a
/// full tmpfs, a read-only tmpfs, a symbolic link.
@Suite(.serialized) struct SystemErrorSitesTests {
    let logger = Logger(label: "test")

    @Test func localFilesPermissionDenied() throws {
        let folder = try LockedFolder()
        let locked = folder.path
        defer { withExtendedLifetime(folder) {} }
        let error = try WithoutRootAccess.run { () -> SystemError? in
            do {
                try LocalFiles.writeAtomically("x", to: locked + "/a.reason")
                return nil
            } catch {
                return error as? SystemError
            }
        }
        #expect(error?.errno == .permissionDenied)
        #expect(error?.operation == "create")
        #expect(error?.description.contains(locked + "/a.reason.ferry-tmp failed: Permission denied (errno 13) — give the ferry user read/write access") == true,
                "\(String(describing: error))")
    }

    @Test func localFilesDiskFull() throws {
        let dir = try TempDirectory()
        let disk = try Tmpfs(at: dir.path + "/small", size: "64k")
        disk.fill()
        let error = #expect(throws: SystemError.self) { try LocalFiles.writeAtomically(String(repeating: "x", count: 8192), to: disk.path + "/a.reason") }
        #expect(error?.errno == .noSpace)
        #expect(error?.isOutOfSpace == true)
        #expect(error?.description.contains("the disk is full; free space and ferry resumes") == true, "\(String(describing: error))")
    }

    @Test func localFilesReadOnly() throws {
        let dir = try TempDirectory()
        let disk = try Tmpfs(at: dir.path + "/ro", size: "64k", readOnly: true)
        let error = #expect(throws: SystemError.self) { try LocalFiles.writeAtomically("x", to: disk.path + "/a.reason") }
        #expect(error?.errno == .readOnlyFileSystem)
        #expect(error?.description.contains("read-only") == true)
    }

    /// The pipeline skips a file replaced by a link by matching ELOOP: the open of a link says so.
    @Test func localFilesSymbolicLink() throws {
        let dir = try TempDirectory()
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir.path + "/real.edi"))
        #expect(symlink(dir.path + "/real.edi", dir.path + "/link.edi") == 0)
        let error = #expect(throws: SystemError.self) { _ = try LocalFiles.OpenFile(path: dir.path + "/link.edi") }
        #expect(error?.errno == .tooManySymbolicLinkLevels)
        #expect(error?.description.contains("ferry never follows or sends links") == true)
        let gone = #expect(throws: SystemError.self) { _ = try LocalFiles.OpenFile(path: dir.path + "/gone.edi") }
        #expect(gone?.errno == .noSuchFileOrDirectory)
    }

    /// download_to on a read-only file system: the create fails with EROFS, nothing is journaled as
    /// downloading.
    @Test func downloadPlacementReadOnly() async throws {
        let state = try TempDirectory()
        let disk = try Tmpfs(at: state.path + "/inbox", size: "64k", readOnly: true)
        let journal = try Journal(directory: state.path, logger: logger)
        let placement = InboundPlacementTests()
        let file = try placement.retrieved("a.csv", in: journal)
        do {
            _ = try await DownloadPlacement(directory: disk.path, onConflict: .rename).place(file, journal: journal, fill: placement.write("x"))
            Issue.record("placing into a read-only file system succeeded")
        } catch let error as SystemError {
            #expect(error.errno == .readOnlyFileSystem)
            #expect(error.operation == "create" && error.path?.hasPrefix(disk.path + "/") == true, "\(error)")
        }
        #expect(try journal.inboundFile(file.id)?.state == .inS3)
    }

    /// A second daemon on the same state_dir: EWOULDBLOCK, and the message names the running pid.
    @Test func daemonLockHeld() throws {
        let state = try TempDirectory()
        let first = try DaemonLock(stateDir: state.path)
        let error = #expect(throws: SystemError.self) { _ = try DaemonLock(stateDir: state.path) }
        #expect(error?.errno == .wouldBlock)
        #expect(error?.description.contains("ferry already runs with this state_dir as pid \(getpid()); stop it first") == true,
                "\(String(describing: error))")
        withExtendedLifetime(first) {}
    }
}
