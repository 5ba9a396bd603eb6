import Foundation
import FerryTestSupport
import Testing
@testable import FerryEngine

/// At most one alert per (event kind, rule) per window, with a count of what was folded in. Time is
/// a fake clock: instants made by advancing one start instant, never by waiting.
struct AlertFolderTests {
    let start = ContinuousClock.now
    func at(_ seconds: Double) -> ContinuousClock.Instant { start.advanced(by: .milliseconds(Int64(seconds * 1000))) }
    func quarantined(_ path: String, rule: String = "invoices") -> AlertEvent {
        AlertEvent(.fileQuarantined, rule: rule, connector: "acme", paths: [path], message: "\(path) quarantined")
    }

    @Test func aBurstIsOneAlertThenOneSummaryWithTheFoldedCount() {
        var folder = AlertFolder(window: .seconds(60))
        #expect(folder.offer(quarantined("/out/a"), now: at(0)).map(\.paths) == [["/out/a"]])
        #expect(folder.offer(quarantined("/out/b"), now: at(1)).isEmpty)
        #expect(folder.offer(quarantined("/out/c"), now: at(2)).isEmpty)
        #expect(folder.offer(quarantined("/out/d"), now: at(59.9)).isEmpty)
        #expect(folder.due(now: at(59.99)).isEmpty, "nothing before the window ends")
        let summary = folder.due(now: at(60))
        #expect(summary.count == 1)
        #expect(summary.first?.folded == 3)
        #expect(summary.first?.paths == ["/out/b", "/out/c", "/out/d"])
        #expect(summary.first?.message == "/out/d quarantined", "the summary carries the last event folded in")
        // The summary opened a new window: the next event is folded again, not sent.
        #expect(folder.offer(quarantined("/out/e"), now: at(61)).isEmpty)
        #expect(folder.due(now: at(120)).map(\.folded) == [1])
        // A window that ends with nothing folded closes; the next event goes at once.
        #expect(folder.due(now: at(180)).isEmpty)
        #expect(folder.openWindows == 0)
        #expect(folder.offer(quarantined("/out/f"), now: at(181)).map(\.folded) == [0])
    }

    @Test func kindsAndRulesAreFoldedSeparately() {
        var folder = AlertFolder(window: .seconds(60))
        #expect(folder.offer(quarantined("/a", rule: "invoices"), now: at(0)).count == 1)
        #expect(folder.offer(quarantined("/b", rule: "orders"), now: at(0)).count == 1)
        #expect(folder.offer(AlertEvent(.batchInDoubt, rule: "invoices", paths: ["/c"], message: "in doubt"), now: at(0)).count == 1)
        #expect(folder.offer(AlertEvent(.connectorDegraded, connector: "acme", message: "ERRORED"), now: at(0)).count == 1)
        #expect(folder.offer(AlertEvent(.connectorRecovered, connector: "acme", message: "ACTIVE"), now: at(1)).count == 1)
        #expect(folder.offer(quarantined("/d", rule: "invoices"), now: at(1)).isEmpty)
        #expect(folder.due(now: at(60)).map { "\($0.event.rawValue) \($0.rule ?? "-") \($0.folded)" } == ["file_quarantined invoices 1"])
    }

    @Test func aSummaryNotYetFlushedGoesBeforeTheNextEvent() {
        var folder = AlertFolder(window: .seconds(60))
        _ = folder.offer(quarantined("/a"), now: at(0))
        _ = folder.offer(quarantined("/b"), now: at(10))
        // No tick came at 60 s; the event at 90 s first releases the summary of the ended window.
        let out = folder.offer(quarantined("/c"), now: at(90))
        #expect(out.map(\.folded) == [1, 0])
        #expect(out.map(\.paths) == [["/b"], ["/c"]])
    }

    @Test func aFoldedAlertNamesAtMostAHundredPaths() {
        var folder = AlertFolder(window: .seconds(60))
        _ = folder.offer(quarantined("/first"), now: at(0))
        for index in 0..<250 { _ = folder.offer(quarantined("/f\(index)"), now: at(1)) }
        let summary = folder.due(now: at(60))
        #expect(summary.first?.folded == 250)
        #expect(summary.first?.paths.count == AlertEvent.maximumPaths)
    }
}

/// `notify.command` runs as a real child process: no shell, the event on stdin, FERRY_* in its
/// environment, a clean signal mask, killed after its timeout.
struct AlertCommandTests {
    /// Synchronous on purpose: the signal mask is per thread, so the child must be spawned on the very
    /// thread that blocked the signals (as on a daemon thread), not on another thread of the pool.
    @Test func theChildGetsTheEventItsEnvironmentAndAnEmptySignalMask() throws {
        let directory = try TempDirectory(prefix: "alert-command")
        let out = directory.path + "/out"
        let script = directory.path + "/record.sh"
        try """
            #!/bin/sh
            cat > "$1.stdin"
            printf '%s|%s|%s' "$FERRY_EVENT" "$FERRY_RULE" "$FERRY_PATH" > "$1.env"
            """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        // The daemon's threads block signals and the process ignores SIGPIPE; a child must inherit neither.
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGTERM)
        sigaddset(&blocked, SIGHUP)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let previousPipe = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previousPipe) }
        let event = AlertEvent(.fileQuarantined, rule: "invoices", connector: "acme", paths: ["/srv/out/.ferry/failed/a b.edi"], message: "quarantined")
        let outcome = AlertCommand.runBlocking(argv: [script, out], environment: AlertCommand.environment(for: event), input: event.json, timeout: .seconds(20))
        #expect(throws: Never.self) { try outcome.get() }
        #expect(FileManager.default.contents(atPath: out + ".stdin") == Data(event.json))
        #expect(try String(contentsOfFile: out + ".env", encoding: .utf8) == "file_quarantined|invoices|/srv/out/.ferry/failed/a b.edi")
        // No shell in between (a shell may reset its mask): cp copies its own /proc status.
        let copy = AlertCommand.runBlocking(argv: ["/bin/cp", "/proc/self/status", out + ".signals"], environment: [], input: [], timeout: .seconds(20))
        #expect(throws: Never.self) { try copy.get() }
        let signals = try String(contentsOfFile: out + ".signals", encoding: .utf8).split(separator: "\n").filter { $0.hasPrefix("Sig") }.joined(separator: "\n")
        #expect(signals.contains("SigBlk:\t0000000000000000"), "\(signals)")
        // Signals 1–31 at their default action (SIGPIPE above all). 32 and 33 are glibc's own (thread
        // cancellation, setxid), reserved and out of any program's reach.
        let ignored = signals.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) }
        #expect(ignored.map { $0 & 0x7fff_ffff } == 0, "\(signals)")
    }

    @Test func aFailureSaysTheStatusAndTheEndOfStderr() async throws {
        let directory = try TempDirectory(prefix: "alert-command")
        let script = directory.path + "/fail.sh"
        try "#!/bin/sh\necho 'first line' >&2\necho 'smtp relay refused the message' >&2\nexit 3\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let event = AlertEvent(.batchInDoubt, message: "in doubt")
        #expect(await Self.failure([script], event) == "\(script) exited with status 3; stderr: first line\nsmtp relay refused the message")
        #expect(await Self.failure([directory.path + "/missing"], event) == "start \(directory.path)/missing failed: No such file or directory (errno 2) — fix notify.command in the rules file")
    }

    @Test func aHangingCommandIsKilledAtItsTimeout() async throws {
        let directory = try TempDirectory(prefix: "alert-command")
        let script = directory.path + "/hang.sh"
        try "#!/bin/sh\necho 'waiting for the pager' >&2\nexec sleep 600\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let failure = await Self.failure([script], AlertEvent(.batchInDoubt, message: "x"), timeout: .milliseconds(500))
        #expect(failure == "\(script) did not finish within 0.5 seconds and was killed; stderr: waiting for the pager")
    }

    /// The message of the command's failure, or nil when it succeeded.
    static func failure(_ argv: [String], _ event: AlertEvent, timeout: Duration = .seconds(20)) async -> String? {
        do {
            try await AlertCommand(argv: argv, timeout: timeout).run(event)
            return nil
        } catch {
            return "\(error)"
        }
    }
}

/// docs/alerts.md documents the event exactly: its fields and every event kind.
struct AlertDocumentationTests {
    static func tableFirstCells(after heading: String) throws -> [String] {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        let text = try String(contentsOf: url.appendingPathComponent("docs/alerts.md"), encoding: .utf8)
        let section = try #require(text.components(separatedBy: heading + "\n").dropFirst().first)
        return section.split(separator: "\n").drop { !$0.hasPrefix("|") }.prefix { $0.hasPrefix("|") }
            .compactMap { line in line.hasPrefix("| `") ? String(line.dropFirst(3).prefix { $0 != "`" }) : nil }
    }

    @Test func theDocumentedFieldsAreExactlyTheEventsKeys() throws {
        let documented = try Self.tableFirstCells(after: "## The event")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(AlertEvent(.batchInDoubt, message: "m").json)) as? [String: Any])
        #expect(documented.sorted() == object.keys.sorted())
    }

    @Test func theDocumentedKindsAreExactlyTheEventKinds() throws {
        #expect(try Self.tableFirstCells(after: "### Event kinds") == AlertEvent.Kind.allCases.map(\.rawValue))
    }
}

/// Problems of `DaemonHealth` become alerts once when they begin or change and once when they end.
struct HealthAlertTests {
    @Test func eachProblemThatBeginsChangesOrEndsIsOneEvent() throws {
        let directory = try TempDirectory(prefix: "health-alerts")
        let health = DaemonHealth(stateDir: directory.path)
        let seen = Locked<[AlertEvent]>([])
        health.onChange.withLock { $0 = { key, message, previous in seen.withLock { $0.append(.health(key: key, message: message, previous: previous)) } } }
        health.set("journal", "the journal's file system is full (/var/lib/ferry/journal.db)")
        health.set("journal", "the journal's file system is full (/var/lib/ferry/journal.db)")   // unchanged: nothing
        health.clear("journal")
        health.clear("journal")   // already over: nothing
        health.set("connector:acme", "connector acme (c-1) is ERRORED in AWS: bad key")
        health.clear("connector:acme")
        health.set("results:invoices", "transfer t-1 reported results for paths ferry did not send")
        health.set("watch", "1 watched folder(s) missing or lost")
        health.clear("watch")
        let events = seen.withLock { $0 }
        #expect(events.map(\.event) == [.journalDegraded, .journalRecovered, .connectorDegraded, .connectorRecovered, .ruleDegraded,
                                        .daemonDegraded, .daemonRecovered])
        #expect(events[1].message == "the journal can be written again; waiting files go on (was: the journal's file system is full (/var/lib/ferry/journal.db))")
        #expect(events[2].connector == "acme" && events[2].rule == nil && events[2].message.contains("ERRORED"))
        #expect(events[3].connector == "acme" && events[3].message.hasPrefix("connector acme is usable again"))
        #expect(events[4].rule == "invoices" && events[4].connector == nil)
        #expect(events[6].message == "resolved: 1 watched folder(s) missing or lost")
    }
}
