import Foundation
import Testing
import FerryTestSupport

/// "A compressed month" (issue #16, must show 7): waves of files with faults, reloads and SIGKILLs, and
/// what an operator would check after months: nothing lost, duplicates only as reported, memory, open
/// descriptors and journal size not growing. CI plays the short plan (SoakPlan's defaults); `make soak`
/// plays the long one with the release binary (docs/benchmarks.md, "make soak").
@Suite(.serialized) struct SoakTests {
    @Test(.timeLimit(.minutes(60)))
    func wavesWithFaultsReloadsAndKillsLoseNothingAndGrowNothing() async throws {
        let plan = SoakPlan.fromEnvironment()
        print("soak plan: \(plan); ferry: \(FerryBinary.path)")
        guard FileManager.default.isExecutableFile(atPath: FerryBinary.path) else {
            Issue.record("the ferry binary is not at \(FerryBinary.path): build it first with `swift build`")
            return
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3") else {
            Issue.record("the soak reads the journal's row count with /usr/bin/sqlite3: install it with `make deps` (apt package sqlite3)")
            return
        }
        let run = try SoakRun(plan: plan)
        let observation: ChaosObservation
        do {
            observation = try await run.play()
        } catch {
            _ = await run.ferry.stop()
            run.finish(keep: true)
            throw error
        }
        let judging = Date()
        let verdict = ChaosOracle.judge(seed: plan.seed, ledger: run.ledger, observation: observation, replay: plan.replay)
        let judgedIn = Date().timeIntervalSince(judging)
        let samples = run.samples
        var findings: [String] = []

        // Nothing lost; duplicates only as reported (and nothing partial or outside the rules): the oracle.
        findings += verdict.violations.prefix(40).map(\.description)
        if !observation.drained { findings.append("the outboxes did not drain within \(Int(plan.drainTimeout)) s after the last wave") }

        // Memory and descriptors within the last daemon's life: a restart resets RSS, so its first whole
        // wave (after the last kill, the same warm-up for every run) is compared with the last wave.
        let first = samples[plan.firstComparedWave], last = samples[plan.waves - 1]
        if first.pid != last.pid {
            findings.append("ferry restarted after wave \(first.wave) (pid \(first.pid) → \(last.pid)): the memory of one daemon cannot be compared")
        }
        // Like with like: both after their wave was sent, nothing queued (the run waits for these two; a
        // daemon holding a backlog of thousands of files holds their state in memory).
        for sample in [first, last] where sample.drainedAfter == nil {
            findings.append("wave \(sample.wave) was still not sent \(Int(plan.drainTimeout)) s after the next wave was due (\(sample.backlog) files left)")
        }
        let rssRatio = Double(last.rssKiB) / Double(max(first.rssKiB, 1))
        if rssRatio > 1.10 {
            findings.append(String(format: "RSS grew %.1f %% from wave %d (%d KiB) to wave %d (%d KiB); at most 10 %% allowed",
                                   (rssRatio - 1) * 100, first.wave, first.rssKiB, last.wave, last.rssKiB))
        }
        // Flat: the last daemon's descriptors other than sockets never exceed those after its first whole
        // wave by more than a handful; its sockets (the HTTP connections its clients' pools hold at that
        // instant, up to 32 a pool, which vary with what was in flight) never exceed the first wave's by
        // more than one pool's worth. A leak of either grows with the files sent, past both bounds. Judged
        // on the samples taken with nothing queued, like with like (the first and last always are): while
        // files are queued, each of the 16 upload workers holds the file it reads open.
        let lastLife = samples.filter { $0.pid == last.pid && $0.wave >= first.wave && $0.drainedAfter != nil }
        if let most = lastLife.map(\.otherFds).max(), most > first.otherFds + SoakTests.descriptorSlack {
            findings.append("open descriptors other than sockets rose from \(first.otherFds) after wave \(first.wave) to \(most) (per wave: \(lastLife.map(\.otherFds)))")
        }
        if let most = lastLife.map(\.sockets).max(), most > first.sockets + SoakTests.socketSlack {
            findings.append("open sockets rose from \(first.sockets) after wave \(first.wave) to \(most) (per wave: \(lastLife.map(\.sockets)))")
        }

        // Bounded by retention: a row finished at f is pruned by the first pass after f + retention, and
        // passes come every `retention` (JournalPruner.nextPass), so at time T the journal holds at most the
        // files of waves not all finished by T − (2 × retention + 5 s for the pass itself). A wave is known
        // finished at the first sample from it on that found the outboxes empty and nothing pending.
        let window = Double(2 * plan.retentionSeconds) + 5
        let finishedBy = samples.map { wave in samples.first { $0.wave >= wave.wave && $0.drainedAfter != nil }?.measuredAt ?? .infinity }
        let owedRows = zip(samples, finishedBy).filter { $0.1 >= last.measuredAt - window }.reduce(0) { $0 + $1.0.files }
        if last.journalRows < 0 || last.journalRows > owedRows {
            findings.append("the journal holds \(last.journalRows) outbound rows after the last wave; retention \(plan.retentionSeconds) s allows at most \(owedRows) "
                            + "(the files of the waves still unfinished \(Int(window)) s before); all files: \(plan.files)")
        }

        // After a month, and with the service healthy again, `ferry status` must say so: a problem left
        // standing (a false alarm that never clears) is what an operator would be paged for.
        // A kill between two looks at a transfer once left status DEGRADED for good (the restarted daemon
        // called the files recorded at the first look "paths ferry did not send"); fixed with
        // OutboundBatch.sentFileIDs, and judged like any other problem.
        if run.finalHealth != "healthy" || !run.finalProblems.isEmpty {
            findings.append("`ferry status` after the run: health \(run.finalHealth ?? "unreadable"), problems \(run.finalProblems)")
        }

        let faults = run.faultsPlayed.values.reduce(0, +)
        print("soak result: \(verdict.summary)")
        print(String(format: "soak figures: %d files, %d waves, %.0f s of waves (%.0f s in all), %d requests, %d faults (%.1f %%: %@), %d reloads, %d SIGKILLs, %d ferry starts",
                     plan.files, plan.waves, observation.producedSeconds, observation.totalSeconds, run.requestCount, faults,
                     Double(faults) * 100 / Double(max(run.requestCount, 1)),
                     run.faultsPlayed.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
                     plan.reloadWaves.count, plan.killWaves.count, observation.starts))
        print(String(format: "soak figures: %@ (%@); the oracle judged in %.1f s", run.cpuUsed.perFile(plan.files), run.cpuUsed.description, judgedIn))
        print("soak figures: \(run.errorLines) lines logged at level error; status at the end: \(run.finalHealth ?? "unreadable"), problems \(run.finalProblems)")
        print(String(format: "soak figures: RSS after wave %d %.1f MB, after wave %d %.1f MB (%+.1f %%); fds/sockets per wave %@; journal MB per wave %@; rows per wave %@",
                     first.wave, Double(first.rssKiB) / 1024, last.wave, Double(last.rssKiB) / 1024, (rssRatio - 1) * 100,
                     samples.map { "\($0.fds)/\($0.sockets)" }.joined(separator: " "),
                     samples.map { String(format: "%.2f", Double($0.journalBytes) / 1_048_576) }.joined(separator: " "),
                     samples.map { "\($0.journalRows)" }.joined(separator: " ")))
        print(String(format: "soak figures: RSS at the drain of wave %d %.1f MB, of wave %d %.1f MB (judged: %.0f s later, above)",
                     first.wave, Double(run.rssAtDrain[first.wave] ?? -1) / 1024, last.wave, Double(run.rssAtDrain[last.wave] ?? -1) / 1024,
                     Double(SoakRun.memorySettle.components.seconds)))
        print("soak figures: the partner picked up \(run.pickedUp) delivered files (older than \(Int(SoakRun.pickupAge)) s) from its folders")
        for note in verdict.warnings + run.notes { print("soak note: \(note)") }
        let keep = !findings.isEmpty || ProcessInfo.processInfo.environment["SOAK_KEEP"] == "1"
        run.finish(keep: keep)
        if keep { print("soak run folder kept: \(run.root) (ferry-N.log per start, rules.yaml, outbox-*/, deliveries.jsonl, requests.jsonl, state/)") }
        #expect(findings.isEmpty, """
            \(findings.count) findings:
            \(findings.joined(separator: "\n"))
            plan: \(plan)
            replay: \(plan.replay)
            """)
    }

    /// How many more descriptors than after its first whole wave the last daemon may hold at a later wave:
    /// its HTTP connection pool keeps what the busiest moment opened, which differs a little per wave.
    static let descriptorSlack = 4
    /// One HTTP connection pool's cap (FerryAWS `maxConcurrentRequests`).
    static let socketSlack = 32
}
