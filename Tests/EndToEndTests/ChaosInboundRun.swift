import Foundation
import FerryTestSupport

/// What the partner wrote: every complete version of every name (the oracle's expectation), the files
/// that must never be retrieved, and the local files the test put into download_to itself. Written from
/// many producer tasks at once.
final class ChaosInboundLedger: @unchecked Sendable {
    struct Version: Sendable {
        let name: ByteName
        let data: Data
        let sha256: String
        let producer: String
        /// False when the partner replaced or removed it before ferry could have it: placing it is then
        /// allowed (once, intact), not owed.
        var owed = true
        var note: String?
    }

    struct Forbidden: Sendable {
        let name: ByteName
        let sha256: String
        let producer: String
        let why: String
        /// A text ferry's log must contain (next to "refused") when the name is hostile; nil for names
        /// that are merely ignored.
        let refusalTag: String?
    }

    private let lock = NSLock()
    private var versionList: [Version] = []
    private var forbiddenList: [Forbidden] = []
    private var localList: [(name: ByteName, sha256: String)] = []
    private var noteList: [String] = []

    var versions: [Version] { lock.withLock { versionList } }
    var forbidden: [Forbidden] { lock.withLock { forbiddenList } }
    var locals: [(name: ByteName, sha256: String)] { lock.withLock { localList } }
    var notes: [String] { lock.withLock { noteList } }

    @discardableResult
    func record(name: String, data: Data, producer: String) -> Version {
        let version = Version(name: ByteName(name), data: data, sha256: SHA256.hex(data), producer: producer)
        lock.withLock { versionList.append(version) }
        return version
    }

    func release(_ version: Version, because note: String) {
        lock.withLock {
            for index in versionList.indices where versionList[index].name == version.name && versionList[index].sha256 == version.sha256 {
                versionList[index].owed = false
                versionList[index].note = note
            }
        }
    }

    func forbid(name: String, data: Data, producer: String, why: String, refusalTag: String?) {
        lock.withLock { forbiddenList.append(Forbidden(name: ByteName(name), sha256: SHA256.hex(data), producer: producer, why: why, refusalTag: refusalTag)) }
    }

    func local(name: String, data: Data) { lock.withLock { localList.append((ByteName(name), SHA256.hex(data))) } }

    func note(_ text: String) { lock.withLock { noteList.append(text) } }
}

/// One file seen under a final name in download_to: a placement by ferry (or one of the test's own local
/// files). `ctime` is when it got that name (rename and link set it), the instant the oracle compares
/// with the partner-side delete or move.
struct ChaosPlacement: Sendable {
    let name: ByteName
    let sha256: String
    let data: Data
    let inode: UInt64
    let ctime: Double
    let firstSeen: Double
}

/// Watches download_to every 20 ms (the test's own eyes, independent of ferry): records every file that
/// appears under a final name with its bytes, and every temporary file ferry makes (for the kills aimed
/// at a placement). A file replaced by another within one scan would be missed; the plans' versions of a
/// name are seconds apart.
final class ChaosInboundObserver: @unchecked Sendable {
    let folder: String
    private let lock = NSLock()
    private var seen: Set<String> = []
    private var placementList: [ChaosPlacement] = []
    private var temporaryCount = 0
    private var strayList: Set<String> = []
    private var stopped = false

    init(folder: String) { self.folder = folder }

    var placements: [ChaosPlacement] { lock.withLock { placementList } }
    var temporaryFilesSeen: Int { lock.withLock { temporaryCount } }
    /// Anything in download_to that is neither a regular file under a final name nor ferry's temporary file.
    var strays: [String] { lock.withLock { strayList.sorted() } }

    func placed(_ sha256: String) -> Bool { lock.withLock { placementList.contains { $0.sha256 == sha256 } } }

    func stop() { lock.withLock { stopped = true } }

    func run() async {
        while !lock.withLock({ stopped }) {
            scan()
            try? await Task.sleep(for: .milliseconds(20))
        }
        scan()
    }

    func scan() {
        for entry in ChaosInboundFS.entries(folder) {
            let path = folder + "/" + entry.string
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            let isTemporary = entry.bytes.starts(with: Array(".ferry-download-".utf8))
            if isTemporary {
                let key = "tmp|\(info.st_ino)"
                lock.withLock { if seen.insert(key).inserted { temporaryCount += 1 } }
                continue
            }
            guard info.st_mode & S_IFMT == S_IFREG else {
                lock.withLock { _ = strayList.insert("\(entry) (not a regular file)") }
                continue
            }
            if entry.bytes.first == UInt8(ascii: ".") { lock.withLock { _ = strayList.insert("\(entry) (a dot file)") } }
            let key = "\(entry.bytes)|\(info.st_ino)|\(info.st_size)|\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
            guard !lock.withLock({ seen.contains(key) }) else { continue }
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            // Read again after the bytes: a file replaced while we read it is looked at next scan.
            var after = stat()
            guard lstat(path, &after) == 0, after.st_ino == info.st_ino, after.st_size == data.count else { continue }
            let placement = ChaosPlacement(name: entry, sha256: SHA256.hex(data), data: data, inode: UInt64(info.st_ino),
                                           ctime: Double(info.st_ctim.tv_sec) + Double(info.st_ctim.tv_nsec) / 1e9,
                                           firstSeen: Date().timeIntervalSince1970)
            lock.withLock {
                seen.insert(key)
                placementList.append(placement)
            }
        }
    }
}

/// The partner's SFTP folder and download_to, handled byte-exactly (NFC/NFD twins and control characters
/// in names survive), and the emulator's inbound logs.
enum ChaosInboundFS {
    /// The names in `folder`, as bytes (readdir, not FileManager, so nothing is normalised or dropped).
    static func entries(_ folder: String) -> [ByteName] {
        guard let dir = opendir(folder) else { return [] }
        defer { closedir(dir) }
        var names: [ByteName] = []
        while let entry = readdir(dir) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes == [UInt8(ascii: ".")] || bytes == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            names.append(ByteName(bytes: bytes))
        }
        return names
    }

    /// Writes `data` under `path` in one write and sets its mtime to `mtime` (seconds) if given.
    static func write(_ path: String, _ data: Data, mtime: Double? = nil) throws {
        try ChaosFS.writeFile(path, data)
        if let mtime { try setMtime(path, mtime) }
    }

    static func setMtime(_ path: String, _ seconds: Double) throws {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
        guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw ChaosSetupError(message: "utimensat \(path): errno \(errno)") }
    }

    /// One line of the emulator's `remote_ops.jsonl`.
    struct PartnerOp: Decodable, Sendable {
        let ts: Double
        let op: String
        let remotePath: String
        let size: Int?
        let sha256: String?
        let ok: Bool
        let target: String?
        let error: String?
    }

    static func partnerOps(_ emulator: Emulator) -> [PartnerOp] {
        let path = (emulator.deliveriesPath as NSString).deletingLastPathComponent + "/remote_ops.jsonl"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast()  // empty, or a line still being written
        return lines.filter { !$0.isEmpty }.compactMap { try? decoder.decode(PartnerOp.self, from: Data($0.utf8)) }
    }

    static func partnerOpsPath(_ emulator: Emulator) -> String {
        (emulator.deliveriesPath as NSString).deletingLastPathComponent + "/remote_ops.jsonl"
    }
}

/// One inbound seed's run: the partner's folder, download_to on a small tmpfs, the emulator, ferry, the
/// partner-side producers and the timeline; then what the oracle needs.
final class ChaosInboundRun: @unchecked Sendable {
    static let ruleName = "chaos-in"
    static let remoteDirectory = "/outbound/chaos"
    static let archiveDirectory = "/outbound/chaos-archive"
    /// Journal states of a version ferry has not finished with.
    static let unfinishedStates: Set<String> = ["listed", "submitting", "retrieving", "in_s3", "downloading", "downloaded"]
    /// The states the drain waits for: `listed` is left out, since a row whose version the partner
    /// replaced before its second look stays `listed` (see the notes); a live listed version is waited
    /// for through the owed check.
    static let drainStates: Set<String> = ["submitting", "retrieving", "in_s3", "downloading", "downloaded"]

    let plan: ChaosInboundPlan
    let root: String
    /// A tmpfs of its own (so it can be filled); download_to is `box` inside it, and nothing else may ever
    /// appear in it.
    let mount: String
    let downloadTo: String
    let stateDir: String
    let rulesPath: String
    let emulator: Emulator
    let partnerFolder: String
    let ledger = ChaosInboundLedger()
    let observer: ChaosInboundObserver
    let ferry: ChaosFerry
    let startedAt = Date()
    private var timelineStart = Date()
    private var mounted = false
    private let lock = NSLock()
    private var supportedKinds: Set<String> = []
    private var stopWatchdog = false

    init(plan: ChaosInboundPlan) throws {
        self.plan = plan
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/ferry-chaos-inbound-\(plan.seed).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ChaosSetupError(message: "mkdtemp under \(base) failed: errno \(errno)") }
        root = String(cString: made)
        mount = root + "/in"
        downloadTo = mount + "/box"
        stateDir = root + "/state"
        rulesPath = root + "/rules.yaml"
        for folder in [mount, stateDir] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let result = try ChaosFS.run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", mount])
        guard result.status == 0 else {
            try? FileManager.default.removeItem(atPath: root)
            throw ChaosSetupError(message: """
                the inbound chaos test puts download_to on a 16 MiB tmpfs (to fill it), but `mount -t tmpfs -o size=16m tmpfs \(mount)` \
                failed (exit \(result.status): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))); run it as root \
                (CAP_SYS_ADMIN) or in a container that allows mounts
                """)
        }
        mounted = true
        try FileManager.default.createDirectory(atPath: downloadTo, withIntermediateDirectories: true)
        do {
            emulator = try Emulator.start(transferDelayMs: plan.transferDelayMs, seed: Int(plan.seed % 1_000_000_007))
        } catch {
            _ = try? ChaosFS.run("/usr/bin/umount", [mount])
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
        partnerFolder = emulator.partnerRoot + Self.remoteDirectory
        try FileManager.default.createDirectory(atPath: partnerFolder, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: emulator.partnerRoot + Self.archiveDirectory, withIntermediateDirectories: true)
        observer = ChaosInboundObserver(folder: downloadTo)
        ferry = ChaosFerry(configPath: rulesPath, environment: emulator.environment, logFolder: root, startedAt: startedAt)
        let afterRetrieve = plan.afterRetrieve == "move" ? "move:\(Self.archiveDirectory)" : plan.afterRetrieve
        try """
            version: 1
            state_dir: \(stateDir)
            aws:
              region: \(emulator.region)
              endpoint_url: \(emulator.endpoint)
            connectors:
              partner:
                type: sftp
                connector_id: \(emulator.sftpConnectorId)
                requests_per_second: 20
            inbound:
              - name: \(Self.ruleName)
                connector: partner
                remote_directory_path: \(Self.remoteDirectory)
                schedule: every \(plan.intervalSeconds)s
                min_age: \(plan.minAgeSeconds)s
                local_directory_path: s3://\(emulator.inboundBucket)/chaos/
                download_to: \(downloadTo)
                on_conflict: \(plan.onConflict)
                after_retrieve: \(afterRetrieve)

            """.write(toFile: rulesPath, atomically: true, encoding: .utf8)
    }

    var elapsed: Double { Date().timeIntervalSince(startedAt) }

    // MARK: Playing the day

    func play() async throws -> ChaosInboundObservation {
        try await probeFaultKinds()
        timelineStart = Date()
        let watching = Task { await observer.run() }
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
                switch event.action {
                case .produce(let index, let producer, let seed):
                    group.addTask { await self.produce(index: index, producer, seed: seed) }
                case .kill(let restartAfter, let aim):
                    if let aim { await waitForAim(aim) }
                    ferry.kill()
                    if restartAfter > 0 { try? await Task.sleep(for: .milliseconds(Int(restartAfter * 1000))) }
                    do { try ferry.start() } catch { ledger.note("restart after SIGKILL failed: \(error)") }
                case .faults(let window):
                    await applyFaults(window)
                case .fillDownloadTo(let seconds):
                    group.addTask { await self.fillDownloadTo(for: seconds) }
                case .removeTemporaryFiles(let seconds):
                    group.addTask { await self.removeTemporaryFiles(for: seconds) }
                }
            }
            let rest = plan.producePhase - Date().timeIntervalSince(timelineStart)
            if rest > 0 { try? await Task.sleep(for: .milliseconds(Int(rest * 1000))) }
            await group.waitForAll()
        }
        let produced = Date().timeIntervalSince(timelineStart)
        // From here the service is healthy and download_to writable: what is still missing is ferry's.
        _ = try? await postEmulatorControl(emulator.controlURL, path: "/faults", body: ["rate": 0.0, "kinds": ["throttle"], "latency_ms": 0,
                                                                                      "operations": NSNull()])
        let drained = await drain(timeout: Double(ProcessInfo.processInfo.environment["CHAOS_DRAIN_TIMEOUT"] ?? "") ?? 150)
        // A moment more, for a late duplicate placement or a late delete to show.
        try? await Task.sleep(for: .seconds(2 + Double(plan.intervalSeconds)))
        lock.withLock { stopWatchdog = true }
        await watchdog.value
        let stopStatus = await ferry.stop()
        observer.stop()
        await watching.value
        return ChaosInboundObservation(
            placements: observer.placements, strays: observer.strays, temporaryFilesSeen: observer.temporaryFilesSeen,
            leftoverTemporaryFiles: ChaosInboundFS.entries(downloadTo).filter { $0.bytes.starts(with: Array(".ferry-download-".utf8)) }.map(\.description),
            outsideDownloadTo: entriesOutsideDownloadTo(), partnerOps: ChaosInboundFS.partnerOps(emulator),
            partnerLeft: ChaosInboundFS.entries(partnerFolder), journal: journalRows(), log: ferry.logBytes, drained: drained,
            stopStatus: stopStatus, producedSeconds: produced, totalSeconds: elapsed, starts: ferry.starts, unexpectedExits: ferry.unexpectedExits)
    }

    /// Waits for the next request of `aim` answered 200 (the emulator logs it just before the answer goes
    /// out), or for `placement`: a new temporary download file; at most 8 s.
    private func waitForAim(_ aim: String) async {
        let deadline = Date().addingTimeInterval(8)
        if aim == "placement" {
            let before = observer.temporaryFilesSeen
            while Date() < deadline {
                if ChaosInboundFS.entries(downloadTo).contains(where: { $0.bytes.starts(with: Array(".ferry-download-".utf8)) })
                    || observer.temporaryFilesSeen > before { return }
                try? await Task.sleep(for: .milliseconds(2))
            }
            ledger.note("a kill aimed at a placement at \(Int(elapsed))s saw no temporary file within 8 s and fell anyway")
            return
        }
        let path = emulator.requestLogPath
        let needles = ["\"operation\": \"\(aim)\"", "\"status\": 200"]
        var offset = UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0)
        while Date() < deadline {
            if let handle = FileHandle(forReadingAtPath: path) {
                handle.seek(toFileOffset: offset)
                let fresh = handle.readDataToEndOfFile()
                handle.closeFile()
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

    private func probeFaultKinds() async throws {
        let supported = try await supportedFaultKinds(emulator.controlURL, of: ChaosInboundPlan.faultKinds)
        let missing = ChaosInboundPlan.faultKinds.filter { !supported.contains($0) }
        if !missing.isEmpty { ledger.note("this emulator has no fault kind \(missing.joined(separator: ", ")); the windows play without it") }
        lock.withLock { supportedKinds = supported }
    }

    private func applyFaults(_ window: ChaosInboundPlan.FaultWindow) async {
        let supported = lock.withLock { supportedKinds }
        let kinds = playableFaultKinds(window.kinds, supported: supported)
        let body: [String: Any] = ["rate": window.rate, "kinds": kinds, "latency_ms": window.latencyMs,
                                   "operations": window.operations.map { $0 as Any } ?? NSNull()]
        do {
            let answer = try await postEmulatorControl(emulator.controlURL, path: "/faults", body: body)
            if answer.status != 200 { ledger.note("POST /faults \(body) answered \(answer.status): \(answer.body)") }
        } catch {
            ledger.note("POST /faults failed: \(error)")
        }
    }

    private func fillDownloadTo(for seconds: Double) async {
        // Beside download_to, on the same tmpfs: ferry's writes fail with ENOSPC, and the filler is never
        // taken for a placement.
        let filler = mount + "/filler"
        do {
            let fd = try ChaosFS.openForWriting(filler)
            let chunk = [UInt8](repeating: 0x5A, count: 64 * 1024)
            while chunk.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) > 0 {}
            ChaosFS.closeFile(fd)
            try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        } catch {
            ledger.note("cannot fill download_to: \(error)")
        }
        unlink(filler)
    }

    private func removeTemporaryFiles(for seconds: Double) async {
        let until = Date().addingTimeInterval(seconds)
        var removed = 0
        while Date() < until {
            for entry in ChaosInboundFS.entries(downloadTo) where entry.bytes.starts(with: Array(".ferry-download-".utf8)) {
                if unlink(downloadTo + "/" + entry.string) == 0 { removed += 1 }
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        ledger.note(String(format: "removed %d temporary download file(s) in a %.1f s window", removed, seconds))
    }

    // MARK: The partner's producers

    private static let decorations: [(String, Int)] = [("", 10), (" and space", 2), ("-\u{FC}n\u{EF}\u{E7}\u{F8}d\u{E9}", 1), (" (2)", 1),
                                                       ("+plus", 1), ("\u{65E5}\u{672C}", 1), ("=eq&amp", 1)]

    private func fileName(_ index: Int, _ tag: String, _ rng: inout SplitMix64) -> String {
        String(format: "p%03d-", index) + tag + rng.weighted(Self.decorations) + rng.weighted([(".csv", 3), (".edi", 1), (".xml", 1)])
    }

    /// Bytes no other version shares: random from the first byte on.
    private func content(_ rng: inout SplitMix64, label: String, size: Int) -> Data {
        guard size > 0 else { return Data() }
        var bytes = Array(String(format: "%016llx ", rng.next()).utf8) + Array("\(label) seed \(plan.seed)\n".utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789;,.".utf8)
        while bytes.count < size {
            for _ in 0..<79 { bytes.append(alphabet[rng.int(0...(alphabet.count - 1))]) }
            bytes.append(UInt8(ascii: "\n"))
        }
        return Data(bytes.prefix(size))
    }

    /// Waits until the wall clock is in a later whole second than `previous` (a listing shows whole
    /// seconds, so two same-size versions within one second are one version to anyone who lists).
    private func nextSecond(after previous: Double) async {
        while floor(Date().timeIntervalSince1970) <= floor(previous) { try? await Task.sleep(for: .milliseconds(50)) }
    }

    /// Whether a retrieval (the emulator's log) has fetched these bytes from the partner.
    private func retrieved(_ sha256: String) -> Bool {
        ChaosInboundFS.partnerOps(emulator).contains { $0.op == "retrieve" && $0.sha256 == sha256 }
    }

    private func produce(index: Int, _ producer: ChaosInboundPlan.Producer, seed: UInt64) async {
        var rng = SplitMix64(seed: seed)
        let kind = producer.kind
        let folder = partnerFolder
        do {
            switch producer {
            case .fast(let size):
                let name = fileName(index, "fast", &rng)
                let data = content(&rng, label: "fast", size: size)
                try ChaosInboundFS.write(folder + "/" + name, data)
                ledger.record(name: name, data: data, producer: kind)

            case .renamedIn(let size):
                let name = fileName(index, "renamed", &rng)
                let data = content(&rng, label: "renamed", size: size)
                let temporary = folder + "/." + name + ".uploading"
                try ChaosInboundFS.write(temporary, data)
                try? await Task.sleep(for: .milliseconds(rng.int(0...1500)))
                try ChaosFS.rename(temporary, folder + "/" + name)
                ledger.record(name: name, data: data, producer: kind)

            case .slowUpload(let size, let headerBytes, let pauses):
                let name = fileName(index, "slow", &rng)
                let data = content(&rng, label: "slow", size: size)
                var cuts = [0, headerBytes]
                for part in 1..<pauses.count { cuts.append(headerBytes + (size - headerBytes) * part / pauses.count) }
                cuts.append(size)
                let fd = try ChaosFS.openForWriting(folder + "/" + name)
                defer { ChaosFS.closeFile(fd) }
                try ChaosFS.writeAll(fd, data.subdata(in: cuts[0]..<cuts[1]))
                for (number, pause) in pauses.enumerated() {
                    try? await Task.sleep(for: .milliseconds(Int(pause * 1000)))
                    try ChaosFS.writeAll(fd, data.subdata(in: cuts[number + 1]..<cuts[number + 2]))
                }
                ledger.record(name: name, data: data, producer: kind)

            case .oldMtime(let size):
                let name = fileName(index, "old", &rng)
                let data = content(&rng, label: "old mtime", size: size)
                try ChaosInboundFS.write(folder + "/" + name, data, mtime: Date().timeIntervalSince1970 - 3600 - Double(index))
                ledger.record(name: name, data: data, producer: kind)

            case .rewriteAfterPlaced(let versions, let size, let sameSize, let inPlace):
                let name = fileName(index, "rewritten", &rng)
                var previousWrite = 0.0
                for number in 1...versions {
                    let data = content(&rng, label: "rewritten v\(number)", size: sameSize ? size : max(16, size + rng.int(-size / 2...size)))
                    if number > 1 { await nextSecond(after: previousWrite) }
                    if inPlace || number == 1 {
                        try ChaosInboundFS.write(folder + "/" + name, data)
                    } else {
                        try ChaosInboundFS.write(folder + "/.\(name).uploading", data)
                        try ChaosFS.rename(folder + "/.\(name).uploading", folder + "/" + name)
                    }
                    previousWrite = Date().timeIntervalSince1970
                    let version = ledger.record(name: name, data: data, producer: kind + " v\(number)")
                    guard number < versions else { break }
                    let placed = await eventually(timeout: 20, interval: 0.1) { observer.placed(version.sha256) }
                    if !placed { ledger.release(version, because: "not placed within 20 s, then rewritten (superseded)") }
                }

            case .rewriteInFlight(let size, let gap, let sameSize):
                let name = fileName(index, "inflight", &rng)
                let first = content(&rng, label: "in flight v1", size: size)
                let second = content(&rng, label: "in flight v2", size: sameSize ? size : max(16, size + rng.int(-size / 2...size)))
                try ChaosInboundFS.write(folder + "/.\(name).uploading", first)
                try ChaosFS.rename(folder + "/.\(name).uploading", folder + "/" + name)
                let written = Date().timeIntervalSince1970
                let v1 = ledger.record(name: name, data: first, producer: kind + " v1")
                try? await Task.sleep(for: .milliseconds(Int(gap * 1000)))
                await nextSecond(after: written)
                try ChaosInboundFS.write(folder + "/.\(name).uploading", second)
                // Decided at the instant v1 goes: a version whose bytes a retrieval already fetched is
                // ferry's to place (S3 may hold its only copy); one nobody fetched was superseded.
                let fetched = retrieved(v1.sha256) || observer.placed(v1.sha256)
                try ChaosFS.rename(folder + "/.\(name).uploading", folder + "/" + name)
                if !fetched { ledger.release(v1, because: "replaced on the partner before any retrieval fetched it (superseded)") }
                ledger.record(name: name, data: second, producer: kind + " v2")

            case .unicodeTwins(let size):
                let stem = String(format: "p%03d-", index)
                let names = [stem + "caf\u{E9}.csv", stem + "cafe\u{301}.csv"]  // NFC, NFD
                for name in rng.chance(0.5) ? names : names.reversed() {
                    let data = content(&rng, label: "twin", size: max(24, size))
                    try ChaosInboundFS.write(folder + "/" + name, data)
                    ledger.record(name: name, data: data, producer: kind)
                }

            case .hostile(let hostileKind, let size):
                let tag = String(format: "p%03d-hostile", index)
                let name: String
                switch hostileKind {
                case "newline": name = tag + "\nx.csv"
                case "control": name = tag + "\u{1}.csv"
                case "delete": name = tag + "\u{7F}.csv"
                case "c1": name = tag + "\u{85}.csv"
                case "rlo": name = tag + "\u{202E}vsc.exe"
                case "zwsp": name = tag + "\u{200B}.csv"
                case "bom": name = tag + "\u{FEFF}.csv"
                default: name = tag + "..csv..x"
                }
                let data = content(&rng, label: "hostile", size: max(24, size))
                ledger.forbid(name: name, data: data, producer: kind, why: "a hostile name (\(hostileKind))", refusalTag: tag)
                try ChaosInboundFS.write(folder + "/" + name, data)

            case .ignored(let suffix, let size):
                let stem = String(format: "p%03d-ignored", index)
                let name: String
                switch suffix {
                case "hidden": name = "." + stem + ".csv"
                case "tilde": name = "~" + stem + ".csv"
                default: name = stem + ".csv." + suffix
                }
                let data = content(&rng, label: "ignored", size: max(24, size))
                ledger.forbid(name: name, data: data, producer: kind, why: "a name in the default ignore list (\(suffix))", refusalTag: nil)
                try ChaosInboundFS.write(folder + "/" + name, data)

            case .localCollision(let size):
                let name = fileName(index, "collides", &rng)
                let mine = content(&rng, label: "local file", size: max(24, size / 2))
                // Written beside download_to and renamed in, as ferry itself does: the scanner must never
                // see it half written. download_to may be full right now; then there is no local file.
                let staging = mount + "/collision-\(index)"
                do {
                    try ChaosInboundFS.write(staging, mine)
                    ledger.local(name: name, data: mine)
                    try ChaosFS.rename(staging, downloadTo + "/" + name)
                } catch {
                    unlink(staging)
                    ledger.note("local-collision \(index): no local file (\(error)); the partner's file is an ordinary version")
                }
                try? await Task.sleep(for: .milliseconds(rng.int(0...500)))
                let data = content(&rng, label: "collides", size: max(24, size))
                try ChaosInboundFS.write(folder + "/" + name, data)
                ledger.record(name: name, data: data, producer: kind)

            case .partnerDeletes(let size, let after):
                let name = fileName(index, "withdrawn", &rng)
                let data = content(&rng, label: "withdrawn", size: size)
                try ChaosInboundFS.write(folder + "/" + name, data)
                let version = ledger.record(name: name, data: data, producer: kind)
                try? await Task.sleep(for: .milliseconds(Int(after * 1000)))
                // Another process's unlink: if ferry already removed or moved it, there is nothing to do.
                let fetched = retrieved(version.sha256) || observer.placed(version.sha256)
                if unlink(folder + "/" + name) == 0, !fetched {
                    ledger.release(version, because: "removed by the partner before any retrieval fetched it")
                }
            }
        } catch {
            ledger.note("producer \(index) (\(kind)) could not do its part: \(error)")
        }
    }

    // MARK: Draining and observing

    /// The journal's rows for the rule, read with the sqlite3 command (the real SQLite, read-only, beside
    /// a running ferry in WAL mode): remote path, size, state, last error and local path.
    func journalRows() -> [ChaosInboundJournalRow] {
        let database = stateDir + "/journal.db"
        guard FileManager.default.fileExists(atPath: database),
              let result = try? ChaosFS.run("/usr/bin/sqlite3", ["-readonly", "-json", database,
                  "SELECT remote_path, size, state, COALESCE(last_error, '') AS last_error, COALESCE(local_path, '') AS local_path FROM inbound_files WHERE rule = '\(Self.ruleName)'"]),
              result.status == 0 else { return [] }
        let text = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return [] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode([ChaosInboundJournalRow].self, from: Data(text.utf8))
        } catch {
            ledger.note("the journal's rows could not be decoded: \(error)")
            return []
        }
    }

    /// Waits until every owed version is placed or reported and the journal has nothing unfinished (twice
    /// in a row, a poll interval apart), or `timeout` seconds.
    private func drain(timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var quietChecks = 0
        while Date() < deadline {
            if let text = ferry.reviveIfDied() { ledger.note(text) }
            observer.scan()
            let rows = journalRows()
            let unfinished = rows.filter { Self.drainStates.contains($0.state) }
            let versions = ledger.versions
            let victims = ChaosInboundOracle.windowVictims(versions: versions, ops: ChaosInboundFS.partnerOps(emulator)) { observer.placed($0.sha256) }
            let accounted = versions.allSatisfy { version in
                !version.owed || observer.placed(version.sha256) || ChaosInboundOracle.reported(version, rows: rows, onConflict: plan.onConflict)
                    || victims.contains { $0.version.name == version.name && $0.version.sha256 == version.sha256 }
            }
            // A rule that deletes or moves leaves only what ferry must not take (hostile and ignored names,
            // skipped versions) on the partner once it is done.
            if accounted, unfinished.isEmpty, !rows.isEmpty {
                quietChecks += 1
                if quietChecks >= 2 { return true }
            } else {
                quietChecks = 0
            }
            try? await Task.sleep(for: .milliseconds(max(1000, plan.intervalSeconds * 1000)))
        }
        let rows = journalRows()
        let missing = ledger.versions.filter { version in
            version.owed && !observer.placed(version.sha256) && !ChaosInboundOracle.reported(version, rows: rows, onConflict: plan.onConflict)
        }
        ledger.note("drain gave up after \(Int(timeout)) s: \(rows.count) journal rows read, \(missing.count) owed version(s) not yet placed or reported"
                    + (missing.isEmpty ? "" : ": " + missing.prefix(8).map { "\($0.name) (\($0.producer))" }.joined(separator: ", ")))
        return false
    }

    /// Everything in the run's folder that ferry might have written outside download_to: the tmpfs must
    /// hold only `box`, and the run folder only what the test made.
    private func entriesOutsideDownloadTo() -> [String] {
        var found: [String] = []
        for entry in ChaosInboundFS.entries(mount) where entry.string != "box" && entry.string != "filler" && !entry.string.hasPrefix("collision-") {
            found.append("\(mount)/\(entry)")
        }
        let expected: Set<String> = ["in", "state", "rules.yaml"]
        for entry in ChaosInboundFS.entries(root) where !expected.contains(entry.string) && !entry.string.hasPrefix("ferry-")
            && !entry.string.hasPrefix(".rules.yaml") {
            found.append("\(root)/\(entry)")
        }
        return found
    }

    /// Stops the emulator, unmounts the tmpfs (after copying download_to out when `keep`), and removes the
    /// run's folder unless `keep`.
    func finish(keep: Bool) {
        if keep {
            for (source, name) in [(emulator.requestLogPath, "requests.jsonl"), (ChaosInboundFS.partnerOpsPath(emulator), "remote_ops.jsonl"),
                                   (emulator.stderrLogPath, "emulator.stderr.log")] {
                try? FileManager.default.copyItem(atPath: source, toPath: root + "/" + name)
            }
            try? FileManager.default.copyItem(atPath: downloadTo, toPath: root + "/download_to-copy")
            try? FileManager.default.copyItem(atPath: partnerFolder, toPath: root + "/partner-copy")
        }
        emulator.stop()
        if mounted {
            let result = try? ChaosFS.run("/usr/bin/umount", [mount])
            if result?.status != 0 { ledger.note("umount \(mount) failed: \(result?.output ?? "")") }
        }
        if !keep { try? FileManager.default.removeItem(atPath: root) }
    }
}

/// One row of the journal's inbound_files for the rule.
struct ChaosInboundJournalRow: Decodable, Sendable {
    let remotePath: String
    let size: Int
    let state: String
    let lastError: String
    let localPath: String
}

/// What an inbound run saw, for the oracle.
struct ChaosInboundObservation: Sendable {
    let placements: [ChaosPlacement]
    let strays: [String]
    let temporaryFilesSeen: Int
    let leftoverTemporaryFiles: [String]
    let outsideDownloadTo: [String]
    let partnerOps: [ChaosInboundFS.PartnerOp]
    let partnerLeft: [ByteName]
    let journal: [ChaosInboundJournalRow]
    let log: [UInt8]
    let drained: Bool
    let stopStatus: Int32?
    let producedSeconds: Double
    let totalSeconds: Double
    let starts: Int
    let unexpectedExits: [String]
}
