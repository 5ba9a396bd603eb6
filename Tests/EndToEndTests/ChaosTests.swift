import Foundation
import Testing
import FerryTestSupport

/// The seeds a run plays. CI plays `ci`; `CHAOS_SEED=s` replays one seed; `CHAOS_SEEDS=N` plays N seeds
/// from `CHAOS_SEED_BASE` (default: derived from the clock, and printed, so any failure can be replayed).
enum ChaosSeeds {
    /// Fixed, so CI is repeatable. Together they play every producer (the root swap in 15); after_send
    /// archive (6), delete (15) and keep (29); SIGKILLs, reloads and invalid reloads in each; a full
    /// state_dir and a full archive file system (6). Against the pre-#13 binary they find 26, 23 and 2
    /// broken promises (docs/chaos.md).
    static let ci: [UInt64] = [6, 15, 29]

    static var selected: [UInt64] {
        let environment = ProcessInfo.processInfo.environment
        if let one = environment["CHAOS_SEED"].flatMap(UInt64.init) { return [one] }
        if let count = environment["CHAOS_SEEDS"].flatMap(Int.init), count > 0 {
            let base = environment["CHAOS_SEED_BASE"].flatMap(UInt64.init) ?? (UInt64(Date().timeIntervalSince1970) % 1_000_000) * 1000
            return (0..<count).map { base + UInt64($0) }
        }
        return ci
    }
}

/// The adversarial test: a deployment's bad day against the real `ferry` binary and the emulator, checked
/// by an oracle against what the producers wrote and what the partner received (docs/chaos.md).
@Suite(.serialized) struct ChaosTests {
    /// A seed must mean one plan, and the CI seeds together must play every producer and every kind of
    /// trouble. `CHAOS_PRINT_PLANS=N` prints the plans of seeds 0..<N, to choose seeds.
    @Test func plansAreReproducibleAndTheCISeedsCoverEverything() {
        var kinds: Set<String> = []
        var kills = 0, reloads = 0, invalid = 0, fills = 0, archiveFills = 0
        for seed in ChaosSeeds.ci {
            let plan = ChaosPlan(seed: seed)
            #expect(plan.description == ChaosPlan(seed: seed).description)
            for event in plan.events {
                switch event.action {
                case .produce(_, let producer, _): kinds.insert(producer.kind.split(separator: "(")[0].split(separator: "+")[0].description)
                case .kill: kills += 1
                case .reload: reloads += 1
                case .invalidReload: invalid += 1
                case .fillStateDir: fills += 1
                case .fillArchive: archiveFills += 1
                case .faults: break
                }
            }
        }
        #expect(ChaosSeeds.ci.contains { seed in
            ChaosPlan(seed: seed).events.contains { if case .kill(_, .some("StartFileTransfer")) = $0.action { true } else { false } }
        }, "no CI seed aims a kill at StartFileTransfer")
        let every = ["fast", "burst", "tmp-then-rename", "slow-writer", "rewrite-after-sent", "nfc/nfd-twins", "excluded-name", "symlink", "fifo", "hard-link",
                     "delete-before-send", "ready-marker", "swapped-parent", "moved-back"]
        #expect(Set(every).isSubset(of: kinds), "the CI seeds miss \(Set(every).subtracting(kinds).sorted())")
        #expect(kills > 0 && reloads > 0 && invalid > 0 && fills > 0 && archiveFills > 0,
                "kills \(kills), reloads \(reloads), invalid \(invalid), state_dir fills \(fills), archive fills \(archiveFills)")
        #expect(ChaosSeeds.ci.contains { seed in
            ChaosPlan(seed: seed).events.contains { if case .produce(_, .readyMarker(_, _, _, true, _), _) = $0.action { true } else { false } }
        }, "no CI seed writes a corrected file and a new marker while the first is in flight")
        #expect(ChaosSeeds.ci.contains { seed in
            ChaosPlan(seed: seed).events.contains { if case .produce(_, .swappedParent(_, _, _, true), _) = $0.action { true } else { false } }
        }, "no CI seed swaps a watched folder's parent for a symbolic link")
        if let count = ProcessInfo.processInfo.environment["CHAOS_PRINT_PLANS"].flatMap(Int.init) {
            for seed in 0..<UInt64(count) { print("chaos plan: \(ChaosPlan(seed: seed))") }
        }
    }

    @Test(.timeLimit(.minutes(10)), arguments: ChaosSeeds.selected)
    func everyCompleteVersionReachesThePartnerOnceOrIsReported(seed: UInt64) async throws {
        let duration = ProcessInfo.processInfo.environment["CHAOS_DURATION"].flatMap(Double.init)
        let plan = ChaosPlan(seed: seed, producePhase: duration)
        print("chaos plan: \(plan)")
        guard FileManager.default.isExecutableFile(atPath: FerryBinary.path) else {
            Issue.record("the ferry binary is not at \(FerryBinary.path): build it first with `swift build`")
            return
        }
        let run = try ChaosRun(plan: plan)
        let observation: ChaosObservation
        do {
            observation = try await run.play()
        } catch {
            _ = await run.ferry.stop()
            run.finish(keep: true)
            throw error
        }
        let verdict = ChaosOracle.judge(plan: plan, ledger: run.ledger, observation: observation)
        let keep = !verdict.violations.isEmpty || ProcessInfo.processInfo.environment["CHAOS_KEEP"] == "1"
        run.finish(keep: keep)
        print("chaos result: \(verdict.summary)")
        for warning in verdict.warnings { print("chaos note [seed \(seed)]: \(warning)") }
        for violation in verdict.violations { print(violation) }
        if keep { print("chaos run folder kept for inspection: \(run.root) (ferry-N.log per start, rules.yaml, outbox/, deliveries.jsonl, requests.jsonl, state-copy/ when on tmpfs)") }
        #expect(verdict.violations.isEmpty, """
            \(verdict.violations.count) broken promises (first 40):
            \(verdict.violations.prefix(40).map(\.description).joined(separator: "\n"))
            plan: \(plan)
            run folder: \(run.root)
            """)
    }
}
