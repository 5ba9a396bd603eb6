import Foundation
import FerryTestSupport
import Synchronization

/// The shape of a soak (issue #16, must show 7: "a compressed month"), from the environment so that one
/// driver serves CI's short run and `make soak`'s long one (docs/benchmarks.md, "make soak").
struct SoakPlan: Sendable, CustomStringConvertible {
    /// The defaults are the short run CI plays: 20 files a second, which a debug build sends with the
    /// other end-to-end tests running beside it (about 30/s alone), so that each wave is sent before the next.
    var files = 1200
    var waves = 6
    /// Seconds over which the waves are spread: wave i is dropped at i × duration / waves.
    var duration = 60.0
    /// The rules file's `retention`, in seconds; below the 1 h minimum through FERRY_TEST_MIN_RETENTION.
    var retentionSeconds = 5
    var faultRate = 0.10
    var seed: UInt64 = 16
    var drainTimeout = 120.0

    static func fromEnvironment() -> SoakPlan {
        let env = ProcessInfo.processInfo.environment
        var plan = SoakPlan()
        if let v = env["SOAK_FILES"].flatMap(Int.init) { plan.files = v }
        if let v = env["SOAK_WAVES"].flatMap(Int.init) { plan.waves = v }
        if let v = env["SOAK_DURATION"].flatMap(Double.init) { plan.duration = v }
        if let v = env["SOAK_RETENTION"].flatMap(Int.init) { plan.retentionSeconds = v }
        if let v = env["SOAK_FAULT_RATE"].flatMap(Double.init) { plan.faultRate = v }
        if let v = env["SOAK_SEED"].flatMap(UInt64.init) { plan.seed = v }
        if let v = env["SOAK_DRAIN_TIMEOUT"].flatMap(Double.init) { plan.drainTimeout = v }
        return plan
    }

    var period: Double { duration / Double(waves) }

    func files(inWave wave: Int) -> Int { files / waves + (wave < files % waves ? 1 : 0) }

    /// Spread over the run so that each lands in a different wave and two fall in the last daemon's life.
    var reloadWaves: [Int] { [0.15, 0.55, 0.8].map { Int(($0 * Double(waves)).rounded()) } }
    /// Early, so that the last daemon lives through most of the waves and its memory can be compared
    /// from its first whole wave to the last (a restart resets RSS).
    var killWaves: [Int] { [0.25, 0.45].map { Int(($0 * Double(waves)).rounded()) } }

    /// `requests_per_second` of the SFTP connector after `reloads` reloads: the first reload slows it, the
    /// third speeds it up. The levels follow what the plan asks of the connector, so that a slowed
    /// connector still keeps up and a bigger plan measures ferry, not a rate it was told to keep: the SFTP
    /// rules take up to 3/4 of the files, each file costs about 0.35 requests (a tenth of a
    /// StartFileTransfer, at most 0.2 ListFileTransferResults, the faults' retries), and the levels are
    /// 2, 1.25 and 2.5 times that need, never below 20, 10 and 25 a second (the short run's settings).
    func sftpRate(afterReloads reloads: Int) -> Int {
        let need = Double(files) / duration * 0.75 * 0.35
        let (factor, floor) = reloads == 0 ? (2.0, 20) : reloads < 3 ? (1.25, 10) : (2.5, 25)
        return max(floor, Int((need * factor).rounded(.up)))
    }

    /// `requests_per_second` of the AS2 connector (a third of the files at most), twice its need, at least 20.
    var as2Rate: Int { max(20, Int((Double(files) / duration / 3 * 0.35 * 2).rounded(.up))) }

    /// The last daemon's first whole wave: the one after the last kill.
    var firstComparedWave: Int { (killWaves.last ?? 0) + 1 }

    var replay: String {
        "SOAK_FILES=\(files) SOAK_WAVES=\(waves) SOAK_DURATION=\(Int(duration)) SOAK_RETENTION=\(retentionSeconds) SOAK_SEED=\(seed) swift test --skip-build --filter SoakTests"
    }

    var description: String {
        String(format: "%d files in %d waves over %.0f s (a wave every %.1f s), %.0f %% faults, retention %d s, reloads at waves %@, SIGKILLs in waves %@, seed %llu",
               files, waves, duration, period, faultRate * 100, retentionSeconds,
               reloadWaves.map(String.init).joined(separator: ","), killWaves.map(String.init).joined(separator: ","), seed)
    }

    /// The plan must keep its kills and reloads apart and leave the last daemon two whole waves to compare.
    func check() throws {
        let distinct = Set(reloadWaves).count == 3 && Set(killWaves).count == 2
        guard waves >= 6, distinct, killWaves.allSatisfy({ $0 >= 1 }), firstComparedWave < waves - 1, files >= waves * 10 else {
            throw ChaosSetupError(message: "soak plan \(self): needs at least 6 waves and 10 files a wave, so that its reloads, kills and the waves compared after the last kill are distinct")
        }
    }
}

/// What was measured of the daemon after one wave.
struct SoakSample: Sendable {
    let wave: Int
    let files: Int
    let droppedAt: Double
    /// Seconds from the drop until the outboxes were empty and `ferry status` showed nothing pending;
    /// nil when the next wave came first.
    let drainedAfter: Double?
    let backlog: Int
    let pid: Int32
    let lifetime: Int
    let rssKiB: Int
    /// VmRSS split as the kernel counts it: anonymous (heap, stacks: what a leak grows) and file-backed
    /// (the binary's pages touched so far, the journal's shared-memory index).
    let rssAnonKiB: Int
    let rssFileKiB: Int
    /// CPU seconds used so far, by whom (SoakCPU): where a file's cost goes.
    let cpu: SoakCPU
    /// Open descriptors, and how many of them are sockets: the HTTP connections the clients' pools keep
    /// open at that instant (up to 32 a pool) come and go with what was in flight.
    let fds: Int
    let sockets: Int
    /// Descriptors that are not sockets (the journal, folders, inotify, pipes): these must not move.
    var otherFds: Int { fds - sockets }
    let journalBytes: Int
    let journalRows: Int
    let measuredAt: Double
}

/// CPU seconds used so far by each party to a soak, from /proc and getrusage: ferry (the daemon alive
/// now), the emulator's Python and its other children, the SFTP partner's sshd processes, and the driver
/// (this test process; its reaped children are `ferry status`, sqlite3 and the daemons it killed).
struct SoakCPU: Sendable {
    var ferry = 0.0
    var emulator = 0.0
    var sshd = 0.0
    var driver = 0.0
    var driverChildren = 0.0

    static func read(ferry: Int32?, emulator: Int32) -> SoakCPU {
        var cpu = SoakCPU()
        if let ferry { cpu.ferry = SoakProc.stat(ferry)?.cpu ?? 0 }
        for (name, seconds) in SoakProc.treeCPU(emulator) {
            if name == "sshd" { cpu.sshd += seconds } else { cpu.emulator += seconds }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        cpu.driver = Self.seconds(usage.ru_utime) + Self.seconds(usage.ru_stime)
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        cpu.driverChildren = Self.seconds(usage.ru_utime) + Self.seconds(usage.ru_stime)
        return cpu
    }

    private static func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }

    mutating func add(_ other: SoakCPU) {
        ferry += other.ferry; emulator += other.emulator; sshd += other.sshd; driver += other.driver; driverChildren += other.driverChildren
    }

    /// Milliseconds per file sent, for the summary.
    func perFile(_ files: Int) -> String {
        let n = Double(max(files, 1)) / 1000
        return String(format: "CPU ms per file: ferry %.2f, emulator %.2f, sshd %.2f, driver %.2f + children %.2f",
                      ferry / n, emulator / n, sshd / n, driver / n, driverChildren / n)
    }

    /// What was used between `earlier` and this reading; ferry's counts from zero when the daemon changed.
    func since(_ earlier: SoakCPU, sameDaemon: Bool) -> SoakCPU {
        SoakCPU(ferry: sameDaemon ? ferry - earlier.ferry : ferry, emulator: emulator - earlier.emulator, sshd: sshd - earlier.sshd,
                driver: driver - earlier.driver, driverChildren: driverChildren - earlier.driverChildren)
    }

    var description: String {
        String(format: "CPU s: ferry %.1f, emulator %.1f, sshd %.1f, driver %.1f + children %.1f", ferry, emulator, sshd, driver, driverChildren)
    }
}

/// /proc/<pid>/stat and status, read as `ps` and `top` do.
enum SoakProc {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// The command name, the parent, and the CPU seconds (user + system) of the process and of its children
    /// it has waited for.
    static func stat(_ pid: Int32) -> (name: String, parent: Int32, cpu: Double, reaped: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        // After the name (which may hold spaces): state, ppid, … utime is field 14, stime 15, cutime 16, cstime 17.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 14, let parent = Int32(fields[1]) else { return nil }
        let ticks = (11...14).map { Double(fields[$0]) ?? 0 }
        return (String(text[text.index(after: open)..<close]), parent, (ticks[0] + ticks[1]) / ticksPerSecond, (ticks[2] + ticks[3]) / ticksPerSecond)
    }

    /// CPU seconds of `root` and its live descendants by command name; children already reaped count
    /// under their parent's name.
    static func treeCPU(_ root: Int32) -> [String: Double] {
        var byParent: [Int32: [(pid: Int32, name: String, cpu: Double)]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = stat(pid) else { continue }
            byParent[stat.parent, default: []].append((pid, stat.name, stat.cpu + stat.reaped))
        }
        var totals: [String: Double] = [:]
        if let rootStat = stat(root) { totals[rootStat.name, default: 0] += rootStat.cpu + rootStat.reaped }
        var pending = [root]
        while let parent = pending.popLast() {
            for child in byParent[parent] ?? [] {
                totals[child.name, default: 0] += child.cpu
                pending.append(child.pid)
            }
        }
        return totals
    }

    /// VmRSS, RssAnon and RssFile in KiB (-1 when unreadable).
    static func memory(_ pid: Int32) -> (rss: Int, anon: Int, file: Int) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (-1, -1, -1) }
        func value(_ key: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return -1 }
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
        }
        return (value("VmRSS:"), value("RssAnon:"), value("RssFile:"))
    }
}

/// One soak: the emulator with ~10 % faults, `ferry run` (the release binary under `make soak`) with a few
/// outbound rules on the SFTP and AS2 connectors, waves of small files, three reloads that change the
/// rules, two SIGKILLs mid-wave; after each wave the daemon's RSS, open descriptors and journal size.
/// What the partner got is judged by the chaos test's oracle (ChaosOracle.judge).
final class SoakRun: @unchecked Sendable {
    static let remoteRoot = "/inbound"

    let plan: SoakPlan
    let root: String
    let stateDir: String
    let rulesPath: String
    let emulator: Emulator
    let ledger: ChaosLedger
    let ferry: ChaosFerry
    let startedAt = Date()
    /// Outboxes by tag: `a` (archive, SFTP), `d` (delete, SFTP), `as2` (delete, AS2), `late` (archive, SFTP;
    /// added by the second reload).
    let outboxes: [String: String]
    private(set) var samples: [SoakSample] = []
    private(set) var notes: [String] = []
    private var activeTags = ["a", "d", "as2"]
    private var reloads = 0
    private var rng: SplitMix64

    init(plan: SoakPlan) throws {
        try plan.check()
        self.plan = plan
        rng = SplitMix64(seed: plan.seed)
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/ferry-soak.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ChaosSetupError(message: "mkdtemp under \(base) failed: errno \(errno)") }
        root = String(cString: made)
        stateDir = root + "/state"
        rulesPath = root + "/rules.yaml"
        outboxes = ["a": root + "/outbox-a", "d": root + "/outbox-d", "as2": root + "/outbox-as2", "late": root + "/outbox-late"]
        for folder in Array(outboxes.values) + [stateDir] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        // Five SFTP sessions, AWS's most: one session delivers a file at a time (about 125 a second here),
        // and a connector with one would be what the soak measured at 200,000 files.
        emulator = try Emulator.start(seed: Int(plan.seed % 1_000_000_007), sftpConnections: 5)
        for tag in ["a", "d", "late"] {
            try FileManager.default.createDirectory(atPath: emulator.partnerRoot + Self.remoteRoot + "/" + tag, withIntermediateDirectories: true)
        }
        let as2Prefix = outboxes["as2"]! + "/", sftpID = emulator.sftpConnectorId, as2ID = emulator.as2ConnectorId
        ledger = ChaosLedger { path in path.hasPrefix(as2Prefix) ? as2ID : sftpID }
        var environment = emulator.environment
        environment["FERRY_TEST_MIN_RETENTION"] = "\(plan.retentionSeconds)s"
        ferry = ChaosFerry(configPath: rulesPath, environment: environment, logFolder: root, startedAt: startedAt, logLevel: "info")
        try writeRules()
    }

    var elapsed: Double { Date().timeIntervalSince(startedAt) }

    // MARK: The rules file and its reloads

    /// The rules after `reloads` reloads: 1 slows the SFTP connector (10 requests/s in the short run), 2
    /// adds the `late` rule, 3 speeds the connector up (25/s) and shortens the archive rule's batch wait.
    func rulesText() -> String {
        let rate = plan.sftpRate(afterReloads: reloads)
        let archiveWait = reloads >= 3 ? 300 : 500
        func rule(_ name: String, _ tag: String, connector: String, afterSend: String, wait: Int = 500) -> String {
            let head = ["  - name: \(name)", "    watch: \(outboxes[tag]!)", "    include: [\"*.edi\"]", "    connector: \(connector)"]
            let remote = connector == "partner" ? ["    remote_directory_path: \(Self.remoteRoot)/\(tag)"] : []
            let tail = ["    settle: 300ms", "    batch: { max_files: 10, max_wait: \(wait)ms }", "    after_send: \(afterSend)", "    retries: 5"]
            return (head + remote + tail).joined(separator: "\n") + "\n"
        }
        return """
            version: 1
            state_dir: \(stateDir)
            retention: \(plan.retentionSeconds)s
            reconcile_interval: 60s
            aws:
              region: \(emulator.region)
              endpoint_url: \(emulator.endpoint)
            connectors:
              partner:
                type: sftp
                connector_id: \(emulator.sftpConnectorId)
                staging: s3://\(emulator.stagingBucket)/outbound/
                requests_per_second: \(rate)
              partner-as2:
                type: as2
                connector_id: \(emulator.as2ConnectorId)
                staging: s3://\(emulator.stagingBucket)/outbound-as2/
                requests_per_second: \(plan.as2Rate)
            outbound:

            """ + rule("soak-archive", "a", connector: "partner", afterSend: "archive", wait: archiveWait)
            + rule("soak-delete", "d", connector: "partner", afterSend: "delete")
            + rule("soak-as2", "as2", connector: "partner-as2", afterSend: "delete")
            + (reloads >= 2 ? rule("soak-late", "late", connector: "partner", afterSend: "archive") : "")
    }

    func writeRules() throws {
        let temporary = rulesPath + ".new"
        try Data(rulesText().utf8).write(to: URL(fileURLWithPath: temporary))
        try ChaosFS.rename(temporary, rulesPath)
    }

    /// Rewrites the rules and sends SIGHUP; the reload counts once the daemon logs `rules reloaded`.
    func reload() async throws {
        let before = occurrences(of: "rules reloaded", in: ferry.currentLog)
        reloads += 1
        try writeRules()
        ferry.signal(SIGHUP)
        let taken = await eventually(timeout: 20, interval: 0.2) { occurrences(of: "rules reloaded", in: self.ferry.currentLog) > before }
        if !taken { notes.append("reload \(reloads) at \(Int(elapsed)) s: ferry did not log `rules reloaded` within 20 s") }
        if reloads == 2 { activeTags.append("late") }
    }

    // MARK: Waves

    /// Writes one wave's files (open, write, close), spread over the active rules' folders; each is a new
    /// name with bytes no other file has.
    func drop(wave: Int) throws -> Int {
        let count = plan.files(inWave: wave)
        for index in 0..<count {
            let tag = activeTags[index % activeTags.count]
            let name = String(format: "w%03d-%@-%06d.edi", wave, tag, index)
            var bytes = Array("soak seed \(plan.seed) wave \(wave) file \(index)\n".utf8)
            let extra = rng.int(64...448)
            bytes.reserveCapacity(bytes.count + extra)
            for _ in 0..<extra { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
            let path = outboxes[tag]! + "/" + name
            let data = Data(bytes)
            try ChaosFS.writeFile(path, data)
            ledger.record(path: path, data: data, producer: "wave \(wave) (\(tag))")
        }
        return count
    }

    /// Files still at the top of the outboxes (not yet archived or deleted by ferry).
    func backlog() -> Int {
        outboxes.values.reduce(0) { sum, folder in
            sum + ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0 != ".ferry" }.count
        }
    }

    /// `ferry status --json` over the rules in force.
    func ferryStatus() -> (pending: Int?, possibleDuplicates: Int?) {
        ChaosObserve.ferryStatus(rulesPath: rulesPath, rules: ["soak-archive", "soak-delete", "soak-as2"] + (reloads >= 2 ? ["soak-late"] : []),
                                 environment: ferry.environment)
    }

    /// Waits until the outboxes are empty and ferry has nothing pending (twice, a second apart), or until
    /// `deadline`; returns whether it drained.
    func waitDrained(until deadline: Date) async -> Bool {
        var quiet = 0
        while Date() < deadline {
            if let text = ferry.reviveIfDied() { notes.append(text) }
            if backlog() == 0, ferryStatus().pending == 0 {
                quiet += 1
                if quiet >= 2 { return true }
            } else {
                quiet = 0
            }
            try? await Task.sleep(for: .seconds(1))
        }
        return false
    }

    /// Returns once the emulator has logged `count` more deliveries than at `offset` bytes into its log (or
    /// after `timeout`): a kill then lands while the wave is being sent.
    func waitForDeliveries(_ count: Int, after offset: UInt64, timeout: Double) async {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let handle = FileHandle(forReadingAtPath: emulator.deliveriesPath) {
                handle.seek(toFileOffset: offset)
                let fresh = handle.readDataToEndOfFile()
                handle.closeFile()
                if fresh.reduce(0, { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }) >= count { return }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        notes.append("a kill at \(Int(elapsed)) s waited \(Int(timeout)) s for \(count) deliveries and fell anyway")
    }

    var deliveriesOffset: UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: emulator.deliveriesPath)[.size] as? UInt64) ?? 0
    }

    // MARK: Measurements

    /// Open descriptors of `pid`, and how many are sockets.
    static func openDescriptors(_ pid: Int32) -> (all: Int, sockets: Int) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        let sockets = entries.filter { ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)")) ?? "").hasPrefix("socket:") }
        return (entries.count, sockets.count)
    }

    /// journal.db and its write-ahead log, in bytes: what the journal takes on disk.
    func journalBytes() -> Int {
        ["journal.db", "journal.db-wal"].reduce(0) { sum, name in
            sum + ((try? FileManager.default.attributesOfItem(atPath: stateDir + "/" + name)[.size] as? Int) ?? 0)
        }
    }

    /// Outbound rows in the journal, read through the sqlite3 shell as an operator would (read-only).
    func journalRows() -> Int {
        let result = try? ChaosFS.run("/usr/bin/sqlite3", ["-readonly", "-cmd", ".timeout 5000", stateDir + "/journal.db", "SELECT count(*) FROM outbound_files"])
        return result.flatMap { Int($0.output.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? -1
    }

    // MARK: The run

    func play() async throws -> ChaosObservation {
        let supported = try await supportedFaultKinds(emulator.controlURL, of: ["throttle", "unavailable", "internal", "drop", "lost_answer", "late_504"])
        let kinds = ["throttle", "unavailable", "internal", "drop", "lost_answer", "late_504"].filter(supported.contains)
        if kinds.count < 6 { notes.append("fault kinds the emulator does not know, not played: \(Set(["lost_answer", "late_504", "drop"]).subtracting(supported).sorted())") }
        _ = try await postEmulatorControl(emulator.controlURL, path: "/faults", body: ["rate": plan.faultRate, "kinds": kinds, "latency_ms": 0, "operations": [String]()])
        try ferry.start()
        guard await ferry.waitStarted(timeout: 30) else { throw ChaosSetupError(message: "ferry did not log `ferry started` within 30 s; see \(ferry.logPath(1))") }
        let partner = Task { await partnerPicksUp() }
        defer { partner.cancel() }
        let waveStart = Date()
        var lastCPU = (pid: ferry.pid, cpu: SoakCPU.read(ferry: ferry.pid, emulator: emulator.processID))
        func countCPU() {
            let now = SoakCPU.read(ferry: ferry.pid, emulator: emulator.processID)
            cpuUsed.add(now.since(lastCPU.cpu, sameDaemon: lastCPU.pid == ferry.pid))
            lastCPU = (ferry.pid, now)
        }
        for wave in 0..<plan.waves {
            let due = waveStart.addingTimeInterval(Double(wave) * plan.period)
            if due > Date() { try await Task.sleep(for: .milliseconds(Int(due.timeIntervalSinceNow * 1000))) }
            let offset = deliveriesOffset
            let droppedAt = Date().timeIntervalSince(waveStart)
            let count = try drop(wave: wave)
            if plan.reloadWaves.contains(wave) { try await reload() }
            if plan.killWaves.contains(wave) {
                // Mid-wave: once a quarter of the wave has reached the partner.
                await waitForDeliveries(max(1, count / 4), after: offset, timeout: plan.period)
                countCPU()
                ferry.kill()
                try await Task.sleep(for: .seconds(1))
                try ferry.start()
                if !(await ferry.waitStarted(timeout: 30)) { notes.append("ferry start \(ferry.starts) did not log `ferry started` within 30 s") }
            }
            let next = waveStart.addingTimeInterval(Double(wave + 1) * plan.period)
            // The two waves whose samples are compared may take as long as the drain allows (the next wave
            // then comes late), so that both are measured with nothing queued: like with like.
            let compared = wave == plan.firstComparedWave || wave == plan.waves - 1
            let drained = await waitDrained(until: compared ? next.addingTimeInterval(plan.drainTimeout) : next)
            guard let pid = ferry.pid else { throw ChaosSetupError(message: "ferry is not running after wave \(wave); see \(ferry.logPath(ferry.starts))") }
            // The compared waves' memory is read at the drain and again once the heap trimmer has had two
            // of its 10-s looks: what the daemon holds after a wave, not what the last moments of sending
            // left free for a few seconds. Both readings are printed; the second is judged.
            let atDrain = SoakProc.memory(pid)
            if compared && drained { try await Task.sleep(for: Self.memorySettle) }
            let memory = compared && drained ? SoakProc.memory(pid) : atDrain
            if compared { rssAtDrain[wave] = atDrain.rss }
            let descriptors = Self.openDescriptors(pid)
            let sample = SoakSample(wave: wave, files: count, droppedAt: droppedAt, drainedAfter: drained ? Date().timeIntervalSince(waveStart) - droppedAt : nil,
                                    backlog: backlog(), pid: pid, lifetime: ferry.starts, rssKiB: memory.rss, rssAnonKiB: memory.anon, rssFileKiB: memory.file,
                                    cpu: SoakCPU.read(ferry: pid, emulator: emulator.processID), fds: descriptors.all, sockets: descriptors.sockets,
                                    journalBytes: journalBytes(), journalRows: journalRows(), measuredAt: Date().timeIntervalSince(waveStart))
            print(Self.describe(sample, after: samples.last))
            samples.append(sample)
            countCPU()
        }
        let produced = Date().timeIntervalSince(waveStart)
        // From here the service is healthy: whatever is still missing is ferry's.
        _ = try? await postEmulatorControl(emulator.controlURL, path: "/faults", body: ["rate": 0.0, "kinds": ["throttle"], "latency_ms": 0])
        let drained = await waitDrained(until: Date().addingTimeInterval(plan.drainTimeout))
        try? await Task.sleep(for: .seconds(2))
        countCPU()
        let status = ferryStatus()
        // After the run, with the service healthy again, what an operator sees first.
        let json = ChaosObserve.statusJSON(rulesPath: rulesPath, environment: ferry.environment)
        finalHealth = json?["health"] as? String
        finalProblems = (json?["problems"] as? [Any] ?? []).map { "\($0)" }
        errorLines = ferry.logBytes.split(separator: UInt8(ascii: "\n")).filter { occurrences(of: "Z error ", in: Array($0)) > 0 }.count
        let stopStatus = await ferry.stop()
        let deliveries = (try? emulator.deliveries()) ?? []
        let archived = ChaosObserve.archived(under: ["a", "late"].map { outboxes[$0]! + "/.ferry/sent" })
        let requests = (try? emulator.requestLog()) ?? []
        faultsPlayed = Dictionary(grouping: requests.compactMap(\.fault), by: { $0 }).mapValues(\.count)
        requestCount = requests.count
        return ChaosObservation(
            deliveries: deliveries, reported: ChaosObserve.reportedFiles(in: Array(outboxes.values)), log: ferry.logBytes, possibleDuplicates: status.possibleDuplicates,
            pending: status.pending, drained: drained, stopStatus: stopStatus, producedSeconds: produced, totalSeconds: elapsed,
            starts: ferry.starts, unexpectedExits: ferry.unexpectedExits, archived: archived, markersLeft: [], noWorkSubmissions: ChaosObserve.noWorkSubmissions(requests),
            as2ConnectorID: emulator.as2ConnectorId)
    }

    /// How long after a compared wave drained its memory is read: two looks of the heap trimmer.
    static let memorySettle: Duration = .seconds(20)
    /// VmRSS of the compared waves at the moment they drained, by wave (KiB).
    private(set) var rssAtDrain: [Int: Int] = [:]

    // MARK: The partner

    /// Age (by mtime) after which the partner takes a delivered file out of its folders.
    static let pickupAge = 30.0
    /// Files the partner took out of its folders.
    var pickedUp: Int { pickup.withLock { $0 } }
    private let pickup = Mutex(0)

    /// The partner's side of a month: it picks up what it received, as partners' jobs do, so its folders
    /// hold the last half-minute of deliveries, not the whole run. Without it each folder grew to the
    /// run's size (50,000 files at 200,000), and every in-doubt check (StartDirectoryListing) made the
    /// emulator list all of it: at 60,000 files the listings took three quarters of the connector
    /// process. The oracle judges the emulator's delivery log, which pickups do not touch; an in-doubt
    /// batch checked after its files were picked up is resent and reported, as ferry must.
    func partnerPicksUp() async {
        let folders = ["a", "d", "late"].map { emulator.partnerRoot + Self.remoteRoot + "/" + $0 }
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            let cutoff = Date().addingTimeInterval(-Self.pickupAge)
            var taken = 0
            for folder in folders {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
                    let path = folder + "/" + name
                    guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                          attributes[.type] as? FileAttributeType == .typeRegular,
                          let modified = attributes[.modificationDate] as? Date, modified < cutoff else { continue }
                    if unlink(path) == 0 { taken += 1 }
                }
            }
            pickup.withLock { $0 += taken }
        }
    }

    /// `ferry status --json`'s `health` and `problems` once the run has drained.
    private(set) var finalHealth: String?
    private(set) var finalProblems: [String] = []
    /// Lines ferry logged at level error, over all its starts.
    private(set) var errorLines = 0
    private(set) var faultsPlayed: [String: Int] = [:]
    private(set) var requestCount = 0
    /// CPU used from the first wave until the run drained (ferry's to within the moments before each kill).
    private(set) var cpuUsed = SoakCPU()

    /// One line per wave; the CPU figures are those used since the previous sample (`earlier`).
    static func describe(_ s: SoakSample, after earlier: SoakSample?) -> String {
        let cpu = earlier.map { s.cpu.since($0.cpu, sameDaemon: $0.pid == s.pid) } ?? s.cpu
        return String(format: "soak wave %3d: %6d files dropped at %6.1f s, %@, ferry #%d pid %d: RSS %.1f MB (anon %.1f, file %.1f), %d fds (%d sockets), journal %.2f MB, %d rows; %@",
                      s.wave, s.files, s.droppedAt, s.drainedAfter.map { String(format: "drained in %.1f s", $0) } ?? "\(s.backlog) still in the outboxes",
                      s.lifetime, s.pid, Double(s.rssKiB) / 1024, Double(s.rssAnonKiB) / 1024, Double(s.rssFileKiB) / 1024, s.fds, s.sockets,
                      Double(s.journalBytes) / 1_048_576, s.journalRows, cpu.description)
    }

    /// Stops the emulator; removes the run's folder unless `keep` (then the emulator's logs are copied in).
    func finish(keep: Bool) {
        if keep { ChaosObserve.keepLogs(of: emulator, in: root) }
        emulator.stop()
        if !keep { try? FileManager.default.removeItem(atPath: root) }
    }
}
