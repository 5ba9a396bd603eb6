import Foundation
import FerryTestSupport

/// What the producers wrote: every complete version (the oracle's expectation) and everything that must
/// never reach the partner. Written from many producer tasks at once.
final class ChaosLedger: @unchecked Sendable {
    struct Version: Sendable {
        let name: ByteName
        let path: String
        let data: Data
        let sha256: String
        let producer: String
        /// The connector that must deliver it (the one of the rule whose folder it is in).
        let connectorID: String
        /// False when the version was replaced before the partner had it: sending it is then allowed,
        /// not owed.
        var owed = true
        var note: String?
        /// Not to reach the partner before this instant (seconds since 1970): its ready marker's creation.
        var notBefore: Double?
    }

    struct Forbidden: Sendable {
        let name: ByteName
        /// Content that exists nowhere in the outbox (a symlink's target, an excluded file): seen under any
        /// name on the partner, it leaked. Nil when only the name is forbidden.
        let sha256: String?
        let producer: String
        let why: String
    }

    private let connectorFor: @Sendable (String) -> String
    private let lock = NSLock()
    private var versionList: [Version] = []
    private var forbiddenList: [Forbidden] = []
    private var noteList: [String] = []

    /// `connectorFor` maps a file's path to the connector id of the rule that owns it.
    init(connectorFor: @escaping @Sendable (String) -> String) { self.connectorFor = connectorFor }

    var versions: [Version] { lock.withLock { versionList } }
    var forbidden: [Forbidden] { lock.withLock { forbiddenList } }
    var notes: [String] { lock.withLock { noteList } }

    @discardableResult
    func record(path: String, data: Data, producer: String, notBefore: Double? = nil) -> Version {
        var version = Version(name: lastComponent(path), path: path, data: data, sha256: SHA256.hex(data), producer: producer,
                              connectorID: connectorFor(path))
        version.notBefore = notBefore
        lock.withLock { versionList.append(version) }
        return version
    }

    func supersede(_ version: Version, because note: String) {
        lock.withLock {
            for index in versionList.indices where versionList[index].name == version.name && versionList[index].sha256 == version.sha256 {
                versionList[index].owed = false
                versionList[index].note = note
            }
        }
    }

    func forbid(path: String, data: Data?, producer: String, why: String) {
        let entry = Forbidden(name: lastComponent(path), sha256: data.map(SHA256.hex), producer: producer, why: why)
        lock.withLock { forbiddenList.append(entry) }
    }

    func note(_ text: String) { lock.withLock { noteList.append(text) } }
}

/// The `ferry run` process through its bad day: killed, restarted, reloaded; restarted like systemd
/// (`Restart=on-failure`) when it dies on its own, which is noted.
final class ChaosFerry: @unchecked Sendable {
    let configPath: String
    let environment: [String: String]
    /// `<logFolder>/ferry-N.log` for the Nth start: FerryDaemon truncates its log file when it starts.
    let logFolder: String
    private let lock = NSLock()
    private var daemon: FerryDaemon?
    private var down = true
    private var lastRevive = Date.distantPast
    private(set) var starts = 0
    private(set) var unexpectedExits: [String] = []
    private let startedAt: Date

    /// `--log-level`: debug for the chaos test; the soak runs at info, as a deployment would, since a
    /// debug log of 100,000 files would be gigabytes.
    let logLevel: String

    init(configPath: String, environment: [String: String], logFolder: String, startedAt: Date, logLevel: String = "debug") {
        self.configPath = configPath
        self.environment = environment
        self.logFolder = logFolder
        self.startedAt = startedAt
        self.logLevel = logLevel
    }

    /// The current process's id, while it runs (the soak reads its /proc entries).
    var pid: Int32? {
        lock.withLock { daemon.flatMap { $0.process.isRunning ? $0.process.processIdentifier : nil } }
    }

    private var elapsed: String { String(format: "%.1fs", Date().timeIntervalSince(startedAt)) }

    func start() throws {
        try lock.withLock {
            daemon = try FerryDaemon(config: configPath, environment: environment, logPath: logPath(starts + 1), extraArguments: ["--log-level", logLevel])
            starts += 1
            down = false
        }
    }

    /// SIGKILL, as a crash or an OOM kill would; the caller restarts it.
    func kill() {
        lock.withLock {
            down = true
            daemon?.crash()
        }
    }

    /// Restarts ferry if it exited without being told to; returns what happened, for the notes.
    func reviveIfDied() -> String? {
        lock.withLock {
            guard !down, let daemon, !daemon.process.isRunning else { return nil }
            // At most one restart every 2 s, as systemd's start limit would pace a crash loop.
            guard Date().timeIntervalSince(lastRevive) > 2 else { return nil }
            lastRevive = Date()
            let how = daemon.process.terminationReason == .uncaughtSignal ? "signal \(daemon.process.terminationStatus)"
                : "status \(daemon.process.terminationStatus)"
            let text = "ferry exited on its own (\(how)) at \(elapsed); restarted"
            unexpectedExits.append(text)
            self.daemon = try? FerryDaemon(config: configPath, environment: environment, logPath: logPath(starts + 1), extraArguments: ["--log-level", logLevel])
            starts += 1
            return text
        }
    }

    func logPath(_ start: Int) -> String { logFolder + "/ferry-\(start).log" }

    /// Every start's log, in order.
    var logBytes: [UInt8] {
        let count = lock.withLock { starts }
        return (0..<count).reduce(into: [UInt8]()) { all, index in
            all += Array(FileManager.default.contents(atPath: logPath(index + 1)) ?? Data())
        }
    }

    /// The current process's log.
    var currentLog: [UInt8] { Array(FileManager.default.contents(atPath: logPath(lock.withLock { starts })) ?? Data()) }

    /// Waits until the current process has logged `ferry started` (so its signal handlers are in place:
    /// a SIGHUP before that ends the process by the signal's default action).
    func waitStarted(timeout: Double) async -> Bool {
        await eventually(timeout: timeout, interval: 0.1) {
            occurrences(of: "ferry started", in: currentLog) > 0
        }
    }

    func signal(_ number: Int32) { lock.withLock { daemon?.signal(number) } }

    /// SIGTERM and wait; nil if it had to be killed.
    func stop() async -> Int32? {
        let current = lock.withLock { () -> FerryDaemon? in
            down = true
            return daemon
        }
        guard let current else { return nil }
        guard current.process.isRunning else { return current.process.terminationStatus }
        return await current.stop(timeout: 35)
    }
}

/// One seed's run: the outbox, the emulator, ferry, the producers and the timeline; then the oracle.
final class ChaosRun: @unchecked Sendable {
    static let ruleName = "chaos"
    static let as2RuleName = "chaos-as2"
    static let markerRuleName = "chaos-marker"
    static let treeRuleName = "chaos-tree"
    static let tenantRuleName = "chaos-tenant"
    static var ruleNames: [String] { [ruleName, as2RuleName, markerRuleName, treeRuleName, tenantRuleName] }
    static let readyMarker = ".done"
    static let remoteDirectory = "/inbound"

    let plan: ChaosPlan
    let root: String
    let outbox: String
    /// Watched by a second rule that sends through the AS2 connector; about one producer in eight writes here.
    let as2Outbox: String
    /// Watched by a rule with `ready_marker: .done` (the ready-marker producers write here).
    let markerOutbox: String
    /// Watched recursively (the swapped-parent producers write here).
    let treeOutbox: String
    /// `tenants/A/outbox`, watched by `chaos-tenant`; a swapped-parent(root) producer replaces `tenants/A`
    /// by a symbolic link to `tenants/B`.
    let tenantOutbox: String
    /// The `chaos` rule's archive_dir when the plan puts it on a tmpfs of its own.
    let archive: String
    let outside: String
    let stateDir: String
    let rulesPath: String
    let emulator: Emulator
    let ledger: ChaosLedger
    let ferry: ChaosFerry
    let startedAt = Date()
    /// When the timeline began (after the emulator started): event times count from here.
    private var timelineStart = Date()
    private var mountedState = false
    private var mountedArchive = false
    private let lock = NSLock()
    private var settings: ChaosPlan.RuleSettings
    private var supportedKinds: Set<String> = []
    private var stopWatchdog = false

    init(plan: ChaosPlan) throws {
        self.plan = plan
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/ferry-chaos-\(plan.seed).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ChaosSetupError(message: "mkdtemp under \(base) failed: errno \(errno)") }
        root = String(cString: made)
        outbox = root + "/outbox"
        as2Outbox = root + "/outbox-as2"
        markerOutbox = root + "/outbox-marker"
        treeOutbox = root + "/outbox-tree"
        tenantOutbox = root + "/tenants/A/outbox"
        archive = root + "/archive"
        outside = root + "/outside"
        stateDir = root + "/state"
        rulesPath = root + "/rules.yaml"
        settings = plan.initial
        for folder in [outbox, as2Outbox, markerOutbox, treeOutbox, tenantOutbox, root + "/tenants/B/outbox", outside, stateDir] + (plan.archiveOnTmpfs ? [archive] : []) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        if plan.stateOnTmpfs {
            let mounted = try ChaosFS.run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", stateDir])
            guard mounted.status == 0 else {
                try? FileManager.default.removeItem(atPath: root)
                throw ChaosSetupError(message: """
                    seed \(plan.seed) plays a full state_dir on a small tmpfs, but `mount -t tmpfs -o size=16m tmpfs \(stateDir)` \
                    failed (exit \(mounted.status): \(mounted.output.trimmingCharacters(in: .whitespacesAndNewlines))); \
                    run the chaos test as root (it needs CAP_SYS_ADMIN to mount) or in a container that allows mounts
                    """)
            }
            mountedState = true
        }
        if plan.archiveOnTmpfs {
            let mounted = try ChaosFS.run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", archive])
            guard mounted.status == 0 else {
                if mountedState { _ = try? ChaosFS.run("/usr/bin/umount", [stateDir]) }
                try? FileManager.default.removeItem(atPath: root)
                throw ChaosSetupError(message: """
                    seed \(plan.seed) plays a full archive file system on a small tmpfs, but `mount -t tmpfs -o size=8m tmpfs \(archive)` \
                    failed (exit \(mounted.status): \(mounted.output.trimmingCharacters(in: .whitespacesAndNewlines))); \
                    run the chaos test as root (it needs CAP_SYS_ADMIN to mount) or in a container that allows mounts
                    """)
            }
            mountedArchive = true
        }
        do {
            emulator = try Emulator.start(transferDelayMs: plan.transferDelayMs, seed: Int(plan.seed % 1_000_000_007))
        } catch {
            if mountedState { _ = try? ChaosFS.run("/usr/bin/umount", [stateDir]) }
            if mountedArchive { _ = try? ChaosFS.run("/usr/bin/umount", [archive]) }
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
        try FileManager.default.createDirectory(atPath: emulator.partnerRoot + Self.remoteDirectory, withIntermediateDirectories: true)
        let as2Prefix = as2Outbox + "/", sftpID = emulator.sftpConnectorId, as2ID = emulator.as2ConnectorId
        ledger = ChaosLedger { path in path.hasPrefix(as2Prefix) ? as2ID : sftpID }
        ferry = ChaosFerry(configPath: rulesPath, environment: emulator.environment, logFolder: root, startedAt: startedAt)
        try writeRules(plan.initial)
    }

    var elapsed: Double { Date().timeIntervalSince(startedAt) }

    // MARK: The rules file

    func rulesText(_ s: ChaosPlan.RuleSettings) -> String {
        """
        version: 1
        state_dir: \(stateDir)
        reconcile_interval: \(s.reconcileSeconds)s
        aws:
          region: \(emulator.region)
          endpoint_url: \(emulator.endpoint)
        connectors:
          partner:
            type: sftp
            connector_id: \(emulator.sftpConnectorId)
            staging: s3://\(emulator.stagingBucket)/outbound/
            requests_per_second: 20
          partner-as2:
            type: as2
            connector_id: \(emulator.as2ConnectorId)
            staging: s3://\(emulator.stagingBucket)/outbound-as2/
            requests_per_second: 20
        outbound:
          - name: \(Self.ruleName)
            watch: \(outbox)
            include: ["*.edi", "*.xml"]
            exclude: ["*.skip.edi"]
            connector: partner
            remote_directory_path: \(Self.remoteDirectory)
            settle: \(s.settleMs)ms
            batch: { max_files: \(s.batchMaxFiles), max_wait: \(s.batchMaxWaitMs)ms }
            after_send: \(plan.afterSend)
        \(plan.archiveOnTmpfs ? "    archive_dir: \(archive)\n" : "")    retries: \(plan.retries)
          - name: \(Self.as2RuleName)
            watch: \(as2Outbox)
            include: ["*.edi", "*.xml"]
            exclude: ["*.skip.edi"]
            connector: partner-as2
            settle: \(s.settleMs)ms
            batch: { max_files: \(s.batchMaxFiles), max_wait: \(s.batchMaxWaitMs)ms }
            after_send: \(plan.afterSend)
            retries: \(plan.retries)
          - name: \(Self.markerRuleName)
            watch: \(markerOutbox)
            include: ["*.edi", "*.xml"]
            connector: partner
            remote_directory_path: \(Self.remoteDirectory)
            ready_marker: \(Self.readyMarker)
            settle: \(s.settleMs)ms
            batch: { max_files: \(s.batchMaxFiles), max_wait: \(s.batchMaxWaitMs)ms }
            after_send: \(plan.afterSend)
            retries: \(plan.retries)
          - name: \(Self.tenantRuleName)
            watch: \(tenantOutbox)
            include: ["*.edi", "*.xml"]
            connector: partner
            remote_directory_path: \(Self.remoteDirectory)
            settle: \(s.settleMs)ms
            batch: { max_files: \(s.batchMaxFiles), max_wait: \(s.batchMaxWaitMs)ms }
            after_send: \(plan.afterSend)
            retries: \(plan.retries)
          - name: \(Self.treeRuleName)
            watch: \(treeOutbox)
            recursive: true
            include: ["*.edi", "*.xml"]
            connector: partner
            remote_directory_path: \(Self.remoteDirectory)
            settle: \(s.settleMs)ms
            batch: { max_files: \(s.batchMaxFiles), max_wait: \(s.batchMaxWaitMs)ms }
            after_send: \(plan.afterSend)
            retries: \(plan.retries)

        """
    }

    func writeRules(_ s: ChaosPlan.RuleSettings) throws {
        // Atomically, as `install` or an editor's save would: ferry must never read half a file from us.
        try rulesText(s).write(toFile: rulesPath, atomically: true, encoding: .utf8)
    }

    // MARK: Playing the day

    /// Plays the plan, drains, stops ferry, and returns what the oracle needs.
    func play() async throws -> ChaosObservation {
        try await probeFaultKinds()
        var skippedCounts: [String: Int] = [:]
        timelineStart = Date()
        try ferry.start()
        let watchdog = Task { [self] in
            while !lock.withLock({ stopWatchdog }) {
                if let text = ferry.reviveIfDied() { ledger.note(text) }
                try? await Task.sleep(for: .milliseconds(300))
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for event in plan.events {
                let wait = event.at - Date().timeIntervalSince(timelineStart)
                if wait > 0 { try? await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
                if let skipped = skipped(event.action) {
                    skippedCounts[skipped, default: 0] += 1
                    continue
                }
                switch event.action {
                case .produce(let index, let producer, let seed):
                    group.addTask { await self.produce(index: index, producer, seed: seed) }
                case .kill(let restartAfter, let aim):
                    if let aim { await waitForAim(aim) }
                    ferry.kill()
                    if restartAfter > 0 { try? await Task.sleep(for: .milliseconds(Int(restartAfter * 1000))) }
                    do { try ferry.start() } catch { ledger.note("restart after SIGKILL failed: \(error)") }
                case .reload(let newSettings):
                    await reload(newSettings)
                case .invalidReload:
                    await invalidReload()
                case .faults(let window):
                    await applyFaults(window)
                case .fillStateDir(let seconds):
                    group.addTask { await self.fillStateDir(for: seconds) }
                case .fillArchive(let seconds):
                    group.addTask { await self.fill(self.archive, for: seconds) }
                }
            }
            let rest = plan.producePhase - Date().timeIntervalSince(timelineStart)
            if rest > 0 { try? await Task.sleep(for: .milliseconds(Int(rest * 1000))) }
            await group.waitForAll()
        }
        for (name, count) in skippedCounts.sorted(by: { $0.key < $1.key }) {
            ledger.note("CHAOS_SKIP: \(count) × \(name) not played")
        }
        let produced = Date().timeIntervalSince(timelineStart)
        // From here the service is healthy, so everything can finish: what is still missing is ferry's.
        _ = try? await postEmulatorControl(emulator.controlURL, path: "/faults", body: ["rate": 0.0, "kinds": ["throttle"], "latency_ms": 0])
        let drained = await drain(timeout: Double(ProcessInfo.processInfo.environment["CHAOS_DRAIN_TIMEOUT"] ?? "") ?? 180)
        // A moment more, for a late duplicate (a resubmission after a lost answer) to show.
        try? await Task.sleep(for: .seconds(2))
        lock.withLock { stopWatchdog = true }
        await watchdog.value
        let stopStatus = await ferry.stop()
        let status = ferryStatus()
        let deliveries = (try? emulator.deliveries()) ?? []
        let archived = ChaosObserve.archived(under: [outbox, as2Outbox, markerOutbox, treeOutbox, root + "/tenants/A.old/outbox", root + "/tenants/B/outbox"]
            .map { $0 + "/.ferry/sent" } + (plan.archiveOnTmpfs ? [archive] : []))
            .filter { lastComponent($0.path).description != "chaos-filler" }
        let markers = ChaosFS.regularFiles(under: markerOutbox).filter { $0.hasSuffix(Self.readyMarker) && !$0.contains("/.ferry/") }
        let noWork = ChaosObserve.noWorkSubmissions((try? emulator.requestLog()) ?? [])
        return ChaosObservation(
            deliveries: deliveries, reported: reportedFiles(), log: ferry.logBytes, possibleDuplicates: status.possibleDuplicates,
            pending: status.pending, drained: drained, stopStatus: stopStatus, producedSeconds: produced, totalSeconds: elapsed,
            starts: ferry.starts, unexpectedExits: ferry.unexpectedExits, archived: archived, markersLeft: markers, noWorkSubmissions: noWork,
            as2ConnectorID: emulator.as2ConnectorId)
    }

    /// Returns the moment the emulator logs the next request of `aim` answered 200 (or, for `delivery`,
    /// the next file completed to a partner), or after 8 s (noted).
    private func waitForAim(_ aim: String) async {
        let path = aim == "delivery" ? emulator.deliveriesPath : emulator.requestLogPath
        let needles = aim == "delivery" ? ["\"sha256\""] : ["\"operation\": \"\(aim)\"", "\"status\": 200"]
        var offset = UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0)
        let deadline = Date().addingTimeInterval(8)
        while Date() < deadline {
            if let handle = FileHandle(forReadingAtPath: path) {
                handle.seek(toFileOffset: offset)
                let fresh = handle.readDataToEndOfFile()
                handle.closeFile()
                // Only whole lines count; a partial one is read again next time.
                if let lastNewline = fresh.lastIndex(of: UInt8(ascii: "\n")) {
                    let lines = fresh[..<lastNewline].split(separator: UInt8(ascii: "\n"))
                    offset += UInt64(lastNewline - fresh.startIndex + 1)
                    if lines.contains(where: { line in needles.allSatisfy { occurrences(of: $0, in: Array(line)) > 0 } }) { return }
                }
            }
            try? await Task.sleep(for: .milliseconds(3))
        }
        ledger.note("a kill aimed at \(aim) at \(Int(elapsed))s saw none within 8 s and fell anyway")
    }

    /// `CHAOS_SKIP=slow-writer,fill-state-dir,…`: parts of the plan not to play (producer kinds by prefix,
    /// or `kill`, `reload`, `invalid-reload`, `fill-state-dir`, `faults`), to look past a known defect.
    /// Every skip is noted in the output; the default plays everything.
    private let skips: [String] = (ProcessInfo.processInfo.environment["CHAOS_SKIP"] ?? "").split(separator: ",").map {
        $0.trimmingCharacters(in: .whitespaces)
    }.filter { !$0.isEmpty }

    private func skipped(_ action: ChaosPlan.Action) -> String? {
        let name: String
        switch action {
        case .produce(_, let producer, _): name = producer.kind
        case .kill: name = "kill"
        case .reload: name = "reload"
        case .invalidReload: name = "invalid-reload"
        case .faults: name = "faults"
        case .fillStateDir: name = "fill-state-dir"
        case .fillArchive: name = "fill-archive"
        }
        return skips.contains { name.hasPrefix($0) } ? name : nil
    }

    /// Which of the plan's fault kinds this emulator knows (an unknown kind is refused with 400).
    private func probeFaultKinds() async throws {
        let supported = try await supportedFaultKinds(emulator.controlURL, of: ChaosPlan.faultKinds)
        let missing = ChaosPlan.faultKinds.filter { !supported.contains($0) }
        if !missing.isEmpty { ledger.note("this emulator has no fault kind \(missing.joined(separator: ", ")); the plan's windows play without it") }
        lock.withLock { supportedKinds = supported }
    }

    private func applyFaults(_ window: ChaosPlan.FaultWindow) async {
        let supported = lock.withLock { supportedKinds }
        let kinds = playableFaultKinds(window.kinds, supported: supported)
        var body: [String: Any] = ["rate": window.rate, "kinds": kinds, "latency_ms": window.latencyMs]
        if let operations = window.operations { body["operations"] = operations }
        do {
            let answer = try await postEmulatorControl(emulator.controlURL, path: "/faults", body: body)
            if answer.status != 200 { ledger.note("POST /faults \(body) answered \(answer.status): \(answer.body)") }
        } catch {
            ledger.note("POST /faults failed: \(error)")
        }
    }

    private func reload(_ newSettings: ChaosPlan.RuleSettings) async {
        guard await ferry.waitStarted(timeout: 30) else {
            ledger.note("reload at \(Int(elapsed))s skipped: ferry had not logged `ferry started` within 30 s")
            return
        }
        do {
            try writeRules(newSettings)
            lock.withLock { settings = newSettings }
            ferry.signal(SIGHUP)
        } catch {
            ledger.note("cannot rewrite the rules file: \(error)")
        }
    }

    private func invalidReload() async {
        guard await ferry.waitStarted(timeout: 30) else { return }
        let valid = lock.withLock { settings }
        do {
            // A typo an operator makes: an unknown key and a relative path. ferry must keep the running rules.
            try (rulesText(valid).replacingOccurrences(of: "state_dir: \(stateDir)", with: "state_dir: relative/state\nbogus_key: 1"))
                .write(toFile: rulesPath, atomically: true, encoding: .utf8)
            ferry.signal(SIGHUP)
            try? await Task.sleep(for: .milliseconds(1500))
            if occurrences(of: "bogus_key", in: ferry.currentLog) == 0 {
                ledger.note("an invalid rules file and SIGHUP at \(Int(elapsed))s: ferry's log does not name the error (bogus_key) within 1.5 s")
            }
            try writeRules(valid)
            ferry.signal(SIGHUP)
        } catch {
            ledger.note("invalid reload: cannot write the rules file: \(error)")
        }
    }

    private func fillStateDir(for seconds: Double) async {
        await fill(stateDir, for: seconds)
    }

    /// Fills the file system of `folder` to the last byte for `seconds`, then frees it.
    private func fill(_ folder: String, for seconds: Double) async {
        let filler = folder + "/chaos-filler"
        do {
            let fd = try ChaosFS.openForWriting(filler)
            let chunk = [UInt8](repeating: 0x5A, count: 256 * 1024)
            while chunk.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) > 0 {}
            ChaosFS.closeFile(fd)
            try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        } catch {
            ledger.note("cannot fill \(folder): \(error)")
        }
        unlink(filler)
    }

    // MARK: Producers

    private static let decorations: [(String, Int)] = [("", 12), (" and space", 1), ("+plus", 1), (" (2)", 1), ("-\u{FC}n\u{EF}", 1),
                                                       ("=eq", 1), ("@at", 1), ("&amp", 1)]

    private func fileName(_ index: Int, _ tag: String, _ rng: inout SplitMix64, ext: String? = nil) -> String {
        String(format: "p%03d-", index) + tag + rng.weighted(Self.decorations) + (ext ?? rng.weighted([(".edi", 3), (".xml", 1)]))
    }

    /// Bytes no other version shares: random from the first byte on, so even a 16-byte prefix is unique.
    private func content(_ rng: inout SplitMix64, label: String, size: Int) -> Data {
        guard size > 0 else { return Data() }
        var bytes = Array(String(format: "%016llx ", rng.next()).utf8) + Array("\(label) seed \(plan.seed)\n".utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*~:+".utf8)
        while bytes.count < size {
            for _ in 0..<79 { bytes.append(alphabet[rng.int(0...(alphabet.count - 1))]) }
            bytes.append(UInt8(ascii: "\n"))
        }
        return Data(bytes.prefix(size))
    }

    private func produce(index: Int, _ producer: ChaosPlan.Producer, seed: UInt64) async {
        var rng = SplitMix64(seed: seed)
        let kind = producer.kind
        // The folder comes from the seed's top bits, not from `rng`, so adding the AS2 rule left every
        // plan's names, sizes and bytes as they were.
        let outbox = seed >> 61 == 0 ? as2Outbox : self.outbox
        do {
            switch producer {
            case .fast(let size):
                let path = outbox + "/" + fileName(index, "fast", &rng)
                let data = content(&rng, label: "fast", size: size)
                try ChaosFS.writeFile(path, data)
                ledger.record(path: path, data: data, producer: kind)

            case .burst(let count, let size):
                for item in 0..<count {
                    let path = outbox + "/" + fileName(index, "burst-\(item)", &rng)
                    let data = content(&rng, label: "burst", size: max(24, rng.int(1...size)))
                    try ChaosFS.writeFile(path, data)
                    ledger.record(path: path, data: data, producer: kind)
                }

            case .tmpThenRename(let size):
                let final = outbox + "/" + fileName(index, "renamed", &rng)
                let temporary = final + rng.pick([".tmp", ".part", ".filepart"])
                let data = content(&rng, label: "renamed", size: size)
                ledger.forbid(path: temporary, data: nil, producer: kind, why: "it is a temporary name (default ignore list)")
                try ChaosFS.writeFile(temporary, data)
                try? await Task.sleep(for: .milliseconds(rng.int(0...1500)))
                try ChaosFS.rename(temporary, final)
                ledger.record(path: final, data: data, producer: kind)

            case .slowWriter(let size, let headerBytes, let pauses, let touchWhileOpen, let viaShell):
                let path = outbox + "/" + fileName(index, "slow", &rng)
                let data = content(&rng, label: "slow", size: size)
                // The header, then the rest in one chunk per pause.
                var cuts = [0, headerBytes]
                let rest = size - headerBytes
                for part in 1..<pauses.count { cuts.append(headerBytes + rest * part / pauses.count) }
                cuts.append(size)
                let chunks = (0..<(cuts.count - 1)).map { data.subdata(in: cuts[$0]..<cuts[$0 + 1]) }
                if viaShell {
                    try await slowShellWriter(path: path, chunks: chunks, pauses: pauses, touch: touchWhileOpen, index: index)
                } else {
                    let fd = try ChaosFS.openForWriting(path)
                    defer { ChaosFS.closeFile(fd) }
                    try ChaosFS.writeAll(fd, chunks[0])
                    for (number, pause) in pauses.enumerated() {
                        if touchWhileOpen {
                            try? await Task.sleep(for: .milliseconds(Int(pause * 500)))
                            ChaosFS.chmodAndTouch(fd, mode: number % 2 == 0 ? 0o640 : 0o644)
                            try? await Task.sleep(for: .milliseconds(Int(pause * 500)))
                        } else {
                            try? await Task.sleep(for: .milliseconds(Int(pause * 1000)))
                        }
                        try ChaosFS.writeAll(fd, chunks[number + 1])
                    }
                }
                ledger.record(path: path, data: data, producer: kind)

            case .rewriteAfterSent(let versions, let size, let sameSize, let extraDelay):
                let path = outbox + "/" + fileName(index, "rewritten", &rng)
                for number in 1...versions {
                    let data = content(&rng, label: "rewritten v\(number)", size: sameSize ? size : max(16, size + rng.int(-size / 2...size)))
                    // Truncated in place when the file is still there (after_send keep, or before archiving).
                    let fd = try ChaosFS.openForWriting(path)
                    try ChaosFS.writeAll(fd, data)
                    ChaosFS.closeFile(fd)
                    let version = ledger.record(path: path, data: data, producer: kind + " v\(number)")
                    guard number < versions else { break }
                    if !(await deliveredSoon(version, timeout: 25)) {
                        ledger.supersede(version, because: "not delivered within 25 s, then rewritten")
                    }
                    if extraDelay > 0 { try? await Task.sleep(for: .milliseconds(Int(extraDelay * 1000))) }
                }

            case .unicodeTwins(let size):
                let stem = String(format: "p%03d-", index)
                let names = [stem + "caf\u{E9}.edi", stem + "cafe\u{301}.edi"]  // NFC, NFD
                for name in rng.chance(0.5) ? names : names.reversed() {
                    let data = content(&rng, label: "twin", size: max(24, size))
                    try ChaosFS.writeFile(outbox + "/" + name, data)
                    ledger.record(path: outbox + "/" + name, data: data, producer: kind)
                }

            case .excluded(let suffix, let size):
                let stem = String(format: "p%03d-excluded", index)
                let name: String
                switch suffix {
                case "hidden": name = "." + stem + ".edi"
                case "tilde": name = "~" + stem + ".edi"
                case "skip.edi", "txt": name = stem + "." + suffix
                default: name = stem + ".edi." + suffix
                }
                let data = content(&rng, label: "excluded", size: max(24, size))
                ledger.forbid(path: outbox + "/" + name, data: data, producer: kind, why: "its name is outside the rule's patterns (\(suffix))")
                try ChaosFS.writeFile(outbox + "/" + name, data)

            case .symlink(let size):
                let target = outside + String(format: "/p%03d-target.edi", index)
                let link = outbox + "/" + fileName(index, "symlink", &rng, ext: ".edi")
                let data = content(&rng, label: "symlink target", size: max(24, size))
                ledger.forbid(path: link, data: data, producer: kind, why: "it is a symbolic link (to \(target))")
                try ChaosFS.writeFile(target, data)
                try ChaosFS.symlink(target: target, at: link)

            case .fifo:
                let path = outbox + "/" + fileName(index, "fifo", &rng, ext: ".edi")
                ledger.forbid(path: path, data: nil, producer: kind, why: "it is a fifo")
                try ChaosFS.fifo(path)

            case .hardLink(let fromOutside, let size):
                let data = content(&rng, label: "hard link", size: max(24, size))
                let first = fromOutside ? outside + String(format: "/p%03d-source.dat", index) : outbox + "/" + fileName(index, "linked-a", &rng)
                try ChaosFS.writeFile(first, data)
                if !fromOutside { ledger.record(path: first, data: data, producer: kind) }
                try? await Task.sleep(for: .milliseconds(rng.int(0...800)))
                let second = outbox + "/" + fileName(index, "linked-b", &rng)
                try ChaosFS.hardLink(first, second)
                ledger.record(path: second, data: data, producer: kind)

            case .deleteBeforeSend(let size, let delayMs):
                // Always the SFTP folder: the point is ferry's race with the unlink, not the connector.
                let path = self.outbox + "/" + fileName(index, "deleted", &rng)
                let data = content(&rng, label: "deleted", size: size)
                try ChaosFS.writeFile(path, data)
                // Sending it before the unlink is allowed (it was complete); owing it after is not.
                let version = ledger.record(path: path, data: data, producer: kind)
                try? await Task.sleep(for: .milliseconds(delayMs))
                unlink(path)
                ledger.supersede(version, because: "deleted \(delayMs) ms after it was written")

            case .readyMarker(let size, let headerBytes, let pause, let corrected, let correctAfter):
                let path = markerOutbox + "/" + fileName(index, "marked", &rng)
                let data = content(&rng, label: "marked", size: size)
                for (suffix, why) in [(Self.readyMarker, "it is a ready marker"), (".tmp", "it is a temporary name"),
                                      (Self.readyMarker + ".tmp", "it is a temporary name of a ready marker")] {
                    ledger.forbid(path: path + suffix, data: nil, producer: kind, why: why)
                }
                // Header, closed, a pause past settle, the rest: without the marker the header alone would
                // look complete.
                try ChaosFS.writeFile(path, data.prefix(headerBytes))
                try? await Task.sleep(for: .milliseconds(Int(pause * 1000)))
                let fd = try ChaosFS.openForWriting(path, truncate: false)
                _ = lseek(fd, 0, SEEK_END)
                try ChaosFS.writeAll(fd, data.subdata(in: headerBytes..<data.count))
                ChaosFS.closeFile(fd)
                let markedAt = Date().timeIntervalSince1970
                let first = ledger.record(path: path, data: data, producer: kind, notBefore: markedAt)
                try ChaosFS.writeFile(path + Self.readyMarker, Data())
                guard corrected else { break }
                try? await Task.sleep(for: .milliseconds(Int(correctAfter * 1000)))
                // The corrected file and a new marker, each renamed into place, as an application would.
                let fixed = content(&rng, label: "marked, corrected", size: max(16, size + rng.int(-size / 2...size / 2)))
                if !(await deliveredSoon(first, timeout: 0)) {
                    ledger.supersede(first, because: "corrected before it was delivered")
                }
                try ChaosFS.writeFile(path + ".tmp", fixed)
                // Complete from its rename on (the old marker may still be there): not before then.
                let renamedAt = Date().timeIntervalSince1970
                try ChaosFS.rename(path + ".tmp", path)
                ledger.record(path: path, data: fixed, producer: kind + " v2", notBefore: renamedAt)
                try ChaosFS.writeFile(path + Self.readyMarker + ".tmp", Data())
                try ChaosFS.rename(path + Self.readyMarker + ".tmp", path + Self.readyMarker)

            case .swappedParent(let size, let tenantBFiles, let swapAfter, let swapsRoot):
                let folderName = String(format: "p%03d-tenant", index)
                // The subfolder of the recursive rule, or the outbox of chaos-tenant (whose parent is swapped).
                let folder = swapsRoot ? tenantOutbox : treeOutbox + "/" + folderName
                if !swapsRoot {
                    // The partner's folder for the subfolder (a connector does not create folders).
                    try FileManager.default.createDirectory(atPath: emulator.partnerRoot + Self.remoteDirectory + "/" + folderName,
                                                            withIntermediateDirectories: true)
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                }
                var tenantA: [ChaosLedger.Version] = []
                for item in 0..<2 {
                    let path = folder + "/" + fileName(index, "tenantA-\(item)", &rng)
                    let data = content(&rng, label: "tenant A", size: max(24, size))
                    try ChaosFS.writeFile(path, data)
                    tenantA.append(ledger.record(path: path, data: data, producer: kind + " (tenant A)"))
                }
                // Tenant B's folder, outside every watched tree.
                let tenantB = swapsRoot ? root + "/tenants/B/outbox" : outside + String(format: "/p%03d-tenantB", index)
                try FileManager.default.createDirectory(atPath: tenantB, withIntermediateDirectories: true)
                for item in 0..<tenantBFiles {
                    let name = fileName(index, "tenantB-\(item)", &rng)
                    let data = content(&rng, label: "tenant B payroll", size: max(24, size))
                    ledger.forbid(path: tenantB + "/" + name, data: data, producer: kind + " (tenant B)",
                                  why: "it is tenant B's, reached only through a folder swapped for a symbolic link")
                    try ChaosFS.writeFile(tenantB + "/" + name, data)
                }
                try? await Task.sleep(for: .milliseconds(Int(swapAfter * 1000)))
                if swapsRoot {
                    // As in the issue: /data/tenantA replaced by a symbolic link to /data/tenantB.
                    try ChaosFS.rename(root + "/tenants/A", root + "/tenants/A.old")
                    try ChaosFS.symlink(target: root + "/tenants/B", at: root + "/tenants/A")
                } else {
                    try ChaosFS.rename(folder, outside + String(format: "/p%03d-tenantA-moved", index))
                    try ChaosFS.symlink(target: tenantB, at: folder)
                }
                // Moved out of the tree by the operator: what was not delivered yet is no longer owed.
                let delivered = Set(((try? emulator.deliveries()) ?? []).map { "\(lastComponent($0.remotePath).bytes)|\($0.sha256)" })
                for version in tenantA where !delivered.contains("\(version.name.bytes)|\(version.sha256)") {
                    ledger.supersede(version, because: "its folder was moved out of the watched tree")
                }
                // More of B's files appear behind the link, and one through it.
                try? await Task.sleep(for: .milliseconds(rng.int(200...1500)))
                for (item, through) in [(tenantBFiles, tenantB), (tenantBFiles + 1, folder)] {
                    let name = fileName(index, "tenantB-\(item)", &rng)
                    let data = content(&rng, label: "tenant B payroll", size: max(24, size))
                    ledger.forbid(path: tenantB + "/" + name, data: data, producer: kind + " (tenant B)",
                                  why: "it is tenant B's, written behind a folder swapped for a symbolic link")
                    try ChaosFS.writeFile(through + "/" + name, data)
                }

            case .movedBack(let size):
                let path = self.outbox + "/" + fileName(index, "moved-back", &rng)
                let data = content(&rng, label: "moved back", size: size)
                ledger.forbid(path: path + ".part", data: nil, producer: kind, why: "it is a temporary name")
                try ChaosFS.writeFile(path, data)
                let version = ledger.record(path: path, data: data, producer: kind)
                guard await deliveredSoon(version, timeout: 25) else {
                    ledger.note("moved-back producer \(index): not delivered within 25 s, so not moved back")
                    break
                }
                let sha = version.sha256
                let archives = [self.outbox + "/.ferry/sent"] + (plan.archiveOnTmpfs ? [archive] : [])
                var archived: String?
                _ = await eventually(timeout: 20, interval: 0.3) {
                    archived = archives.flatMap { ChaosFS.regularFiles(under: $0) }.first { candidate in
                        lastComponent(candidate) == version.name && FileManager.default.contents(atPath: candidate).map(SHA256.hex) == sha
                    }
                    return archived != nil
                }
                guard let archived else {
                    ledger.note("moved-back producer \(index): delivered but not archived within 20 s, so not moved back")
                    break
                }
                // As `mv` would across file systems: a copy under a temporary name, renamed into place, then
                // the archived file removed.
                try ChaosFS.writeFile(path + ".part", data)
                try ChaosFS.rename(path + ".part", path)
                unlink(archived)
                ledger.record(path: path, data: data, producer: kind + " (returned from the archive)")
            }
        } catch {
            ledger.note("producer \(index) (\(kind)) could not do its part: \(error)")
        }
    }

    /// A writer that is another process: `sh` holds the file open across its sleeps.
    private func slowShellWriter(path: String, chunks: [Data], pauses: [Double], touch: Bool, index: Int) async throws {
        var script = #"t="$1"; shift; exec >"$t"; cat "$1""#
        var arguments: [String] = []
        for (number, chunk) in chunks.enumerated() {
            let piece = outside + String(format: "/p%03d-chunk-%d", index, number)
            try ChaosFS.writeFile(piece, chunk)
            arguments.append(piece)
        }
        for (number, pause) in pauses.enumerated() {
            if touch {
                script += String(format: "; sleep %.2f; chmod %@ \"$t\"; touch \"$t\"; sleep %.2f", pause / 2, number % 2 == 0 ? "640" : "644", pause / 2)
            } else {
                script += String(format: "; sleep %.2f", pause)
            }
            script += "; cat \"$\(number + 2)\""
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, "sh", path] + arguments
        process.standardInput = FileHandle.nullDevice
        try process.run()
        while process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        guard process.terminationStatus == 0 else {
            throw ChaosSetupError(message: "the sh writer for \(path) exited with \(process.terminationStatus)")
        }
    }

    private func deliveredSoon(_ version: ChaosLedger.Version, timeout: Double) async -> Bool {
        await eventually(timeout: timeout, interval: 0.3) {
            ((try? emulator.deliveries()) ?? []).contains { lastComponent($0.remotePath) == version.name && $0.sha256 == version.sha256 }
        }
    }

    // MARK: Draining and observing

    /// Files ferry reports as quarantined or in doubt, by sha256.
    func reportedFiles() -> Set<String> {
        ChaosObserve.reportedFiles(in: [outbox, as2Outbox, markerOutbox, treeOutbox, tenantOutbox])
    }

    /// `ferry status --json` over the chaos rules.
    func ferryStatus() -> (pending: Int?, possibleDuplicates: Int?) {
        ChaosObserve.ferryStatus(rulesPath: rulesPath, rules: Self.ruleNames)
    }

    /// Waits until every owed version is delivered or reported and ferry has nothing unfinished (twice in
    /// a row), or until ferry has had nothing unfinished for longer than a reconciliation scan would take
    /// to find a missed file (it has given up on what is still missing), or `timeout` seconds.
    private func drain(timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        let patience = Double(max(plan.initial.reconcileSeconds, 8)) * 2 + 5
        var quietChecks = 0
        var idleSince: Date?
        while Date() < deadline {
            if let text = ferry.reviveIfDied() { ledger.note(text) }
            let delivered = Set(((try? emulator.deliveries()) ?? []).map { "\(lastComponent($0.remotePath).bytes)|\($0.sha256)" })
            let reported = reportedFiles()
            let accounted = ledger.versions.allSatisfy { v in
                !v.owed || delivered.contains("\(v.name.bytes)|\(v.sha256)") || reported.contains(v.sha256)
            }
            let idle = ferryStatus().pending == 0
            if accounted, idle {
                quietChecks += 1
                if quietChecks >= 2 { return true }
            } else {
                quietChecks = 0
            }
            if idle {
                if let since = idleSince, Date().timeIntervalSince(since) > patience { return false }
                idleSince = idleSince ?? Date()
            } else {
                idleSince = nil
            }
            try? await Task.sleep(for: .seconds(1))
        }
        return false
    }

    /// Stops the emulator, unmounts the tmpfs, and removes the run's folder unless `keep` (then the
    /// emulator's delivery and request logs are copied into it first).
    func finish(keep: Bool) {
        if keep { ChaosObserve.keepLogs(of: emulator, in: root) }
        emulator.stop()
        if mountedArchive {
            if keep { try? FileManager.default.copyItem(atPath: archive, toPath: root + "/archive-copy") }
            let result = try? ChaosFS.run("/usr/bin/umount", [archive])
            if result?.status != 0 { ledger.note("umount \(archive) failed: \(result?.output ?? "")") }
        }
        if mountedState {
            if keep {
                // The journal is the most useful thing to keep: copy it off the tmpfs before unmounting.
                try? FileManager.default.copyItem(atPath: stateDir, toPath: root + "/state-copy")
            }
            let result = try? ChaosFS.run("/usr/bin/umount", [stateDir])
            if result?.status != 0 { ledger.note("umount \(stateDir) failed: \(result?.output ?? "")") }
        }
        if !keep { try? FileManager.default.removeItem(atPath: root) }
    }
}

/// What a run saw, for the oracle.
struct ChaosObservation: Sendable {
    let deliveries: [Emulator.Delivery]
    /// sha256 of files ferry reports as quarantined or in doubt.
    let reported: Set<String>
    let log: [UInt8]
    let possibleDuplicates: Int?
    let pending: Int?
    let drained: Bool
    let stopStatus: Int32?
    let producedSeconds: Double
    let totalSeconds: Double
    let starts: Int
    let unexpectedExits: [String]
    /// Every file in an archive (`.ferry/sent/` of each folder, and the tmpfs archive_dir) with its sha256.
    var archived: [(path: String, sha256: String)] = []
    /// Ready markers still in the marker folder at the end.
    var markersLeft: [String] = []
    /// Names carried by a StartFileTransfer that a fault answered before any work was done.
    var noWorkSubmissions: Set<ByteName> = []
    /// AS2 has no directory listing: ferry cannot look before it resends.
    var as2ConnectorID = ""
}

/// What the chaos run and the soak (SoakRun.swift) observe the same way at the end of a run.
enum ChaosObserve {
    /// Files ferry reports as quarantined or in doubt: in `.ferry/failed/` or `.ferry/in-doubt/` of each
    /// outbox with a `.reason` file beside them. Returns their sha256 values.
    static func reportedFiles(in outboxes: [String]) -> Set<String> {
        var shas: Set<String> = []
        for folder in outboxes.flatMap({ [$0 + "/.ferry/failed", $0 + "/.ferry/in-doubt"] }) {
            for path in ChaosFS.regularFiles(under: folder) where !path.hasSuffix(".reason") {
                guard FileManager.default.fileExists(atPath: path + ".reason"), let data = FileManager.default.contents(atPath: path) else { continue }
                shas.insert(SHA256.hex(data))
            }
        }
        return shas
    }

    /// `ferry status --json`: the unfinished files (waiting, staged, in flight, failed) of `rules` (nil
    /// unless every one is listed) and the possible-duplicate counter; nil values when it could not be
    /// read. `environment` is the daemon's: `ferry status` reads the same rules file.
    static func ferryStatus(rulesPath: String, rules names: [String], environment: [String: String] = [:]) -> (pending: Int?, possibleDuplicates: Int?) {
        guard let json = statusJSON(rulesPath: rulesPath, environment: environment) else { return (nil, nil) }
        let rules = (json["outbound"] as? [[String: Any]] ?? []).filter { names.contains($0["rule"] as? String ?? "") }
        let pending = rules.count == names.count
            ? rules.reduce(0) { sum, r in ["waiting", "staged", "in_flight", "failed"].reduce(sum) { $0 + ((r[$1] as? Int) ?? 0) } } : nil
        return (pending, json["possible_duplicates"] as? Int)
    }

    /// `ferry status --json` as an object, nil when it could not be read.
    static func statusJSON(rulesPath: String, environment: [String: String] = [:]) -> [String: Any]? {
        let merged = environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { _, daemon in daemon }
        guard let result = try? FerryBinary.run(["status", "--json", "--config", rulesPath], environment: merged) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    }

    /// Every regular file under `folders` with its sha256: the archives, checked for partial copies.
    static func archived(under folders: [String]) -> [(path: String, sha256: String)] {
        folders.flatMap { ChaosFS.regularFiles(under: $0) }
            .map { path in (path: path, sha256: FileManager.default.contents(atPath: path).map(SHA256.hex) ?? "") }
    }

    /// The names carried by StartFileTransfer requests a fault answered before any work (5xx, dropped; not
    /// throttling, which is not in doubt, nor lost_answer/late_504, which did the work).
    static func noWorkSubmissions(_ requests: [Emulator.RequestRecord]) -> Set<ByteName> {
        Set(requests.filter { request in
            request.operation == "StartFileTransfer" && request.fault.map { !["throttle", "lost_answer", "late_504"].contains($0) } == true
        }.flatMap { $0.paths ?? [] }.map(lastComponent))
    }

    /// Copies the emulator's delivery and request logs and its stderr into a kept run folder.
    static func keepLogs(of emulator: Emulator, in root: String) {
        for (source, name) in [(emulator.deliveriesPath, "deliveries.jsonl"), (emulator.requestLogPath, "requests.jsonl"),
                               (emulator.stderrLogPath, "emulator.stderr.log")] {
            try? FileManager.default.copyItem(atPath: source, toPath: root + "/" + name)
        }
    }
}
