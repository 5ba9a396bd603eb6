internal import CFerrySys
import FerrySystem
import Foundation

/// Runs a `notify.command`: the event on stdin, `FERRY_EVENT`/`FERRY_RULE`/`FERRY_PATH` added to the
/// daemon's environment, no shell, killed after its timeout. Blocking work (the child's stderr, its
/// exit) happens on a thread of its own, never on the concurrency pool the pipeline runs on.
struct AlertCommand: Sendable {
    /// How a run ended when it did not end well.
    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    let argv: [String]
    let timeout: Duration

    /// At most this much of the child's stderr is kept for the log: its last lines say why.
    static let stderrTail = 2048

    /// Runs the command once for `event`; throws `Failure` unless it exits 0 within the timeout.
    func run(_ event: AlertEvent) async throws {
        let environment = Self.environment(for: event)
        let input = event.json
        let (argv, timeout) = (argv, timeout)
        let outcome: Result<Void, Failure> = await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: Self.runBlocking(argv: argv, environment: environment, input: input, timeout: timeout)) }
            thread.name = "ferry-alert-command"
            thread.start()
        }
        try outcome.get()
    }

    /// The daemon's environment without systemd's notification and socket variables (a child must not
    /// speak for the daemon), plus the event's.
    static func environment(for event: AlertEvent) -> [String] {
        var environment = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            environment[key] = nil
        }
        environment["FERRY_EVENT"] = event.event.rawValue
        environment["FERRY_RULE"] = event.rule ?? ""
        environment["FERRY_PATH"] = event.paths.first ?? ""
        return environment.map { "\($0.key)=\($0.value)" }.sorted()
    }

    /// One run on the calling thread (which it blocks until the child ends or is killed).
    static func runBlocking(argv: [String], environment: [String], input: [UInt8], timeout: Duration) -> Result<Void, Failure> {
        var stdinPipe: [Int32] = [-1, -1], stderrPipe: [Int32] = [-1, -1]
        guard ferry_pipe_cloexec(&stdinPipe) == 0 else { return .failure(Failure(message: "\(SystemError.last("pipe"))")) }
        guard ferry_pipe_cloexec(&stderrPipe) == 0 else {
            close(stdinPipe[0]); close(stdinPipe[1])
            return .failure(Failure(message: "\(SystemError.last("pipe"))"))
        }
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        var pid: Int32 = 0
        var rc: Int32 = 0
        // ETXTBSY: the program was just written and a child forked meanwhile (by any thread) still holds
        // its write descriptor until that child's exec; it clears within moments.
        for attempt in 0..<10 {
            rc = withCStrings(argv) { cArgv in
                withCStrings(environment) { cEnv in
                    ferry_spawn_clean(argv[0], cArgv, cEnv, stdinPipe[0], devNull >= 0 ? devNull : stderrPipe[1], stderrPipe[1], &pid)
                }
            }
            guard rc == ETXTBSY, attempt < 9 else { break }
            usleep(50_000)
        }
        close(stdinPipe[0]); close(stderrPipe[1])
        if devNull >= 0 { close(devNull) }
        guard rc == 0 else {
            close(stdinPipe[1]); close(stderrPipe[0])
            let advice = rc == ENOENT ? "fix notify.command in the rules file"
                : rc == EACCES ? "make the command executable by the user ferry runs as" : nil
            return .failure(Failure(message: "\(SystemError("start", path: argv[0], code: rc, advice: advice))"))
        }
        // The event is small; a child that never reads stdin must not hold us, so write what fits.
        _ = fcntl(stdinPipe[1], F_SETFL, fcntl(stdinPipe[1], F_GETFL) | O_NONBLOCK)
        // A child that exits without reading makes this write fail (EPIPE), never kill the process.
        _ = input.withUnsafeBytes { ferry_write_nosigpipe(stdinPipe[1], $0.baseAddress, UInt($0.count)) }
        close(stdinPipe[1])

        let deadline = ContinuousClock.now.advanced(by: timeout)
        var tail: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var stderrOpen = true
        var status: Int32 = 0
        var exited = false
        while ContinuousClock.now < deadline {
            if stderrOpen {
                var descriptor = pollfd(fd: stderrPipe[0], events: Int16(POLLIN), revents: 0)
                if poll(&descriptor, 1, 100) > 0 {
                    let count = read(stderrPipe[0], &buffer, buffer.count)
                    if count > 0 {
                        tail += buffer[..<count]
                        if tail.count > stderrTail { tail.removeFirst(tail.count - stderrTail) }
                    } else if count == 0 || errno != EINTR {
                        stderrOpen = false
                    }
                }
            } else {
                usleep(20_000)
            }
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { exited = true; break }
        }
        // What the child wrote just before it exited is the part that says why.
        while exited && stderrOpen {
            var descriptor = pollfd(fd: stderrPipe[0], events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 0) > 0 else { break }
            let count = read(stderrPipe[0], &buffer, buffer.count)
            guard count > 0 else { break }
            tail += buffer[..<count]
            if tail.count > stderrTail { tail.removeFirst(tail.count - stderrTail) }
        }
        if !exited {
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        close(stderrPipe[0])
        let stderrText = String(decoding: tail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let said = stderrText.isEmpty ? "" : "; stderr: \(stderrText)"
        if !exited { return .failure(Failure(message: "\(argv[0]) did not finish within \(timeout) and was killed\(said)")) }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift's Glibc module lacks as macros.
        let signal = status & 0x7f
        if signal != 0 { return .failure(Failure(message: "\(argv[0]) was killed by signal \(signal)\(said)")) }
        let code = (status >> 8) & 0xff
        if code != 0 { return .failure(Failure(message: "\(argv[0]) exited with status \(code)\(said)")) }
        return .success(())
    }

    /// NUL-terminated C strings of `strings`, with a NULL after the last, for the duration of `body`.
    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        return body(pointers)
    }
}
