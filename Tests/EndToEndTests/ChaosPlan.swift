import Foundation

/// Everything one chaos run plays, drawn from its seed before anything starts: the same seed gives the
/// same plan (files, names, sizes, contents, kill and reload instants, fault windows). The machine's
/// timing is not replayed, so a replay plays the same day, not always the same interleaving.
struct ChaosPlan: Sendable, CustomStringConvertible {
    /// Outbound rule settings that a reload may change.
    struct RuleSettings: Sendable, Equatable {
        var settleMs: Int
        var batchMaxFiles: Int
        var batchMaxWaitMs: Int
        var reconcileSeconds: Int
    }

    /// What the emulator does to requests during one window.
    struct FaultWindow: Sendable {
        var rate: Double
        var kinds: [String]
        var latencyMs: Int
        /// Operations the faults are aimed at (the emulator's `operations`); nil: every request.
        var operations: [String]?
    }

    /// One way an application (or a careless operator) puts a file into the outbox.
    enum Producer: Sendable {
        /// open, write everything, close.
        case fast(size: Int)
        /// Many fast files at once (batching, max_files, queueing).
        case burst(count: Int, size: Int)
        /// `x.tmp` written and closed, then renamed to `x.edi`.
        case tmpThenRename(size: Int)
        /// Writes a header, holds the file open past `settle` (chmod and touch through the open descriptor
        /// if `touchWhileOpen`), writes the rest; in a child `sh` if `viaShell`.
        case slowWriter(size: Int, headerBytes: Int, pauses: [Double], touchWhileOpen: Bool, viaShell: Bool)
        /// Written, then rewritten (truncated in place when the file is still there) after the partner has
        /// each version: `versions` versions, `sameSize` keeping the size so only mtime tells them apart.
        case rewriteAfterSent(versions: Int, size: Int, sameSize: Bool, extraDelay: Double)
        /// The same name in NFC and in NFD: two different files.
        case unicodeTwins(size: Int)
        /// A name outside the rule's patterns (or in the default ignore list): never sent.
        case excluded(suffix: String, size: Int)
        /// A symbolic link to a file outside the outbox: never sent, nor its target.
        case symlink(size: Int)
        /// A named pipe: never opened, never sent.
        case fifo
        /// A hard link into the outbox, from outside it or to another file in it: both names are files.
        case hardLink(fromOutside: Bool, size: Int)
        /// Written, then deleted `delayMs` later, before ferry is likely to have sent it: never owed, and
        /// nothing partial may reach the partner.
        case deleteBeforeSend(size: Int, delayMs: Int)
        /// Into the `ready_marker: .done` folder: a header, a pause past settle, the rest, then `X.done`.
        /// With `corrected`, `correctAfter` seconds later a corrected file and a new marker are renamed into
        /// place (while the first may be in flight): the corrected one is owed.
        case readyMarker(size: Int, headerBytes: Int, pause: Double, corrected: Bool, correctAfter: Double)
        /// In the recursive folder: a subfolder with tenant A's files, then (after `swapAfter` s) moved away
        /// and replaced by a symbolic link to a folder outside holding tenant B's files: none of B's may
        /// ever reach the partner. With `root`, the same is done to the parent of a rule's watched folder
        /// (`tenants/A` of the `chaos-tenant` rule's `tenants/A/outbox`): the rule's root is then lost.
        case swappedParent(size: Int, tenantBFiles: Int, swapAfter: Double, root: Bool = false)
        /// Sent and archived, then moved back from the archive into the outbox by an operator: a new
        /// arrival, sent again (only played when after_send is archive).
        case movedBack(size: Int)

        var kind: String {
            switch self {
            case .fast: "fast"
            case .burst: "burst"
            case .tmpThenRename: "tmp-then-rename"
            case .slowWriter(_, _, _, let touch, let shell): "slow-writer" + (shell ? "(sh)" : "") + (touch ? "+chmod/utime" : "")
            case .rewriteAfterSent: "rewrite-after-sent"
            case .unicodeTwins: "nfc/nfd-twins"
            case .excluded: "excluded-name"
            case .symlink: "symlink"
            case .fifo: "fifo"
            case .hardLink(let outside, _): outside ? "hard-link(from outside)" : "hard-link(inside)"
            case .deleteBeforeSend: "delete-before-send"
            case .readyMarker(_, _, _, let corrected, _): corrected ? "ready-marker(corrected)" : "ready-marker"
            case .swappedParent(_, _, _, let root): root ? "swapped-parent(root)" : "swapped-parent(subfolder)"
            case .movedBack: "moved-back"
            }
        }
    }

    enum Action: Sendable {
        case produce(index: Int, Producer, seed: UInt64)
        /// SIGKILL ferry, restart it after `restartAfter` seconds. With `aimedAt`, the kill waits (up to
        /// 8 s) for the next request of that operation answered 200, or the next delivery (`delivery`),
        /// and lands the moment the emulator logs it, before or while ferry reads the answer.
        case kill(restartAfter: Double, aimedAt: String?)
        /// Rewrite the rules file with new settings and SIGHUP.
        case reload(RuleSettings)
        /// Write an invalid rules file, SIGHUP (the running rules must stay), restore it, SIGHUP again.
        case invalidReload
        case faults(FaultWindow)
        /// Fill the tmpfs state_dir for `seconds`, then free it.
        case fillStateDir(seconds: Double)
        /// Fill the tmpfs archive_dir of the `chaos` rule for `seconds`, then free it.
        case fillArchive(seconds: Double)
    }

    struct Event: Sendable {
        var at: Double
        var action: Action
    }

    /// Every fault kind the plan may choose; kinds this emulator does not know yet are dropped at run time
    /// (and said so), so the ones being added (`lost_answer`, `late_504`) are played as soon as they land.
    static let faultKinds = ["throttle", "unavailable", "internal", "drop", "lost_answer", "late_504"]
    static let aimedOperations = ["StartFileTransfer", "ListFileTransferResults", "PutObject"]
    /// What an aimed kill waits for.
    static let killAims = ["StartFileTransfer", "StartFileTransfer", "ListFileTransferResults", "PutObject", "delivery"]

    let seed: UInt64
    let producePhase: Double
    let afterSend: String
    let retries: Int
    let initial: RuleSettings
    let stateOnTmpfs: Bool
    /// The `chaos` rule archives to a small tmpfs of its own (a second file system) that is filled.
    let archiveOnTmpfs: Bool
    let transferDelayMs: Int
    let events: [Event]

    /// The longest settle the run uses (reloads may change it).
    var maxSettleMs: Int {
        var longest = initial.settleMs
        for event in events {
            if case .reload(let settings) = event.action { longest = max(longest, settings.settleMs) }
        }
        return longest
    }

    init(seed: UInt64, producePhase fixedPhase: Double? = nil) {
        self.seed = seed
        var rng = SplitMix64(seed: seed ^ 0xC4A0_5EED_F011_0000)
        producePhase = fixedPhase ?? Double(rng.int(30...45))
        afterSend = rng.weighted([("archive", 2), ("delete", 1), ("keep", 1)])
        retries = rng.int(2...5)
        let settles = [200, 300, 500, 800]
        func settings(_ rng: inout SplitMix64) -> RuleSettings {
            RuleSettings(settleMs: rng.pick(settles), batchMaxFiles: rng.int(1...10), batchMaxWaitMs: rng.pick([200, 500, 1000, 2000]),
                         reconcileSeconds: rng.int(3...8))
        }
        initial = settings(&rng)
        stateOnTmpfs = rng.chance(0.35)
        transferDelayMs = rng.pick([0, 0, 20, 100])

        var events: [Event] = []
        let phase = producePhase
        // Producers: about 1.4 a second, each kind as likely as its weight.
        var producerRNG = rng.fork()
        let producerCount = Int(phase * 1.4)
        // Slow writers pause past every settle the run will use; reloads are drawn first for that reason.
        var lifeRNG = rng.fork()
        var reloads: [Event] = []
        for _ in 0..<lifeRNG.int(0...2) {
            reloads.append(Event(at: lifeRNG.double(4...phase), action: .reload(settings(&lifeRNG))))
        }
        let maxSettle = Double(reloads.reduce(initial.settleMs) { partial, event in
            if case .reload(let s) = event.action { return max(partial, s.settleMs) }
            return partial
        }) / 1000
        for index in 0..<producerCount {
            let producer: Producer
            let size = producerRNG.chance(0.03) ? 0 : producerRNG.weighted([(producerRNG.int(20...400), 3), (producerRNG.int(400...8192), 2),
                                                                         (producerRNG.int(8192...131_072), 1)])
            switch producerRNG.weighted([("fast", 22), ("burst", 4), ("tmp", 12), ("slow", 14), ("rewrite", 8), ("twins", 5),
                                         ("excluded", 10), ("symlink", 5), ("fifo", 3), ("hardlink", 6)]) {
            case "fast": producer = .fast(size: size)
            case "burst": producer = .burst(count: producerRNG.int(8...30), size: max(1, min(size, 4096)))
            case "tmp": producer = .tmpThenRename(size: size)
            case "slow":
                let total = max(size, 64)
                producer = .slowWriter(size: total, headerBytes: producerRNG.int(1...(total / 2)),
                                       pauses: (0..<producerRNG.int(1...2)).map { _ in maxSettle + producerRNG.double(0.4...2.0) },
                                       touchWhileOpen: producerRNG.chance(0.5), viaShell: producerRNG.chance(0.3))
            case "rewrite":
                producer = .rewriteAfterSent(versions: producerRNG.int(2...3), size: max(size, 16), sameSize: producerRNG.chance(0.5),
                                             extraDelay: producerRNG.pick([0, 0, 0.05, 0.3, 1.0]))
            case "twins": producer = .unicodeTwins(size: max(size, 1))
            case "excluded": producer = .excluded(suffix: producerRNG.pick(["skip.edi", "txt", "tmp", "part", "filepart", "swp", "hidden", "tilde"]),
                                                  size: max(size, 1))
            case "symlink": producer = .symlink(size: max(size, 1))
            case "fifo": producer = .fifo
            default: producer = .hardLink(fromOutside: producerRNG.chance(0.5), size: max(size, 1))
            }
            events.append(Event(at: producerRNG.double(0.5...phase), action: .produce(index: index, producer, seed: producerRNG.next())))
        }
        // ferry's life: kills at random instants (a few may fall just after the producers stop), reloads.
        for _ in 0..<lifeRNG.int(0...4) {
            events.append(Event(at: lifeRNG.double(2...(phase + 4)), action: .kill(restartAfter: lifeRNG.pick([0, 0.2, 1, 2.5]), aimedAt: nil)))
        }
        events += reloads
        if lifeRNG.chance(0.3) { events.append(Event(at: lifeRNG.double(3...phase), action: .invalidReload)) }
        if stateOnTmpfs {
            for _ in 0..<lifeRNG.int(1...2) {
                events.append(Event(at: lifeRNG.double(3...phase), action: .fillStateDir(seconds: lifeRNG.double(2...6))))
            }
        }
        // The service: windows of faults and latency through the produce phase; quiet from the end on.
        var faultRNG = rng.fork()
        var at = 0.0
        while at < phase {
            let rate = faultRNG.weighted([(0.0, 3), (0.05, 3), (0.15, 3), (0.3, 2), (0.5, 1)])
            var kinds = Self.faultKinds.filter { _ in faultRNG.chance(0.45) }
            if kinds.isEmpty { kinds = [faultRNG.pick(Self.faultKinds)] }
            let operations: [String]? = faultRNG.chance(0.5) ? nil : Self.aimedOperations.filter { _ in faultRNG.chance(0.5) }
            events.append(Event(at: at, action: .faults(FaultWindow(rate: rate, kinds: kinds, latencyMs: faultRNG.pick([0, 0, 10, 50, 150]),
                                                                    operations: operations?.isEmpty == true ? ["StartFileTransfer"] : operations))))
            at += faultRNG.double(3...10)
        }
        // Drawn last, from a generator of its own, so that aiming left every earlier choice as it was.
        var aimRNG = rng.fork()
        events = events.map { event in
            guard case .kill(let restartAfter, _) = event.action, aimRNG.chance(0.6) else { return event }
            return Event(at: event.at, action: .kill(restartAfter: restartAfter, aimedAt: aimRNG.pick(Self.killAims)))
        }
        // The producers and troubles added later (delete before send, ready markers, swapped parents,
        // moved back from the archive, a full archive file system) come from a generator of their own,
        // drawn after every other, so that each seed's earlier plan stayed as it was.
        var laterRNG = rng.fork()
        archiveOnTmpfs = afterSend == "archive" && laterRNG.chance(0.6)
        let laterKinds: [(String, Int)] = [("delete", 3), ("marker", 4), ("swap", 2)] + (afterSend == "archive" ? [("moved-back", 2)] : [])
        for offset in 0..<Int(phase * 0.25) {
            let size = laterRNG.weighted([(laterRNG.int(20...400), 3), (laterRNG.int(400...8192), 2), (laterRNG.int(8192...65_536), 1)])
            let producer: Producer
            switch laterRNG.weighted(laterKinds) {
            case "delete": producer = .deleteBeforeSend(size: size, delayMs: laterRNG.int(0...(initial.settleMs * 3 / 2)))
            case "marker":
                let total = max(size, 64)
                producer = .readyMarker(size: total, headerBytes: laterRNG.int(1...(total / 2)), pause: maxSettle + laterRNG.double(0.4...1.5),
                                        corrected: laterRNG.chance(0.5), correctAfter: laterRNG.double(0...2))
            case "swap": producer = .swappedParent(size: size, tenantBFiles: laterRNG.int(1...4), swapAfter: laterRNG.double(0...4))
            default: producer = .movedBack(size: size)
            }
            events.append(Event(at: laterRNG.double(0.5...phase), action: .produce(index: producerCount + offset, producer, seed: laterRNG.next())))
        }
        // One rule's root can be swapped once: the first swapped-parent producer whose seed is odd does it
        // (decided without a draw, so the plan's times and bytes stay as they were).
        if let first = events.indices.filter({ index in
            if case .produce(_, .swappedParent, let seed) = events[index].action { return seed & 1 == 1 } else { return false }
        }).min(by: { events[$0].at < events[$1].at }), case .produce(let index, .swappedParent(let size, let files, let after, _), let seed) = events[first].action {
            events[first] = Event(at: events[first].at, action: .produce(index: index, .swappedParent(size: size, tenantBFiles: files, swapAfter: after, root: true), seed: seed))
        }
        if archiveOnTmpfs {
            for _ in 0..<laterRNG.int(1...2) {
                events.append(Event(at: laterRNG.double(3...phase), action: .fillArchive(seconds: laterRNG.double(2...8))))
            }
        }
        self.events = events.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
    }

    var description: String {
        var counts: [String: Int] = [:]
        var kills = 0, aimed: [String] = [], reloads = 0, invalid = 0, fills = 0, archiveFills = 0, windows: [String] = []
        for event in events {
            switch event.action {
            case .produce(_, let producer, _): counts[producer.kind, default: 0] += 1
            case .kill(_, let aim):
                kills += 1
                if let aim { aimed.append(aim) }
            case .reload: reloads += 1
            case .invalidReload: invalid += 1
            case .fillStateDir: fills += 1
            case .fillArchive: archiveFills += 1
            case .faults(let w):
                windows.append(String(format: "%.0fs:%.0f%%", event.at, w.rate * 100) + (w.rate > 0 ? "\(w.kinds)" : "")
                               + (w.operations.map { "@\($0)" } ?? "") + (w.latencyMs > 0 ? "+\(w.latencyMs)ms" : ""))
            }
        }
        let producers = counts.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
        return """
            seed \(seed): \(Int(producePhase)) s of producers [\(producers)]; after_send \(afterSend), retries \(retries), \
            settle \(initial.settleMs)ms, batch \(initial.batchMaxFiles)/\(initial.batchMaxWaitMs)ms, reconcile \(initial.reconcileSeconds)s, \
            transfer delay \(transferDelayMs)ms; \(kills) SIGKILLs\(aimed.isEmpty ? "" : " (aimed at \(aimed.joined(separator: ", ")))"), \(reloads) reloads, \(invalid) invalid reloads, \
            state_dir \(stateOnTmpfs ? "on a 16 MiB tmpfs, filled \(fills)×" : "on disk"), \
            archive \(archiveOnTmpfs ? "on an 8 MiB tmpfs, filled \(archiveFills)×" : afterSend == "archive" ? "in .ferry/sent" : "unused"); faults \(windows.joined(separator: " "))
            """
    }
}
