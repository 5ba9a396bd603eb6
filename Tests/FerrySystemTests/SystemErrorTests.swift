import FerrySystem
import FerryTestSupport
import Foundation
import SystemPackage
import Testing

/// The one representation of a failed system call: its message, its advice by errno class, and the
/// errno real calls leave in it.
struct SystemErrorTests {
    /// What the operator is told to do, for each class of errno that has one answer.
    @Test(arguments: [
        (Errno.permissionDenied, "read/write access"),
        (Errno.notPermitted, "read/write access"),
        (Errno.noSpace, "the disk is full; free space"),
        (Errno.diskQuotaExceeded, "quota"),
        (Errno.readOnlyFileSystem, "read-only"),
        (Errno.tooManySymbolicLinkLevels, "symbolic link; ferry never follows"),
        (Errno.tooManyOpenFiles, "LimitNOFILE"),
        (Errno.tooManyOpenFilesInSystem, "LimitNOFILE"),
        (Errno.ioError, "I/O error"),
    ])
    func adviceByErrnoClass(errno: Errno, says: String) {
        let error = SystemError("open", path: "/srv/outbox/a.edi", errno: errno)
        #expect(error.advice?.contains(says) == true, "\(errno): \(error)")
        #expect(error.description.hasSuffix(" — " + (error.advice ?? "")))
    }

    /// Errnos whose fix depends on what was attempted carry no generic advice; the caller gives its own.
    @Test func noGenericAdviceWhereTheFixDependsOnTheCall() {
        for errno in [Errno.noSuchFileOrDirectory, .fileExists, .invalidArgument, .wouldBlock] {
            #expect(SystemError.advice(for: errno) == nil, "\(errno)")
        }
        let missing = SystemError("create", path: "/srv/inbox/.a.part", errno: .noSuchFileOrDirectory, advice: "create /srv/inbox or fix download_to")
        #expect(missing.description == "create /srv/inbox/.a.part failed: No such file or directory (errno 2) — create /srv/inbox or fix download_to")
        let plain = SystemError("fsync", path: "/srv/inbox", errno: .fileExists)
        #expect(plain.description == "fsync /srv/inbox failed: File exists (errno 17)")
        let noPath = SystemError("pipe", errno: .tooManyOpenFiles)
        #expect(noPath.description.hasPrefix("pipe failed: Too many open files (errno 24) — "))
    }

    /// A caller's own advice replaces the generic one.
    @Test func callerAdviceWins() {
        let error = SystemError("lock", path: "/var/lib/ferry/ferry.pid", errno: .wouldBlock, advice: "ferry already runs; stop it first")
        #expect(error.advice == "ferry already runs; stop it first")
        #expect(SystemError("write", path: "/x", errno: .noSpace, advice: "free space under /x").advice == "free space under /x")
    }

    @Test func outOfSpaceIsEnospcAndEdquotOnly() {
        #expect(SystemError("write", errno: .noSpace).isOutOfSpace)
        #expect(SystemError("write", errno: .diskQuotaExceeded).isOutOfSpace)
        #expect(!SystemError("write", errno: .ioError).isOutOfSpace)
    }

    /// Equal errors compare equal and pattern-match on the errno, as callers that skip ENOENT or ELOOP do.
    @Test func equatableAndMatchable() {
        let a = SystemError("open", path: "/x", code: ENOENT)
        #expect(a == SystemError("open", path: "/x", errno: .noSuchFileOrDirectory))
        #expect(a != SystemError("open", path: "/y", errno: .noSuchFileOrDirectory))
        let thrown: any Error = a
        guard case let error as SystemError = thrown, error.errno == .noSuchFileOrDirectory else {
            Issue.record("not matched as ENOENT: \(thrown)")
            return
        }
    }

    /// `retrying` returns a call's result, and turns a real failure into the call's errno and path.
    @Test func retryingCarriesTheRealErrno() throws {
        let dir = try TempDirectory()
        let fd = try SystemError.retrying("open", path: dir.path) { open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        #expect(fd >= 0)
        close(fd)
        let missing = dir.path + "/missing"
        let error = #expect(throws: SystemError.self) {
            try SystemError.retrying("open", path: missing) { open(missing, O_RDONLY | O_CLOEXEC) }
        }
        #expect(error?.errno == .noSuchFileOrDirectory)
        #expect(error?.path == missing && error?.operation == "open")
        let link = dir.path + "/link"
        #expect(symlink(dir.path, link) == 0)
        let loop = #expect(throws: SystemError.self) {
            try SystemError.retrying("open", path: link) { open(link, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        }
        #expect(loop?.errno == .tooManySymbolicLinkLevels)
        #expect(loop?.description.contains("ferry never follows or sends links") == true)
    }

    /// A `chmod 000` folder refuses an ordinary user: EACCES, and the advice is about permissions.
    @Test func realPermissionDenied() throws {
        let folder = try LockedFolder()
        let locked = folder.path
        defer { withExtendedLifetime(folder) {} }
        let error = try WithoutRootAccess.run { () -> SystemError? in
            do throws(SystemError) {
                let fd = try SystemError.retrying("create", path: locked + "/a.edi") { open(locked + "/a.edi", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) }
                close(fd)
                return nil
            } catch {
                return error
            }
        }
        #expect(error?.errno == .permissionDenied)
        #expect(error?.description.contains("give the ferry user read/write access") == true)
        #expect(access(locked, W_OK) == 0, "the test process itself is still root: only the body's thread lost the access")
    }
}
