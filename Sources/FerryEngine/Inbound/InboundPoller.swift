import FerryAWS
import FerryConfig
import FerryStore
import Foundation
import Logging
import Synchronization

/// AWS access for one connector, as the inbound poller uses it.
public struct InboundConnection: Sendable {
    /// The AWS connector id (`c-…`).
    public var connectorId: String
    public var s3: any StagingStore
    public var transfer: any TransferService
    /// The connector's service, shared with outbound in the daemon: the request budget (`pace`), the
    /// transfers-in-flight budget (`max_in_flight`), submission and the one tracker of its transfers.
    let service: ConnectorService

    /// A connection with budgets of its own: `pace` is waited for before every Start* call, `inFlight`
    /// holds the transfers (tests, and tools that bound their calls themselves).
    public init(connectorId: String, s3: any StagingStore, transfer: any TransferService, pace: @escaping @Sendable () async throws -> Void,
                inFlight: InFlightGate = .unlimited) {
        let connector = Connector(name: connectorId, type: .sftp, connectorId: connectorId, aws: AWSSettings(region: ""))
        self.init(connectorId: connectorId, s3: s3, transfer: transfer,
                  service: ConnectorService(ConnectorContext(connector: connector, s3: s3, transfer: transfer), pace: pace, inFlight: inFlight,
                                            logger: Logger(label: "ferry.connector")))
    }

    init(connectorId: String, s3: any StagingStore, transfer: any TransferService, service: ConnectorService) {
        self.connectorId = connectorId
        self.s3 = s3
        self.transfer = transfer
        self.service = service
    }
}

/// A connector's budget of transfers submitted and not finished: AWS queues at most 1,000 per connector,
/// for both directions together.
public struct InFlightGate: Sendable {
    /// Waits for a free slot and takes it; throws if the task is cancelled first (then holding none).
    public var enter: @Sendable () async throws -> Void
    /// Takes a slot without waiting, even beyond the limit: for transfers that already exist at AWS.
    public var take: @Sendable () async -> Void
    /// Gives a slot back.
    public var leave: @Sendable () async -> Void

    public init(enter: @escaping @Sendable () async throws -> Void, take: @escaping @Sendable () async -> Void,
                leave: @escaping @Sendable () async -> Void) {
        self.enter = enter
        self.take = take
        self.leave = leave
    }

    /// No limit (tests, and callers that bound transfers themselves).
    public static let unlimited = InFlightGate(enter: {}, take: {}, leave: {})
}

/// Where the poller's counters go (the daemon's `Metrics` has this shape).
public protocol InboundMetrics: Sendable {
    func increment(_ name: String, _ labels: [String: String], by amount: Double, help: String)
}

/// Tunables of the poller; the defaults suit AWS, tests shorten them.
public struct InboundSettings: Sendable {
    /// How long to wait for the listing object after StartDirectoryListing.
    public var listingTimeout: Duration = .seconds(300)
    /// How long one poll tracks its transfers; files still in flight then are tracked by the next poll.
    public var trackTimeout: Duration = .seconds(1800)
    /// Attempts (retrieval or download) before a file version is left `failed`.
    public var maxAttempts = 5
    /// Files downloaded into `download_to` at once.
    public var downloadConcurrency = 4
    /// The daemon's state_dir: scratch files (the fetched listing JSON) and `ferry poll` requests live here.
    public var stateDirectory: String

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }
}

/// What one poll did, for `ferry poll RULE`, the journal and the tests.
public struct PollReport: Sendable, Equatable, Codable {
    public var rule: String
    /// Files in the listing.
    public var listed = 0
    /// Journaled versions this poll asked the connector to retrieve (new, or resumed after a restart).
    public var requested = 0
    /// Files that arrived in S3 during this poll.
    public var retrieved = 0
    /// Files placed into download_to during this poll.
    public var downloaded = 0
    /// Files whose journey (after_retrieve included) ended during this poll.
    public var finished = 0
    public var refused = 0
    public var filteredOut = 0
    public var tooYoung = 0
    public var waitingForSecondLook = 0
    public var failed = 0
    /// Versions on_conflict=skip did not place (their partner copy is kept).
    public var skipped = 0
    /// Versions held back because an earlier version of the same name is not yet placed.
    public var waitingForEarlierVersion = 0
    /// Versions listed by an earlier poll that the partner replaced or removed before they were retrieved.
    public var superseded = 0
    public var truncated = false
    public var warnings: [String] = []
    /// Why the poll failed, nil if it did not.
    public var error: String?

    public init(rule: String) {
        self.rule = rule
    }

    /// One line for logs and the journal.
    public var summary: String {
        var parts = ["listed \(listed)", "requested \(requested)", "retrieved \(retrieved)", "downloaded \(downloaded)", "finished \(finished)"]
        if refused > 0 { parts.append("refused \(refused)") }
        if tooYoung + waitingForSecondLook > 0 { parts.append("not yet settled \(tooYoung + waitingForSecondLook)") }
        if failed > 0 { parts.append("failed \(failed)") }
        if skipped > 0 { parts.append("skipped \(skipped)") }
        if waitingForEarlierVersion > 0 { parts.append("waiting for an earlier version \(waitingForEarlierVersion)") }
        if superseded > 0 { parts.append("superseded before retrieval \(superseded)") }
        if truncated { parts.append("listing truncated") }
        return (error == nil ? "ok: " : "error: ") + parts.joined(separator: ", ")
    }
}

/// Thrown by a test's crash hook: the poll stops dead, as a `kill -9` at that point would stop it.
struct SimulatedCrash: Error {
    let point: String
}

/// The inbound service: polls each inbound rule on its schedule (DESIGN.md's inbound data flow) and
/// brings each new remote file into S3, into `download_to` and through `after_retrieve`, once.
///
/// Every step is journaled before the next external action, so a poll interrupted anywhere is finished
/// by the next one without losing a file or placing one twice.
public final class InboundPoller: Sendable {
    /// The rules and connections in force; `reload` replaces them.
    private let config: Mutex<(rules: [String: InboundRule], connections: [String: InboundConnection])>
    let journal: Journal
    let metrics: any InboundMetrics
    let logger: Logger
    let clock: any InboundClock
    let settings: InboundSettings
    let crashHook: (@Sendable (String) throws -> Void)?
    private let scheduler: InboundScheduler<PollReport>

    /// - Parameters:
    ///   - connections: by connector name, for every connector an inbound rule names.
    ///   - timeZone: the zone cron expressions are read in (the machine's).
    public convenience init(rules: [InboundRule], connections: [String: InboundConnection], journal: Journal, metrics: any InboundMetrics,
                            logger: Logger, clock: any InboundClock = SystemInboundClock(), timeZone: TimeZone = .current,
                            settings: InboundSettings? = nil) {
        self.init(rules: rules, connections: connections, journal: journal, metrics: metrics, logger: logger, clock: clock,
                  timeZone: timeZone, settings: settings, crashHook: nil)
    }

    init(rules: [InboundRule], connections: [String: InboundConnection], journal: Journal, metrics: any InboundMetrics,
         logger: Logger, clock: any InboundClock, timeZone: TimeZone, settings: InboundSettings?,
         crashHook: (@Sendable (String) throws -> Void)?) {
        config = Mutex((Self.byName(rules), connections))
        self.journal = journal
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.settings = settings ?? InboundSettings(stateDirectory: URL(fileURLWithPath: journal.path).deletingLastPathComponent().path)
        self.crashHook = crashHook
        let poll = PollBox()
        scheduler = InboundScheduler(
            entries: rules.map { .init(rule: $0.name, schedule: $0.schedule) }, clock: clock, timeZone: timeZone,
            lastStart: { rule in (try? journal.pollRecord(rule: rule))?.startedAt ?? nil },
            willWait: { rule, due in try? journal.setNextPoll(rule: rule, at: due) },
            poll: { rule in await poll.poller?.poll(ruleNamed: rule) ?? PollReport(rule: rule) })
        poll.poller = self
    }

    /// Polls every rule on its schedule, and answers `ferry poll` requests, until cancelled. Files a previous
    /// run left half-way are finished at once, not at the rule's next poll (which for a daily cron rule may
    /// be hours away).
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            // Resumption holds each rule's poll slot, so a rule's first scheduled poll waits for it while
            // other rules (and `ferry poll` of them) go ahead.
            group.addTask { await self.resumeUnfinished() }
            group.addTask { await self.scheduler.run() }
            group.addTask { await self.servePollRequests() }
        }
    }

    /// Takes every file a previous run left half-way (submitting, retrieving, in S3, downloading,
    /// downloaded) to the end, without listing; each rule's work holds that rule's poll slot.
    public func resumeUnfinished() async {
        await withTaskGroup(of: Void.self) { group in
            for rule in config.withLock({ Array($0.rules.values) }) {
                group.addTask {
                    _ = await self.scheduler.withSlot(rule: rule.name) {
                        var report = PollReport(rule: rule.name)
                        do {
                            try await self.drive(rule, newlyListed: [], report: &report)
                        } catch {
                            self.logger.info("resuming unfinished inbound files failed; the next poll retries",
                                             metadata: ["rule": "\(rule.name)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
    }

    /// SIGHUP: applies new (already validated) rules. New rules start polling, removed ones stop after a
    /// poll they are running (their unfinished files wait in the journal until the rule returns), and a
    /// changed rule applies from its next poll.
    public func reload(rules: [InboundRule], connections: [String: InboundConnection]) {
        config.withLock { $0 = (Self.byName(rules), connections) }
        // Refusals were judged under the old rules (remote_directory_path, download_to).
        do {
            try journal.forgetRefusals()
        } catch {
            logger.info("refused names could not be reconsidered after the reload; they stay refused", metadata: ["error": "\(error)"])
        }
        scheduler.update(entries: rules.map { .init(rule: $0.name, schedule: $0.schedule) })
    }

    private static func byName(_ rules: [InboundRule]) -> [String: InboundRule] {
        Dictionary(rules.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Polls `rule` now (after a poll of it that is already running) and returns what it did; nil if
    /// there is no inbound rule of that name. This is `ferry poll RULE`.
    public func pollNow(rule: String) async -> PollReport? {
        await scheduler.pollNow(rule: rule)
    }

    func checkpoint(_ point: String) throws {
        try crashHook?(point)
    }

    /// Told after every poll: the rule and the poll's error (nil when it succeeded). The daemon makes a
    /// failing rule a health problem, which `notify:` turns into rule_degraded / rule_recovered alerts.
    let pollFinished = Locked<(@Sendable (_ rule: String, _ error: String?) -> Void)?>(nil)

    // MARK: One poll

    /// One poll. `listing` replaces StartDirectoryListing for tests that need a listing no real server
    /// can produce (names with NUL or `/`).
    func poll(ruleNamed name: String, listing: (@Sendable (InboundRule) async throws -> DirectoryListing)? = nil) async -> PollReport {
        var report = PollReport(rule: name)
        guard let rule = config.withLock({ $0.rules[name] }) else {
            report.error = "no inbound rule named \(name)"
            return report
        }
        let metadata: Logger.Metadata = ["rule": "\(name)"]
        try? journal.recordPollStarted(rule: name, at: clock.now())
        do {
            var newlyListed: [InboundFile] = []
            var listingError: (any Error)?
            do {
                newlyListed = try await listAndSelect(rule, listing: listing, report: &report)
            } catch let crash as SimulatedCrash {
                throw crash
            } catch {
                listingError = error
            }
            // Work a previous poll left unfinished goes on even when this listing failed.
            try await drive(rule, newlyListed: newlyListed, report: &report)
            if let listingError { throw listingError }
        } catch let crash as SimulatedCrash {
            report.error = "simulated crash at \(crash.point)"
            return report
        } catch {
            report.error = "\(error)"
        }
        metrics.increment("ferry_inbound_polls_total", ["rule": name, "result": report.error == nil ? "ok" : "error"], by: 1,
                          help: "Inbound polls, by outcome.")
        try? journal.recordPollFinished(rule: name, at: clock.now(), result: report.summary, error: report.error, nextAt: nil)
        pollFinished.withLock { $0 }?(name, report.error)
        if let error = report.error {
            logger.info("inbound poll failed; the next poll retries", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        } else {
            logger.info("inbound poll done", metadata: metadata.merging(["poll.summary": "\(report.summary)"]) { $1 })
        }
        return report
    }

    private func connection(for rule: InboundRule) throws -> InboundConnection {
        guard let connection = config.withLock({ $0.connections[rule.connector] }) else {
            throw InboundError(code: "UnknownConnector", message: "rule \(rule.name) names connector \(rule.connector), which the daemon has no client for — check the connectors section of the rules file")
        }
        return connection
    }

    // MARK: Listing

    /// The ferry-owned prefix of the rule's bucket where its listings are written.
    static func listingPrefix(_ rule: InboundRule) -> String { ".ferry-listings/\(rule.name)/" }

    private func listAndSelect(_ rule: InboundRule, listing source: (@Sendable (InboundRule) async throws -> DirectoryListing)?,
                               report: inout PollReport) async throws -> [InboundFile] {
        let listing: DirectoryListing
        if let source {
            listing = try await source(rule)
        } else {
            listing = try await list(rule)
        }
        report.listed = listing.files.count
        if listing.truncated {
            report.truncated = true
            let warning = "the listing of \(rule.remoteDirectoryPath) stopped at max_items (\(rule.maxItems)), so files beyond it were not seen this poll — raise max_items of rule \(rule.name), or use after_retrieve: delete or move so that retrieved files leave the folder"
            report.warnings.append(warning)
            logger.warning("inbound listing truncated", metadata: ["rule": "\(rule.name)", "hint": "\(warning)"])
            metrics.increment("ferry_inbound_listing_truncated_total", ["rule": rule.name], by: 1, help: "Directory listings cut off at max_items.")
        }
        if !listing.truncated { try retireSuperseded(rule, listing: listing, report: &report) }
        let selection = InboundSelection.select(listing, remoteDirectory: rule.remoteDirectoryPath, downloadTo: rule.downloadTo,
                                                filter: rule.filter, minAge: rule.minAge, now: clock.now(),
                                                previousUnstableSizes: try journal.unstableSizes(rule: rule.name))
        for refused in selection.refused where try journal.recordRefused(rule: rule.name, refused.version, reason: refused.reason) {
            logger.info("remote file name refused: it is never written", metadata: [
                "rule": "\(rule.name)", "file.remote_path": "\(refused.version.remotePath)", "reason": "\(refused.reason)"])
            metrics.increment("ferry_inbound_refused_total", ["rule": rule.name], by: 1, help: "Remote files refused for hostile names.")
        }
        report.refused = selection.refused.count
        report.filteredOut = selection.filteredOut
        report.tooYoung = selection.tooYoung
        report.waitingForSecondLook = selection.waitingForSecondLook
        if !selection.unversioned.isEmpty {
            let warning = "\(selection.unversioned.count) file(s) listed without size or modification time, e.g. \(selection.unversioned[0]): ferry cannot tell one version from the next, so they are left on the partner and not retrieved"
            report.warnings.append(warning)
            logger.info("inbound files without size or timestamp are not retrieved", metadata: ["rule": "\(rule.name)", "hint": "\(warning)"])
        }
        try journal.setUnstableSizes(rule: rule.name, selection.unstableSizes)
        // Versions seen for the first time need a second look: the partner's clock may be behind ours, or
        // an upload may preserve an old mtime, so min_age alone cannot tell that a file is complete. A
        // second listing must show the same size and instant (a version journaled by an earlier poll
        // already had its second look then).
        var firstSeen = Set<PathBytes>()
        for candidate in selection.candidates where try !journal.isKnown(rule: rule.name, candidate.version) {
            firstSeen.insert(PathBytes(candidate.version.remotePath))
        }
        let wanted = try journal.recordListed(rule: rule.name, selection.candidates.map(\.version), maxAttempts: settings.maxAttempts)
        guard wanted.contains(where: { firstSeen.contains(PathBytes($0.remotePath)) }) else { return wanted }
        let second: DirectoryListing
        if let source {
            second = try await source(rule)
        } else {
            second = try await list(rule)
        }
        let again = Dictionary(second.files.map { (PathBytes($0.filePath), $0) }, uniquingKeysWith: { first, _ in first })
        return wanted.filter { file in
            guard firstSeen.contains(PathBytes(file.remotePath)) else { return true }
            if let entry = again[PathBytes(file.remotePath)], InboundSelection.isSameVersion(entry, file) { return true }
            report.waitingForSecondLook += 1
            return false
        }
    }

    /// Versions journaled `listed` by an earlier poll (the first look) that a whole listing no longer
    /// shows: the partner replaced or removed them before ferry asked for them, so nothing was fetched and
    /// nothing ever will be. They end `done` with a note saying so; otherwise they would stay in progress
    /// in `ferry status` forever and never be pruned (found by the inbound chaos test, seed 3). A version
    /// already asked for is never retired here: its retrieval may hold its only copy.
    private func retireSuperseded(_ rule: InboundRule, listing: DirectoryListing, report: inout PollReport) throws {
        let waiting = try journal.inboundFiles(in: [.listed], rule: rule.name)
        guard !waiting.isEmpty else { return }
        let current = Dictionary(listing.files.map { (PathBytes($0.filePath), $0) }, uniquingKeysWith: { first, _ in first })
        for file in waiting {
            if let entry = current[PathBytes(file.remotePath)], InboundSelection.isSameVersion(entry, file) { continue }
            try journal.markInboundDone(file.id, note: Self.supersededNote)
            logger.debug("a listed version went from the partner before it was retrieved", metadata: [
                "rule": "\(rule.name)", "file.remote_path": "\(RemoteName.printable(file.remotePath))"])
            report.superseded += 1
        }
    }

    static let supersededNote = "superseded: the partner replaced or removed this version before it was retrieved; nothing was fetched"

    /// StartDirectoryListing into the ferry-owned prefix, wait for the object, fetch, delete, parse.
    private func list(_ rule: InboundRule, remoteDirectory: String? = nil) async throws -> DirectoryListing {
        let connection = try connection(for: rule)
        let bucket = rule.localDirectoryPath.bucket
        let prefix = Self.listingPrefix(rule)
        // Listings a crashed poll left behind (before or after it journaled them) are swept first.
        for leftover in try await connection.s3.listObjectsV2(bucket: bucket, prefix: prefix) {
            try await connection.s3.deleteObject(bucket: bucket, key: leftover.key)
        }
        try await connection.service.pace()
        let started = try await connection.transfer.startDirectoryListing(
            connectorId: connection.connectorId, remoteDirectoryPath: remoteDirectory ?? rule.remoteDirectoryPath,
            outputDirectoryPath: "/\(bucket)/\(prefix)", maxItems: rule.maxItems)
        let key = prefix + started.outputFileName
        try journal.setPendingListing(rule: rule.name, "\(bucket)/\(key)")
        try checkpoint("listing-started")
        let deadline = ContinuousClock.now.advanced(by: settings.listingTimeout)
        var delay = Duration.milliseconds(100)
        while try await connection.s3.headObject(bucket: bucket, key: key) == nil {
            guard ContinuousClock.now < deadline else {
                throw InboundError(code: "ListingTimeout", message: "the listing of \(rule.remoteDirectoryPath) (listing id \(started.listingId)) did not appear at s3://\(bucket)/\(key) within \(settings.listingTimeout) — check that connector \(rule.connector) can reach the partner (`ferry test-connection \(rule.connector)`) and that its access role may write to s3://\(bucket)/\(prefix)")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
        let scratch = "\(settings.stateDirectory)/.listing-\(rule.name).json"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        _ = try await connection.s3.getObject(bucket: bucket, key: key, toFileAt: scratch)
        let data = try Data(contentsOf: URL(fileURLWithPath: scratch))
        try await connection.s3.deleteObject(bucket: bucket, key: key)
        try journal.setPendingListing(rule: rule.name, nil)
        return try DirectoryListing.parse(data)
    }

    // MARK: Retrieval, download, after_retrieve

    /// Takes every unfinished file of the rule as far as it goes: submit, track, download, after_retrieve.
    func drive(_ rule: InboundRule, newlyListed: [InboundFile], report: inout PollReport) async throws {
        let connection = try connection(for: rule)
        // Batches journaled as submitting whose StartFileTransfer may or may not have reached AWS (a
        // crash, a lost answer): S3 is checked first, and only versions not found there are asked for again.
        let interrupted = try await resolveInDoubt(try journal.inboundFiles(in: [.submitting], rule: rule.name), rule: rule, connection: connection)
        if !interrupted.isEmpty {
            logger.info("retrievals in doubt and not found in S3 are asked for again", metadata: [
                "rule": "\(rule.name)", "files": "\(interrupted.count)"])
            metrics.increment("ferry_inbound_possible_duplicate_retrievals_total", ["rule": rule.name], by: Double(interrupted.count),
                              help: "Files whose retrieval was requested again after an unknown outcome (S3 copy rewritten, never a second local file).")
        }
        let interruptedIDs = Set(interrupted.map(\.id))
        var held: [InboundFile] = []
        for file in interrupted + newlyListed.filter({ !interruptedIDs.contains($0.id) }) {
            // Every version of a name is retrieved to the same S3 key: while an earlier version's bytes
            // there are not yet placed, this one waits, so they are never replaced (issue 14, item 1).
            let key = file.state == .submitting ? (file.key ?? rule.localDirectoryPath.prefix + file.name) : rule.localDirectoryPath.prefix + file.name
            let bucket = file.state == .submitting ? (file.bucket ?? rule.localDirectoryPath.bucket) : rule.localDirectoryPath.bucket
            if let earlier = try journal.unplacedVersion(bucket: bucket, key: key, excluding: file.id) {
                report.waitingForEarlierVersion += 1
                try journal.noteInbound(file.id, "waiting: an earlier version of \(RemoteName.printable(file.name)) (journal id \(earlier.id), \(earlier.state.rawValue)) is in s3://\(bucket)/\(key) and not yet placed; this version is retrieved once it is\(earlier.lastError.map { " — it is waiting for: \($0)" } ?? "")")
                continue
            }
            held.append(file)
        }
        let toSubmit = held
        if report.waitingForEarlierVersion > 0 {
            report.warnings.append("\(report.waitingForEarlierVersion) version(s) wait until an earlier version of the same name is placed — see `ferry status`")
        }
        report.requested += toSubmit.count
        let service = connection.service
        let progress = RetrievalProgress()
        // Each file the tracker sees COMPLETED is placed at once, while later transfers of the poll are
        // still queued at the connector (issue 15: with one file at a time per connection, a poll of many
        // files would otherwise hold every file back until the last one arrived).
        let (arrivals, arrived) = AsyncStream.makeStream(of: InboundFile.self)
        // Transfers of earlier polls or runs are already at AWS: the connector service follows them (one it
        // already follows keeps its place and slot) and reports them to this poll.
        let running = Dictionary(grouping: try journal.inboundFiles(in: [.retrieving], rule: rule.name).filter { $0.transferID != nil },
                                 by: { $0.transferID ?? "" })
        for (transferID, files) in running {
            progress.begin()
            // Under the connector id it was started through (journals before schema 6: the one in force).
            await service.track(transferID: transferID, connectorID: files.compactMap(\.connectorID).first ?? connection.connectorId,
                                submittedAt: files.map(\.updatedAt).min() ?? Date(),
                                holdsSlot: false, follower: follower(rule, progress: progress, arrived: arrived))
        }
        let placing = PlacementTally()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await self.placeAll(arrivals, rule: rule, connection: connection, tally: placing, stop: { arrived.finish() })
                }
                group.addTask {
                    defer { progress.doneSubmitting() }
                    for start in stride(from: 0, to: toSubmit.count, by: 10) {
                        // An in-flight slot, the gate and the rate: the connector's budgets, shared with outbound.
                        let context = try await service.admit()
                        try await self.submit(Array(toSubmit[start..<min(start + 10, toSubmit.count)]), rule: rule, service: service,
                                              context: context, progress: progress, arrived: arrived)
                    }
                }
                group.addTask {
                    defer { arrived.finish() }
                    // Until every transfer of the poll finished (the connector service's tracker looks at
                    // them), or the track timeout once all are submitted: those still running then are
                    // followed on, and the next poll takes them over.
                    let deadline = ContinuousClock.now.advanced(by: self.settings.trackTimeout)
                    await service.waitForTracking { progress.isSettled(by: deadline) }
                    try Task.checkCancellation()
                    if let error = progress.failure { throw error }
                    if !progress.isSettled(by: nil) {
                        progress.warn("some retrievals were still running after \(self.settings.trackTimeout); the next poll tracks them")
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            placing.tally(into: &report)
            progress.settle(into: &report)
            throw error
        }
        placing.tally(into: &report)
        progress.settle(into: &report)
        try await finish(rule, connection: connection, skipping: placing.attempted, report: &report)
    }

    /// Versions whose retrieval is in doubt, checked against S3: one whose object exists with the listed
    /// size and is not an earlier placed version's object (by the ETag journaled when that one was placed)
    /// is retrieved, without a second StartFileTransfer; the rest are returned, to be asked for again.
    /// An earlier version's ETag is unknown only for rows placed before migration 4: then the object
    /// must also have been written after this retrieval was asked for (S3 gives whole seconds, so an
    /// object of the same second is asked for again: a duplicate retrieval, never a wrong placement).
    private func resolveInDoubt(_ files: [InboundFile], rule: InboundRule, connection: InboundConnection) async throws -> [InboundFile] {
        var again: [InboundFile] = []
        for file in files {
            guard let bucket = file.bucket, let key = file.key else {
                again.append(file)
                continue
            }
            let found = try await connection.s3.listObjectsV2(bucket: bucket, prefix: key).first { PathBytes($0.key) == PathBytes(key) }
            let earlier = try journal.placedETags(bucket: bucket, key: key, excluding: file.id)
            if let found, file.size == nil || found.size == file.size, !earlier.eTags.contains(found.eTag),
               !earlier.someUnknown || (found.lastModified.map { $0 > file.updatedAt } ?? false) {
                try journal.markRetrievedWithoutAnswer(file.id)
                metrics.increment("ferry_inbound_in_doubt_found_total", ["rule": rule.name], by: 1,
                                  help: "Retrievals with an unknown outcome whose object was found in S3, so not asked for again.")
                logger.info("a retrieval in doubt had arrived in S3; not asked for again", metadata: [
                    "rule": "\(rule.name)", "file.remote_path": "\(RemoteName.printable(file.remotePath))"])
            } else {
                again.append(file)
            }
        }
        return again
    }

    /// One retrieval through the connector service, with `context` from its `admit` (whose in-flight slot
    /// this takes over). Started: journaled `retrieving` and followed by the service's tracker. Not
    /// started: throttling, an unreachable endpoint and a refusal for the connector itself (denied
    /// credentials, an unknown connector id) cost the files nothing — they wait for the next poll; a
    /// refusal of the request itself counts as a failed attempt. Unknown: the files stay `submitting`,
    /// and the next poll looks in S3 before it asks the partner again.
    private func submit(_ files: [InboundFile], rule: InboundRule, service: ConnectorService, context: ConnectorContext,
                        progress: RetrievalProgress, arrived: AsyncStream<InboundFile>.Continuation) async throws {
        let destination = rule.localDirectoryPath
        let batch: Int64
        do {
            batch = try journal.beginRetrieval(files.map { ($0.id, destination.bucket, destination.prefix + $0.name) })
            try checkpoint("retrieval-submitting")
        } catch {
            await service.release()
            throw error
        }
        let result = await service.start(.retrieve(paths: files.map(\.remotePath), localDirectory: destination.transferPath), on: context)
        switch result {
        case .started(let transferID):
            do {
                try checkpoint("retrieval-started")
                try journal.markRetrieving(batch: batch, transferID: transferID, connectorID: context.connector.connectorId)
            } catch let crash as SimulatedCrash {
                await service.release()
                throw crash
            } catch {
                await service.release()
                try? journal.markRetrievalInDoubt(batch: batch, error: "\(error)")
                throw error
            }
            logger.debug("retrieval started", metadata: ["rule": "\(rule.name)", "transfer.id": "\(transferID)", "files": "\(files.count)"])
            progress.begin()
            await service.track(transferID: transferID, connectorID: context.connector.connectorId, submittedAt: Date(), holdsSlot: true,
                                follower: follower(rule, progress: progress, arrived: arrived))
        case .failed(.throttled, let error), .failed(.denied, let error):
            try journal.abandonRetrieval(batch: batch, error: "\(error)")
            throw error
        case .failed(.refused, let error):
            try journal.rejectRetrieval(batch: batch, error: "\(error)")
            progress.count(failed: files.count)
            throw error
        case .failed(.inDoubt, let error), .stopped(let error):
            try? journal.markRetrievalInDoubt(batch: batch, error: "\(error)")
            metrics.increment("ferry_inbound_retrievals_in_doubt_total", ["rule": rule.name], by: Double(files.count),
                              help: "Files whose retrieving StartFileTransfer had an unknown outcome.")
            throw error
        }
    }

    /// What this poll does with each look the connector service's tracker takes at one of its retrievals:
    /// records each file's outcome, hands every file that arrived in S3 to placement at once, and says
    /// whether the transfer is finished.
    private func follower(_ rule: InboundRule, progress: RetrievalProgress, arrived: AsyncStream<InboundFile>.Continuation) -> TransferFollower {
        TransferFollower(
            look: { transfer, look in
                do {
                    return try self.record(look, of: transfer.transferID, rule: rule, progress: progress, arrived: arrived)
                } catch {
                    // The journal failed (or a test's simulated crash): the poll fails with it; the files
                    // stay `retrieving` and the next poll follows the transfer again.
                    progress.fail(error)
                    return .finished
                }
            },
            ended: { progress.end() })
    }

    private func record(_ look: TransferLook, of transferID: String, rule: InboundRule, progress: RetrievalProgress,
                        arrived: AsyncStream<InboundFile>.Continuation) throws -> TransferVerdict {
        let files = try journal.inboundFiles(in: [.retrieving], rule: rule.name).filter { $0.transferID == transferID }
        var outcomes: [Int64: FileOutcome] = [:]
        switch look {
        case .results(let results):
            // By bytes (NFC/NFD twins are two files), and by either path AWS may report: the remote path
            // retrieved from or the S3 path retrieved to.
            let byPath = Dictionary(results.map { (PathBytes($0.filePath), $0) }, uniquingKeysWith: { _, last in last })
            for file in files {
                let s3Path = "/\(file.bucket ?? rule.localDirectoryPath.bucket)/\(file.key ?? rule.localDirectoryPath.prefix + file.name)"
                let result = byPath[PathBytes(file.remotePath)] ?? byPath[PathBytes(s3Path)]
                switch result?.statusCode {
                case .completed: outcomes[file.id] = .completed
                case .failed:
                    outcomes[file.id] = .failed(code: result?.failureCode ?? "FAILED", message: result?.failureMessage ?? "")
                default: break
                }
            }
        case .lost(let code, let why):
            // Results are kept for 7 days; a transfer AWS no longer knows is retrieved afresh on a later poll.
            for file in files { outcomes[file.id] = .failed(code: code, message: why) }
        }
        try journal.recordRetrievalOutcomes(outcomes)
        try checkpoint("retrieval-tracked")
        for (id, outcome) in outcomes {
            if case .failed(let code, let message) = outcome {
                progress.count(failed: 1)
                metrics.increment("ferry_inbound_retrieve_failures_total", ["rule": rule.name, "code": code], by: 1,
                                  help: "Files whose retrieval from the partner failed.")
                logger.info("retrieval failed; retried while the file is listed", metadata: [
                    "rule": "\(rule.name)", "file.id": "\(id)", "transfer.id": "\(transferID)", "error": "\(code): \(message)"])
            } else {
                progress.count(retrieved: 1)
                metrics.increment("ferry_inbound_files_retrieved_total", ["rule": rule.name], by: 1, help: "Files retrieved into S3.")
                // Journaled in_s3 above, so a crash from here on finds it there and places it.
                if let file = try journal.inboundFile(id), file.state == .inS3 { arrived.yield(file) }
            }
        }
        return files.allSatisfy { outcomes[$0.id] != nil } ? .finished : .waiting
    }

    /// Places what earlier polls left in S3 or half-downloaded (a failed download, a restart), except the
    /// versions this poll already tried to place as their transfers completed (a failed download is
    /// tried again by the next poll, as before), then runs after_retrieve for every placed version.
    private func finish(_ rule: InboundRule, connection: InboundConnection, skipping attempted: Set<Int64>,
                        report: inout PollReport) async throws {
        let files = try journal.inboundFiles(in: [.inS3, .downloading], rule: rule.name).filter { !attempted.contains($0.id) }
        let (stream, continuation) = AsyncStream.makeStream(of: InboundFile.self)
        for file in files { continuation.yield(file) }
        continuation.finish()
        let tally = PlacementTally()
        try await placeAll(stream, rule: rule, connection: connection, tally: tally)
        tally.tally(into: &report)
        try await afterRetrieve(rule, connection: connection, report: &report)
    }

    /// Places every version `files` yields, `downloadConcurrency` at a time, as they come. A placement
    /// that throws (the journal cannot be written, a test's simulated crash) calls `stop`, which must end
    /// `files`, so that the failure stops the poll now rather than after the last transfer.
    private func placeAll(_ files: AsyncStream<InboundFile>, rule: InboundRule, connection: InboundConnection,
                          tally: PlacementTally, stop: @escaping @Sendable () -> Void = {}) async throws {
        try await withThrowingTaskGroup(of: FinishOutcome.self) { group in
            var running = 0
            for await file in files {
                if running >= max(1, settings.downloadConcurrency), let outcome = try await group.next() {
                    tally.add(outcome)
                    running -= 1
                }
                tally.attempting(file.id)
                group.addTask {
                    do {
                        return try await self.place(file, rule: rule, connection: connection)
                    } catch {
                        stop()
                        throw error
                    }
                }
                running += 1
            }
            while let outcome = try await group.next() { tally.add(outcome) }
        }
    }

    struct FinishOutcome: Sendable {
        var downloaded = false
        var failed = false
        var skippedNote: String?
    }

    /// Places one version: into download_to if set (verified against the listed size), else checks that
    /// the S3 object holds it (HEAD, same size). Only then is it `downloaded`, which after_retrieve waits for.
    private func place(_ file: InboundFile, rule: InboundRule, connection: InboundConnection) async throws -> FinishOutcome {
        var outcome = FinishOutcome()
        let metadata: Logger.Metadata = ["rule": "\(rule.name)", "file.remote_path": "\(RemoteName.printable(file.remotePath))"]
        let bucket = file.bucket ?? rule.localDirectoryPath.bucket
        let key = file.key ?? rule.localDirectoryPath.prefix + file.name
        guard let downloadTo = rule.downloadTo else {
            let object = try await connection.s3.headObject(bucket: bucket, key: key)
            guard let object, file.size == nil || object.size == file.size else {
                let error = "SizeMismatch: s3://\(bucket)/\(key) holds \(object.map { "\($0.size) bytes" } ?? "nothing") where the listing said \(file.size ?? -1) bytes; retrieved again while the partner lists the file"
                try journal.recordWrongObject(file.id, error: error)
                logger.info("retrieved object is not the listed version", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                outcome.failed = true
                return outcome
            }
            try journal.markDownloaded(file.id, localPath: nil, eTag: object.eTag)
            try checkpoint("downloaded")
            return outcome
        }
        let placement = DownloadPlacement(directory: downloadTo, onConflict: rule.onConflict)
        do {
            let placed = try await placement.place(file, journal: journal) { temp in
                try self.checkpoint("download-temp-created")
                let info = try await connection.s3.getObject(bucket: bucket, key: key, toFileAt: temp)
                if let expected = file.size, info.size != expected {
                    throw DownloadSizeMismatch(path: file.remotePath, expected: expected, written: info.size)
                }
                // Before the ETag is journaled for this row, else the lookup would find this row's own.
                if let copy = try self.journal.placedCopy(bucket: bucket, key: key, size: info.size, eTag: info.eTag, excluding: file.id),
                   Self.isRegularFile(copy, size: info.size) {
                    throw BytesAlreadyPlaced(path: copy, eTag: info.eTag)
                }
                try self.journal.setInboundETag(file.id, info.eTag)
                try self.checkpoint("download-written")
            }
            if case .skipped(let existing) = placed {
                logger.info("download skipped: the name is taken (on_conflict: skip); the partner's copy is kept",
                            metadata: metadata.merging(["file.path": "\(existing)"]) { $1 })
                outcome.skippedNote = DownloadPlacement.skipNote(file.name)
            } else {
                outcome.downloaded = true
                metrics.increment("ferry_inbound_files_downloaded_total", ["rule": rule.name], by: 1, help: "Files placed into download_to.")
            }
        } catch let crash as SimulatedCrash {
            throw crash
        } catch let twin as BytesAlreadyPlaced {
            // The earlier version of this name was replaced on the partner during its retrieval, so its row
            // placed these bytes already; placing them again would be a second copy of one version (found
            // by the inbound chaos test, seed 1). The partner's copy is this version and is placed, so
            // after_retrieve may tidy it.
            let note = "placed already: \(RemoteName.printable(twin.path)) holds these bytes (same size and ETag); the earlier version of \(RemoteName.printable(file.name)) was replaced on the partner while it was retrieved, and its retrieval fetched this version"
            try journal.markDownloaded(file.id, localPath: twin.path, note: note, eTag: twin.eTag)
            try? FileManager.default.removeItem(atPath: placement.temporaryPath(for: file.id))
            logger.info("retrieved bytes already placed by an earlier version's retrieval; not placed twice", metadata: metadata.merging(["file.path": "\(twin.path)"]) { $1 })
            metrics.increment("ferry_inbound_already_placed_total", ["rule": rule.name], by: 1,
                              help: "Versions whose bytes an earlier version's retrieval had already placed (the partner replaced that version during its retrieval).")
            return outcome
        } catch let mismatch as DownloadSizeMismatch {
            // Journaled before the temporary file goes: a crash between the two leaves a failed version
            // and a stray temporary file, never a `downloading` row whose temporary file is gone.
            try journal.recordWrongObject(file.id, error: "\(mismatch)")
            try? FileManager.default.removeItem(atPath: placement.temporaryPath(for: file.id))
            logger.info("retrieved copy is not the listed version; not placed", metadata: metadata.merging(["error": "\(mismatch)"]) { $1 })
            outcome.failed = true
            return outcome
        } catch {
            try journal.recordDownloadFailure(file.id, error: "download: \(error)", maxAttempts: settings.maxAttempts)
            try? FileManager.default.removeItem(atPath: placement.temporaryPath(for: file.id))
            logger.info("download failed; the next poll tries again from S3", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            outcome.failed = true
            return outcome
        }
        try checkpoint("downloaded")
        return outcome
    }

    /// Whether `path` is a regular file (not followed if a link) of `size` bytes: the earlier placement
    /// still holds the bytes, so this version need not be placed again.
    static func isRegularFile(_ path: String, size: Int64) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && Int64(info.st_size) == size
    }

    /// after_retrieve for every placed version of the rule. keep ends the journey at once. delete and move
    /// act on a path, not a version, and have no status API, so before either a fresh listing must show
    /// the partner's copy still to be this version: one that is gone (an earlier call whose answer was
    /// lost did it, or the partner) needs nothing more, and one that is now another version is left for
    /// that version. A version on_conflict=skip did not place keeps its partner copy.
    private func afterRetrieve(_ rule: InboundRule, connection: InboundConnection, report: inout PollReport) async throws {
        let placed = try journal.inboundFiles(in: [.downloaded], rule: rule.name)
        guard !placed.isEmpty else { return }
        if case .keep = rule.afterRetrieve {
            for file in placed {
                try journal.markInboundDone(file.id)
                report.finished += 1
            }
            return
        }
        var destructive: [InboundFile] = []
        for file in placed {
            if rule.downloadTo != nil && file.localPath == nil {
                try journal.markInboundDone(file.id, note: DownloadPlacement.skipNote(file.name))
                report.finished += 1
            } else {
                destructive.append(file)
            }
        }
        guard !destructive.isEmpty else { return }
        let listing: DirectoryListing
        do {
            listing = try await list(rule)
        } catch let crash as SimulatedCrash {
            throw crash
        } catch {
            report.warnings.append("after_retrieve waits: the listing that confirms each version before it is deleted or moved failed (\(error))")
            return
        }
        let current = Dictionary(listing.files.map { (PathBytes($0.filePath), $0) }, uniquingKeysWith: { first, _ in first })
        var targetListing: [PathBytes: DirectoryListing.Entry]?
        for file in destructive {
            let metadata: Logger.Metadata = ["rule": "\(rule.name)", "file.remote_path": "\(RemoteName.printable(file.remotePath))"]
            guard let entry = current[PathBytes(file.remotePath)] else {
                // Absent from a truncated listing says nothing; absent from a whole one means gone.
                if listing.truncated { continue }
                var note = file.afterRetrieveAttempts > 0 ? "after_retrieve: done (the partner's copy is gone)" : "after_retrieve: nothing to do, the partner's copy was already gone"
                if case .move(let directory) = rule.afterRetrieve, file.afterRetrieveAttempts > 0 {
                    if targetListing == nil {
                        let entries = (try? await list(rule, remoteDirectory: directory))?.files ?? []
                        targetListing = Dictionary(entries.map { (PathBytes($0.filePath), $0) }, uniquingKeysWith: { first, _ in first })
                    }
                    let target = Self.moveTarget(directory, file.name)
                    note = targetListing?[PathBytes(target)] != nil
                        ? "after_retrieve: moved (source gone, \(RemoteName.printable(target)) present)"
                        : "after_retrieve: the partner's copy is gone and \(RemoteName.printable(target)) is not there either; nothing left to move"
                }
                try journal.markInboundDone(file.id, note: note)
                report.finished += 1
                continue
            }
            guard InboundSelection.isSameVersion(entry, file) else {
                try journal.markInboundDone(file.id, note: "after_retrieve: the partner's copy is now another version; left for that version")
                logger.info("after_retrieve left the partner's copy: it is now another version", metadata: metadata)
                report.finished += 1
                continue
            }
            let answered = Self.answeredAfterRetrieveCalls(file.lastError)
            if answered >= Self.afterRetrieveCalls {
                // Answered calls that the partner did not carry out (no status API tells): an SFTP rename
                // does not replace an existing target, so `move:DIR` fails for ever once DIR holds the
                // name. Calling again would change nothing; the partner's copy is kept and this says why.
                let what: String
                if case .move(let directory) = rule.afterRetrieve {
                    what = "the partner still has this version after \(answered) answered moves to \(RemoteName.printable(Self.moveTarget(directory, file.name))) (an SFTP rename does not replace a file: does \(RemoteName.printable(directory)) already hold that name?)"
                } else {
                    what = "the partner still has this version after \(answered) answered deletes (is the file writable for the connector's user?)"
                }
                try journal.markInboundDone(file.id, note: "after_retrieve failed: \(what); its copy is kept")
                logger.info("after_retrieve did not happen on the partner; the partner's copy is kept", metadata: metadata.merging(["hint": "\(what)"]) { $1 })
                metrics.increment("ferry_inbound_after_retrieve_refused_total", ["rule": rule.name], by: 1,
                                  help: "Versions whose delete or move the partner did not carry out after repeated calls.")
                report.warnings.append("after_retrieve failed for \(RemoteName.printable(file.remotePath)): \(what)")
                report.finished += 1
                continue
            }
            let before = try journal.beginAfterRetrieve(file.id)
            if before > 0 {
                metrics.increment("ferry_inbound_after_retrieve_repeats_total", ["rule": rule.name], by: 1,
                                  help: "after_retrieve calls made again after an earlier one's outcome was unknown and the partner still listed the version.")
            }
            do {
                switch rule.afterRetrieve {
                case .keep: break
                case .delete:
                    _ = try await connection.transfer.startRemoteDelete(connectorId: connection.connectorId, deletePath: file.remotePath)
                case .move(let directory):
                    _ = try await connection.transfer.startRemoteMove(connectorId: connection.connectorId, sourcePath: file.remotePath,
                                                                      targetPath: Self.moveTarget(directory, file.name))
                }
            } catch let crash as SimulatedCrash {
                throw crash
            } catch {
                // The file is safe in S3 (and on disk); only the tidy-up is outstanding. The next poll's
                // confirming listing tells whether this call did it.
                let inDoubt = (error as? AWSError)?.outcome != .notStarted
                if !inDoubt { try journal.forgetAfterRetrieveAttempt(file.id) }
                if inDoubt {
                    metrics.increment("ferry_inbound_after_retrieve_in_doubt_total", ["rule": rule.name], by: 1,
                                      help: "after_retrieve calls whose outcome was unknown.")
                }
                try journal.noteInbound(file.id, "after_retrieve \(inDoubt ? "in doubt" : "failed"): \(error); the next poll checks the partner's folder")
                logger.info("after_retrieve failed; the next poll checks and retries", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                continue
            }
            try checkpoint("after-retrieve-done")
            // Answered is not done: StartRemoteDelete and StartRemoteMove answer before the partner acts
            // and report nothing back, and the partner may refuse (a move onto a name the target folder
            // holds). The next poll's confirming listing decides: gone is done, still there is called
            // again, up to `afterRetrieveCalls` times (found by the inbound chaos test).
            try journal.noteInbound(file.id, "\(Self.requestedNote) \(answered + 1) time(s); the next poll's listing confirms it")
        }
    }

    /// How many answered after_retrieve calls in a row a version gets before ferry stops calling and says
    /// the partner did not act on them. Calls in doubt (lost answers, dropped connections) do not count:
    /// the partner may never have been asked.
    static let afterRetrieveCalls = 3
    static let requestedNote = "after_retrieve requested, answered"

    /// The answered calls in a row that the version's note records (an in-doubt call's note starts over).
    static func answeredAfterRetrieveCalls(_ note: String?) -> Int {
        guard let note, note.hasPrefix(requestedNote) else { return 0 }
        return Int(note.dropFirst(requestedNote.count + 1).prefix { $0.isNumber }) ?? 0
    }

    static func moveTarget(_ directory: String, _ name: String) -> String {
        (directory.hasSuffix("/") ? directory : directory + "/") + name
    }
}

/// What a poll's submitter, the connector service's tracker and the poll's wait share: the transfers
/// still followed for the poll, and counts.
final class RetrievalProgress: Sendable {
    private struct State {
        var following = 0
        var submitting = true
        var retrieved = 0
        var failed = 0
        var warnings: [String] = []
        var failure: (any Error)?
    }

    private let state = Mutex(State())

    /// A transfer of the poll is followed.
    func begin() { state.withLock { $0.following += 1 } }
    /// Its tracking ended (its in-flight slot is free).
    func end() { state.withLock { $0.following -= 1 } }
    func doneSubmitting() { state.withLock { $0.submitting = false } }
    func count(retrieved: Int = 0, failed: Int = 0) {
        state.withLock {
            $0.retrieved += retrieved
            $0.failed += failed
        }
    }
    func warn(_ warning: String) { state.withLock { $0.warnings.append(warning) } }
    func fail(_ error: any Error) { state.withLock { if $0.failure == nil { $0.failure = error } } }
    var failure: (any Error)? { state.withLock { $0.failure } }

    /// Whether the poll may stop waiting: it failed, or everything is submitted and every transfer
    /// finished, or everything is submitted and `deadline` has passed.
    func isSettled(by deadline: ContinuousClock.Instant?) -> Bool {
        state.withLock { state in
            if state.failure != nil { return true }
            guard !state.submitting else { return false }
            return state.following == 0 || deadline.map { ContinuousClock.now >= $0 } == true
        }
    }

    /// Adds the counts to the poll's report, once.
    func settle(into report: inout PollReport) {
        let final = state.withLock { state -> State in
            let copy = state
            state.retrieved = 0
            state.failed = 0
            state.warnings = []
            return copy
        }
        report.retrieved += final.retrieved
        report.failed += final.failed
        report.warnings += final.warnings
    }
}

/// What the placements of one poll did, gathered while the poll's transfers are still being tracked.
final class PlacementTally: Sendable {
    private struct State {
        var attempted: Set<Int64> = []
        var outcomes: [InboundPoller.FinishOutcome] = []
    }

    private let state = Mutex(State())

    /// Versions whose placement was started (whatever came of it).
    var attempted: Set<Int64> { state.withLock { $0.attempted } }

    func attempting(_ id: Int64) {
        state.withLock { _ = $0.attempted.insert(id) }
    }

    func add(_ outcome: InboundPoller.FinishOutcome) {
        state.withLock { $0.outcomes.append(outcome) }
    }

    /// Adds the outcomes gathered so far to the poll's report, once.
    func tally(into report: inout PollReport) {
        let outcomes = state.withLock { state -> [InboundPoller.FinishOutcome] in
            defer { state.outcomes.removeAll() }
            return state.outcomes
        }
        for outcome in outcomes {
            if outcome.downloaded { report.downloaded += 1 }
            if outcome.failed { report.failed += 1 }
            if let skipped = outcome.skippedNote {
                report.skipped += 1
                report.warnings.append(skipped)
            }
        }
    }
}

/// Lets the scheduler's poll closure reach the poller it belongs to without a retain cycle at init.
private final class PollBox: @unchecked Sendable {
    weak var poller: InboundPoller?
}
