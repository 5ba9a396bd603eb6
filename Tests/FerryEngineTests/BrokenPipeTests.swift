import CFerrySys
import Foundation
import Testing

/// An alert command that exits without reading its stdin leaves ferry writing into a pipe nobody reads.
/// That must fail with EPIPE, not kill the process with SIGPIPE — whatever the process does with SIGPIPE
/// (the daemon ignores it; a test runner or an embedding program need not). Before the fix, a full
/// module run died with "unexpected signal code 13" while the alert tests ran beside the one that
/// restores SIGPIPE's default action.
struct BrokenPipeTests {
    @Test func writingToAPipeWithoutAReaderFailsWithEPIPEAndTheProcessLives() {
        let previous = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, previous) }
        var fds: [Int32] = [-1, -1]
        #expect(ferry_pipe_cloexec(&fds) == 0)
        close(fds[0])
        defer { close(fds[1]) }
        let bytes: [UInt8] = Array("{\"event\":\"file_quarantined\"}".utf8)
        let written = bytes.withUnsafeBytes { ferry_write_nosigpipe(fds[1], $0.baseAddress, UInt($0.count)) }
        let code = errno
        #expect(written == -1)
        #expect(code == EPIPE)
        // Nothing left pending to be delivered once the caller's mask is back.
        var pending = sigset_t()
        sigpending(&pending)
        #expect(sigismember(&pending, SIGPIPE) == 0)
    }
}
