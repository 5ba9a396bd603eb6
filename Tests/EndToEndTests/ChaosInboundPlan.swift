import Foundation

/// Everything one inbound chaos run plays, drawn from its seed before anything starts (docs/chaos.md,
/// "Inbound"): the rule's settings, what the partner writes into its SFTP folder and when, ferry's kills,
/// the trouble in `download_to`, and the service's fault windows. One seed, one plan; the machine's
/// timing is not replayed.
struct ChaosInboundPlan: Sendable, CustomStringConvertible {
    /// What the emulator does to requests during one window.
    struct FaultWindow: Sendable {
        var rate: Double
        var kinds: [String]
        var latencyMs: Int
        /// Operations the faults are aimed at; nil: every request.
        var operations: [String]?
    }

    /// One way a partner (or its SFTP client) puts a file into the folder ferry polls.
    enum Producer: Sendable {
        /// open, write everything in one call, close, in the partner's folder.
        case fast(size: Int)
        /// Uploaded under a hidden temporary name (`.x.uploading`, which ferry's default ignores hide),
        /// then renamed into place: the name appears whole.
        case renamedIn(size: Int)
        /// A slow upload: the header, then the rest in `pauses.count` pieces with a pause before each,
        /// the file open throughout. Only partial sizes are ever listed until it closes; each pause is
        /// shorter than `min_age` minus the listing's one-second timestamp resolution, so min_age and
        /// the size-stability rule must keep every partial state from being retrieved.
        case slowUpload(size: Int, headerBytes: Int, pauses: [Double])
        /// Written whole, then its mtime set an hour back (as `scp -p` or `rsync -t` preserve it): min_age
        /// passes at once.
        case oldMtime(size: Int)
        /// v1, then each next version only once the previous one is placed (or after 20 s, when the
        /// previous one is superseded: allowed, not owed); `sameSize` keeps the size so only the mtime
        /// (one-second resolution in a listing, so versions are at least a second apart) tells them apart.
        case rewriteAfterPlaced(versions: Int, size: Int, sameSize: Bool, inPlace: Bool)
        /// Two versions of one name in flight: v2 renamed over v1 after `gap` seconds, whatever ferry did
        /// with v1. v1 is owed only if a retrieval had fetched its bytes by then.
        case rewriteInFlight(size: Int, gap: Double, sameSize: Bool)
        /// The same name in NFC and in NFD: two files, each placed under its own byte-exact name.
        case unicodeTwins(size: Int)
        /// A name a listing may carry but ferry must refuse (control, bidi or invisible characters, `..`).
        case hostile(kind: String, size: Int)
        /// A name in ferry's default ignore list: never retrieved.
        case ignored(suffix: String, size: Int)
        /// A local file of the same name already sits in download_to: on_conflict decides.
        case localCollision(size: Int)
        /// The partner removes the file again after `after` seconds: placed at most once, not owed.
        case partnerDeletes(size: Int, after: Double)

        var kind: String {
            switch self {
            case .fast: "fast"
            case .renamedIn: "renamed-in"
            case .slowUpload: "slow-upload"
            case .oldMtime: "old-mtime"
            case .rewriteAfterPlaced(_, _, let same, let inPlace): "rewrite-after-placed" + (same ? "(same size)" : "") + (inPlace ? "(in place)" : "")
            case .rewriteInFlight(_, _, let same): "rewrite-in-flight" + (same ? "(same size)" : "")
            case .unicodeTwins: "nfc/nfd-twins"
            case .hostile(let kind, _): "hostile(\(kind))"
            case .ignored: "ignored-name"
            case .localCollision: "local-collision"
            case .partnerDeletes: "partner-deletes"
            }
        }
    }

    enum Action: Sendable {
        case produce(index: Int, Producer, seed: UInt64)
        /// SIGKILL ferry and restart it after `restartAfter` s. With `aimedAt` the kill waits (up to 8 s)
        /// for the next request of that operation answered 200 (logged by the emulator just before the
        /// answer goes out), or for `placement`: a temporary download file appearing in download_to.
        case kill(restartAfter: Double, aimedAt: String?)
        case faults(FaultWindow)
        /// Fill the download_to tmpfs to the last byte for `seconds`, then free it.
        case fillDownloadTo(seconds: Double)
        /// For `seconds`, remove every ferry temporary file (`.ferry-download-*.part`) in download_to as
        /// soon as it is seen, as a careless cleanup job would.
        case removeTemporaryFiles(seconds: Double)
    }

    struct Event: Sendable {
        var at: Double
        var action: Action
    }

    static let faultKinds = ["throttle", "unavailable", "internal", "drop", "lost_answer", "late_504"]
    static let aimedOperations = ["StartDirectoryListing", "StartFileTransfer", "ListFileTransferResults", "StartRemoteMove",
                                  "StartRemoteDelete", "GetObject", "HeadObject"]
    static let hostileKinds = ["newline", "control", "delete", "c1", "rlo", "zwsp", "bom", "dotdot"]

    let seed: UInt64
    let producePhase: Double
    let intervalSeconds: Int
    let minAgeSeconds: Int
    let onConflict: String
    /// keep, delete or move (to `ChaosInboundRun.archiveDirectory`).
    let afterRetrieve: String
    let transferDelayMs: Int
    let events: [Event]

    init(seed: UInt64, producePhase fixedPhase: Double? = nil) {
        self.seed = seed
        var rng = SplitMix64(seed: seed ^ 0x1B0C_4A05_EED0_0014)
        producePhase = fixedPhase ?? Double(rng.int(25...35))
        intervalSeconds = rng.pick([1, 1, 2])
        minAgeSeconds = rng.weighted([(0, 1), (2, 2), (3, 2)])
        onConflict = rng.weighted([("rename", 2), ("overwrite", 1), ("skip", 1)])
        afterRetrieve = rng.weighted([("keep", 1), ("delete", 2), ("move", 2)])
        transferDelayMs = rng.pick([0, 20, 100])

        var events: [Event] = []
        let phase = producePhase
        var producerRNG = rng.fork()
        let producerCount = Int(phase * 0.9)
        for index in 0..<producerCount {
            let size = producerRNG.chance(0.03) ? 0 : producerRNG.weighted([(producerRNG.int(20...400), 3), (producerRNG.int(400...8192), 2),
                                                                         (producerRNG.int(8192...65_536), 1)])
            var choices: [(String, Int)] = [("fast", 16), ("renamed", 10), ("old", 5), ("after", 10), ("inflight", 10), ("twins", 4),
                                            ("hostile", 6), ("ignored", 5), ("collision", 5), ("deletes", 4)]
            if minAgeSeconds >= 2 { choices.append(("slow", 12)) }
            let producer: Producer
            switch producerRNG.weighted(choices) {
            case "fast": producer = .fast(size: size)
            case "renamed": producer = .renamedIn(size: size)
            case "slow":
                let total = max(size, 64)
                // Each pause stays under min_age − 1 s (the listing's timestamp has whole seconds) − 0.4 s.
                let longest = Double(minAgeSeconds) - 1.4
                producer = .slowUpload(size: total, headerBytes: producerRNG.int(1...(total / 2)),
                                       pauses: (0..<producerRNG.int(2...4)).map { _ in producerRNG.double(0.2...max(0.3, longest)) })
            case "old": producer = .oldMtime(size: max(size, 1))
            case "after": producer = .rewriteAfterPlaced(versions: producerRNG.int(2...3), size: max(size, 16), sameSize: producerRNG.chance(0.5),
                                                         inPlace: producerRNG.chance(0.5))
            case "inflight": producer = .rewriteInFlight(size: max(size, 16), gap: producerRNG.double(0...4), sameSize: producerRNG.chance(0.5))
            case "twins": producer = .unicodeTwins(size: max(size, 1))
            case "hostile": producer = .hostile(kind: producerRNG.pick(Self.hostileKinds), size: max(size, 1))
            case "ignored": producer = .ignored(suffix: producerRNG.pick(["hidden", "tmp", "part", "filepart", "swp", "tilde"]), size: max(size, 1))
            case "collision": producer = .localCollision(size: max(size, 1))
            default: producer = .partnerDeletes(size: max(size, 1), after: producerRNG.double(0...4))
            }
            events.append(Event(at: producerRNG.double(0.5...phase), action: .produce(index: index, producer, seed: producerRNG.next())))
        }
        // ferry's life: kills at random instants, some just after the producers stop.
        var lifeRNG = rng.fork()
        let aims = ["StartFileTransfer", "GetObject", "placement", "placement"]
            + (afterRetrieve == "delete" ? ["StartRemoteDelete"] : afterRetrieve == "move" ? ["StartRemoteMove"] : [])
        for _ in 0..<lifeRNG.int(1...4) {
            let aim: String? = lifeRNG.chance(0.7) ? lifeRNG.pick(aims) : nil
            events.append(Event(at: lifeRNG.double(2...(phase + 3)), action: .kill(restartAfter: lifeRNG.pick([0, 0.2, 1, 2.5]), aimedAt: aim)))
        }
        // Downloads failing and recovering: a full download_to, temporary files removed under ferry.
        var troubleRNG = rng.fork()
        for _ in 0..<troubleRNG.int(0...2) {
            events.append(Event(at: troubleRNG.double(3...phase), action: .fillDownloadTo(seconds: troubleRNG.double(2...6))))
        }
        for _ in 0..<troubleRNG.int(0...2) {
            events.append(Event(at: troubleRNG.double(2...phase), action: .removeTemporaryFiles(seconds: troubleRNG.double(1...5))))
        }
        // The service: windows of faults and latency through the produce phase; quiet from the end on.
        var faultRNG = rng.fork()
        var at = 0.0
        while at < phase {
            let rate = faultRNG.weighted([(0.0, 3), (0.05, 3), (0.15, 3), (0.3, 2), (0.5, 1)])
            var kinds = Self.faultKinds.filter { _ in faultRNG.chance(0.45) }
            if kinds.isEmpty { kinds = [faultRNG.pick(Self.faultKinds)] }
            var operations: [String]? = faultRNG.chance(0.4) ? nil : Self.aimedOperations.filter { _ in faultRNG.chance(0.4) }
            if operations?.isEmpty == true { operations = [faultRNG.pick(Self.aimedOperations)] }
            events.append(Event(at: at, action: .faults(FaultWindow(rate: rate, kinds: kinds, latencyMs: faultRNG.pick([0, 0, 10, 50, 150]),
                                                                    operations: operations))))
            at += faultRNG.double(3...10)
        }
        self.events = events.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
    }

    var description: String {
        var counts: [String: Int] = [:]
        var kills: [String] = [], fills = 0, removals = 0, windows: [String] = []
        for event in events {
            switch event.action {
            case .produce(_, let producer, _): counts[producer.kind, default: 0] += 1
            case .kill(_, let aim): kills.append(String(format: "%.0fs", event.at) + (aim.map { "@\($0)" } ?? ""))
            case .fillDownloadTo: fills += 1
            case .removeTemporaryFiles: removals += 1
            case .faults(let w):
                windows.append(String(format: "%.0fs:%.0f%%", event.at, w.rate * 100) + (w.rate > 0 ? "\(w.kinds)" : "")
                               + (w.operations.map { "@\($0)" } ?? "") + (w.latencyMs > 0 ? "+\(w.latencyMs)ms" : ""))
            }
        }
        let producers = counts.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
        return """
            inbound seed \(seed): \(Int(producePhase)) s of partner writes [\(producers)]; every \(intervalSeconds)s, min_age \(minAgeSeconds)s, \
            on_conflict \(onConflict), after_retrieve \(afterRetrieve), transfer delay \(transferDelayMs)ms; SIGKILLs [\(kills.joined(separator: " "))]; \
            download_to filled \(fills)×, temporary files removed \(removals)×; faults \(windows.joined(separator: " "))
            """
    }
}
