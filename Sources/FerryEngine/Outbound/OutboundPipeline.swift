import FerryAWS
internal import CFerrySys
import FerryConfig
import FerryStore
import FerrySystem
import FerryWatch
import Foundation
import Logging
import Synchronization

/// A batch ready for StartFileTransfer: new (no journal id yet) or recovered after a restart.
struct PendingBatch: Sendable {
    var rule: String
    var connector: String
    var remoteDirectory: String?
    var files: [OutboundFile]
    /// The files' places in their rule's window (`OutboundBacklog`), by file id: held until the batch is
    /// submitted, also while it waits for an in-flight slot, a throttled call's pause or an in-doubt check.
    var tickets: [Int64: BacklogTicket] = [:]
    /// Set when the journal already has the batch as `submitting` (a possible duplicate on resubmission).
    var existingBatchID: Int64?
}

/// The outbound pipeline of DESIGN.md: complete files → journal → S3 staging → batches →
/// StartFileTransfer → tracking → after_send, every step committed to the journal before the next.
public final class OutboundPipeline: Sendable {
    /// Rules and connectors in force; replaced as a whole by a reload. Rules that a reload removes stay
    /// known (as retired) so the files they already journaled finish their journey.
    private struct Configuration {
        var rules: [String: OutboundRule]
        var active: Set<String>
        var connectors: [String: ConnectorService]
        var batchQueues: [String: AsyncQueue<PendingBatch>]
    }

    private let configuration: Locked<Configuration>
    let journal: Journal
    let watcher: FolderWatcher
    let metrics: Metrics
    let logger: Logger
    let retryBase: Duration
    /// Problems `ferry status` must show that the journal cannot (its own disk full, after_send failing).
    let health: DaemonHealth?
    /// Where quarantines, in-doubt batches and possible duplicates are announced (`notify:`).
    let alerts: Notifier?

    private let detectedQueue = AsyncQueue<CompletedFile>()
    private let uploadQueue = AsyncQueue<Admitted>()
    /// How many files of each rule are in memory between the journal and StartFileTransfer; the rest of a
    /// backlog waits in the journal and is read back as room frees up.
    let backlog: OutboundBacklog
    /// Connectors whose submit loop must be started (at start and when a reload adds one).
    private let newConnectors = AsyncQueue<String>()
    private let batcher: Batcher
    /// Kicked when an upload waits in the journal's memory for `flushStagedLoop` to write it.
    private let stagedFlush = AsyncQueue<Void>()
    /// Every retry and wait of the pipeline (upload, batch and after_send retries, max_wait, the pause
    /// before an in-doubt batch's partner check), run by the pipeline's own loop.
    private let delays: DelayQueue

    var rules: [String: OutboundRule] { configuration.withLock { $0.rules } }
    var connectors: [String: ConnectorService] { configuration.withLock { $0.connectors } }

    /// The settings in force of connector `name`.
    func context(_ name: String) -> ConnectorContext? { configuration.withLock { $0.connectors[name] }?.context }

    /// Creates the pipeline for `rules`, over the connector services of the connectors they name.
    init(rules: [OutboundRule], connectors: [String: ConnectorService], journal: Journal, watcher: FolderWatcher,
         metrics: Metrics, logger: Logger, retryBase: Duration = .seconds(1), health: DaemonHealth? = nil, alerts: Notifier? = nil,
         backlogWindow: Int = OutboundBacklog.defaultWindow) {
        self.health = health
        backlog = OutboundBacklog(window: backlogWindow) { rule, afterID, limit in
            try journal.outboundFiles(in: .detected, rule: rule, after: afterID, limit: limit)
        }
        self.alerts = alerts
        var queues: [String: AsyncQueue<PendingBatch>] = [:]
        for name in connectors.keys { queues[name] = AsyncQueue() }
        let configuration = Locked(Configuration(
            rules: Dictionary(rules.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }),
            active: Set(rules.map(\.name)), connectors: connectors, batchQueues: queues))
        self.configuration = configuration
        self.journal = journal
        self.watcher = watcher
        self.metrics = metrics
        self.logger = logger
        self.retryBase = retryBase
        let delays = DelayQueue()
        self.delays = delays
        batcher = Batcher(
            rule: { name in configuration.withLock { $0.rules[name] } },
            queue: { connector in configuration.withLock { $0.batchQueues[connector] } },
            later: { delay, action in delays.schedule(after: delay, action) })
    }

    /// Applies reloaded rules: new rules and connectors start, changed rules take effect for files not yet
    /// batched, removed rules take no new files but finish what they have. Returns what changed.
    func reload(rules newRules: [OutboundRule], connectors newServices: [String: ConnectorService]) async -> (added: [String], removed: [String]) {
        let (added, removed, startedConnectors) = configuration.withLock { configuration -> ([String], [String], [String]) in
            let added = newRules.map(\.name).filter { !configuration.active.contains($0) }
            let removed = configuration.active.filter { name in !newRules.contains { $0.name == name } }.sorted()
            for rule in newRules { configuration.rules[rule.name] = rule }
            configuration.active = Set(newRules.map(\.name))
            var started: [String] = []
            for (name, service) in newServices {
                // A running connector's service is the same object, its settings already updated in
                // place: every batch not yet submitted goes with the new connector id, staging and clients.
                let isNew = configuration.connectors[name] == nil
                configuration.connectors[name] = service
                if isNew {
                    configuration.batchQueues[name] = AsyncQueue()
                    started.append(name)
                }
            }
            return (added, removed, started)
        }
        await newConnectors.push(contentsOf: startedConnectors)
        return (added, removed)
    }

    /// Runs until cancelled. On cancellation in-flight work stops where it is: the journal already holds
    /// each file's last state and the next start resumes from there.
    func run() async throws {
        try await recover()
        await newConnectors.push(contentsOf: Array(connectors.keys))
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.journalDetected() }
                group.addTask { await self.forwardWatcherEvents() }
                // Uploaders run on the connection pool's thread (AWSClient.executor): a small file's
                // upload then costs no thread wake-ups besides the network's. These 16 workers are the
                // only bound on uploads, for all connectors together (S3, not the connector, takes them).
                let uploadExecutor = connectors.values.first?.context.s3.preferredExecutor
                for _ in 0..<16 {
                    group.addTask(executorPreference: uploadExecutor) { await self.uploadWorker() }
                }
                group.addTask { await self.flushStagedLoop() }
                group.addTask { await self.delays.run() }
                group.addTask { await self.backlog.run { await self.uploadQueue.push(contentsOf: $0) } }
                group.addTask { await self.backlogTicks() }
                while let name = await newConnectors.next() {
                    guard let queue = configuration.withLock({ $0.batchQueues[name] }) else { continue }
                    group.addTask { await self.submitLoop(connectorName: name, queue: queue) }
                }
                await group.waitForAll()
            }
        } onCancel: {
            Task { await self.shutdownQueues() }
        }
    }

    private func shutdownQueues() async {
        await stagedFlush.close()
        await newConnectors.close()
        await detectedQueue.close()
        await uploadQueue.close()
        backlog.close()
        for queue in configuration.withLock({ Array($0.batchQueues.values) }) { await queue.close() }
        await batcher.close()
    }

    // MARK: Recovery

    private func recover() async throws {
        // What waits to be uploaded is read from the journal a window at a time, as room frees up.
        backlog.spill(rules: Array(rules.keys))
        for file in try journal.outboundFiles(in: [.staged]) where rules[file.rule] != nil {
            await scheduleStaged(file)
        }
        for batch in try journal.batches(in: .submitting) {
            let files = try batch.fileIDs.compactMap { try journal.outboundFile($0) }
            guard !files.isEmpty, let context = self.context(batch.connector) else { continue }
            // Interrupted between StartFileTransfer and the journaling of its answer: in doubt.
            await inDoubt(PendingBatch(rule: batch.rule, connector: batch.connector, remoteDirectory: batch.remoteDirectory,
                                       files: files, existingBatchID: batch.id),
                          context: context, error: "ferry stopped before StartFileTransfer's answer was journaled")
        }
        for batch in try journal.batches(in: .submitted) {
            guard let service = connectors[batch.connector], let transferID = batch.transferID else { continue }
            await follow(TrackedBatch(id: batch.id, rule: batch.rule, connector: batch.connector, connectorID: batch.connectorID,
                                      transferID: transferID, fileIDs: batch.fileIDs, sentFileIDs: batch.sentFileIDs,
                                      submittedAt: batch.createdAt),
                         through: service, holdsSlot: false)
        }
        await dispose(try journal.outboundFiles(in: [.completed]).filter { rules[$0.rule] != nil })
        for file in try journal.outboundFiles(in: [.failed]) where rules[file.rule] != nil {
            await retryOrQuarantine(file)
        }
    }

    // MARK: Detection

    private func forwardWatcherEvents() async {
        for await file in watcher.completedFiles {
            await detectedQueue.push(file)
        }
    }

    /// Journals complete files in groups: one transaction for everything that arrived within 20 ms.
    private func journalDetected() async {
        while let first = await detectedQueue.next() {
            try? await Task.sleep(for: .milliseconds(20))
            var group = [first]
            group += await detectedQueue.drain(max: 2000)
            let records = group.compactMap { file -> NewOutboundFile? in
                guard let rule = rules[file.ruleID] else { return nil }
                var markerInode: UInt64?
                if let marker = rule.readyMarker, !marker.isEmpty {
                    var info = stat()
                    if lstat(file.path + marker, &info) == 0 { markerInode = UInt64(info.st_ino) }
                }
                // Seen here as this version: a done row finished later is this file's own send (the report is
                // older than the archive), not the file put back. Not here: nothing is superseded. The time is
                // taken after the look, so that a doubt goes to sending a file put back, not to skipping it.
                let present = LocalFiles.currentVersion(file.path) == file.version
                let observedAt = Date()
                return NewOutboundFile(rule: rule.name, path: file.path, relativePath: file.relativePath,
                                       version: file.version,
                                       remoteDirectory: remoteDirectory(for: rule, relativePath: file.relativePath),
                                       supersedesDone: rule.afterSend != .keep && present, markerInode: markerInode,
                                       observedAt: observedAt)
            }
            await journalDetected(records)
        }
    }

    /// Journals complete files; if the journal cannot be written (its disk is full), keeps them and
    /// tries again with backoff until it can — the watcher has already reported them and will not again.
    private func journalDetected(_ records: [NewOutboundFile]) async {
        var delay = retryBase
        while true {
            do {
                let inserted = try journal.recordDetected(records)
                health?.clear("journal")
                for file in inserted {
                    logger.debug("file complete", metadata: ["rule": "\(file.rule)", "file.path": "\(file.path)", "file.size": "\(file.size)"])
                }
                if inserted.count > 0 {
                    metrics.increment("ferry_files_detected_total", by: Double(inserted.count), help: "Complete files journaled for sending.")
                }
                await uploadQueue.push(contentsOf: backlog.admit(inserted))
                return
            } catch {
                let full = (error as? JournalError)?.isDiskFull ?? false
                let problem = full
                    ? "the journal's file system is full (\(journal.path)): \(records.count) complete files wait to be journaled; free space and they go, no restart needed"
                    : "cannot write the journal \(journal.path): \(error); \(records.count) complete files wait to be journaled"
                health?.set("journal", problem)
                logger.error("cannot journal detected files; retrying", metadata: ["error": "\(error)", "retry.delay": "\(delay)",
                                                                                  "files": "\(records.count)"])
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    return  // stopping: the next start's scan finds these files again
                }
                delay = min(delay * 2, .seconds(30))
            }
        }
    }

    /// A file in `<watch>/a/b/` goes to `<remote_directory_path>/a/b/`.
    func remoteDirectory(for rule: OutboundRule, relativePath: String) -> String? {
        let folder = (relativePath as NSString).deletingLastPathComponent
        guard rule.recursive, !folder.isEmpty else { return rule.remoteDirectoryPath }
        guard let base = rule.remoteDirectoryPath, !base.isEmpty else { return folder }
        return base.hasSuffix("/") ? base + folder : base + "/" + folder
    }

    // MARK: Upload

    private func uploadWorker() async {
        // A stop leaves the files still queued `detected` in the journal for the next start: trying each
        // (every attempt fails at once, cancelled) took longer than the 30 s a stop may take when
        // hundreds were queued on a busy machine (found by JournalStallTests under load).
        while !Task.isCancelled, let admitted = await uploadQueue.next() {
            let file = admitted.file
            guard let rule = rules[file.rule], let context = self.context(rule.connector), let staging = context.connector.staging else {
                continue
            }
            let outcome = await withTaskExecutorPreference(context.s3.preferredExecutor) {
                await upload(file, rule: rule, context: context, staging: staging)
            }
            switch outcome {
            case .staged(let staged): await batcher.add(staged, ticket: admitted.ticket)
            case .dropped:
                // Reported again once complete: a writer that closes without changing it, or a new version.
                watcher.forget(path: file.path)
                watcher.recheck(path: file.path)
            case .retry(let delay):
                delays.schedule(after: delay) { await self.uploadQueue.push(admitted) }
            case .retryOutsideWindow(let delay):
                // This file cannot be read; it must not keep the rule's readable files waiting behind it.
                delays.schedule(after: delay) { await self.uploadQueue.push(Admitted(file: file, ticket: nil)) }
            }
        }
    }

    enum UploadOutcome {
        case staged(OutboundFile)
        case dropped
        /// Tried again after the delay, keeping its place in the window (S3 refused it: the next files
        /// would fare no better, and the backlog waits in the journal meanwhile).
        case retry(Duration)
        /// Tried again after the delay, its place in the window given up: the file itself cannot be read
        /// (permissions), and a rule's other files go on.
        case retryOutsideWindow(Duration)
    }

    /// S3 key: `<prefix><rule>/<yyyy>/<mm>/<dd>/<file-id>/<original name>` — the partner receives the
    /// original name and two files of the same name never collide.
    func stagingKey(for file: OutboundFile, staging: S3Location) -> String {
        let date = CalendarDay(file.createdAt, utc: true).formatted(separator: "/")
        let name = (file.relativePath as NSString).lastPathComponent
        return "\(staging.prefix)\(file.rule)/\(date)/\(file.id)/\(name)"
    }

    private func upload(_ file: OutboundFile, rule: OutboundRule, context: ConnectorContext, staging: S3Location) async -> UploadOutcome {
        let expected = file.version
        let metadata: Logger.Metadata = ["rule": "\(file.rule)", "file.path": "\(file.path)"]
        let opened: LocalFiles.OpenFile
        do {
            opened = try LocalFiles.OpenFile(path: file.path)
            let (version, isRegular) = try opened.version()
            guard isRegular, version == expected else {
                try await offPoolThread { try self.journal.markDropped(file.id, reason: "changed before upload") }
                logger.info("file changed before upload; its new version will be sent once complete", metadata: metadata)
                return .dropped
            }
            // Unchanged is not finished: a writer that paused longer than `settle` still holds it open.
            // When it closes the file the watcher reports it again (IN_CLOSE_WRITE), as a new arrival.
            if LocalFiles.isOpenForWriting(opened.descriptor) == true {
                try await offPoolThread { try self.journal.markDropped(file.id, reason: "still open for writing") }
                logger.info("file is still open for writing by another process; it is sent once closed", metadata: metadata)
                return .dropped
            }
        } catch let error as SystemError where error.errno == .noSuchFileOrDirectory || error.errno == .tooManySymbolicLinkLevels {
            try? await offPoolThread { try self.journal.markDropped(file.id, reason: error.description) }
            logger.info("file vanished or was replaced by a link before upload; not sent", metadata: metadata)
            return .dropped
        } catch {
            logger.error("cannot read file; will retry in 60 s", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return .retryOutsideWindow(.seconds(60))
        }
        let key = stagingKey(for: file, staging: staging)
        do {
            let result = try await context.s3.putObject(bucket: staging.bucket, key: key, fileDescriptor: opened.descriptor,
                                                        size: expected.size, describedAs: file.path)
            // A writer that kept writing (or opened it) during the upload means the object may be half-written.
            let (after, _) = try opened.version()
            guard after == expected, LocalFiles.currentVersion(file.path) == expected, LocalFiles.isOpenForWriting(opened.descriptor) != true else {
                try? await context.s3.deleteObject(bucket: staging.bucket, key: key)
                try await offPoolThread { try self.journal.markDropped(file.id, reason: "changed during upload") }
                logger.info("file changed during upload; the upload is discarded and the new version will be sent", metadata: metadata)
                return .dropped
            }
            // Written with the batch that sends it, or within 200 ms (flushStagedLoop), in one transaction
            // for many uploads; a crash before that costs this upload again, nothing else.
            if journal.markStagedSoon(Journal.StagedCopy(id: file.id, bucket: staging.bucket, key: key, checksum: result.checksumCRC32C)) {
                await stagedFlush.push(())
            }
            health?.clear("staging:\(staging.bucket)")
            metrics.increment("ferry_bytes_uploaded_total", ["rule": file.rule], by: Double(file.size), help: "Bytes uploaded to S3 staging.")
            var staged = file
            staged.state = .staged
            staged.bucket = staging.bucket
            staged.key = key
            return .staged(staged)
        } catch {
            logger.warning("upload to staging failed; will retry", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            // Every upload fails alike when the bucket refuses the credentials (or is gone): the files
            // wait, spending no attempt, and status says why until an upload goes through.
            if let aws = error as? AWSError, aws.isAccessProblem || aws.code == "NoSuchBucket" {
                health?.set("staging:\(staging.bucket)", "uploads to s3://\(staging.bucket)/ fail (\(aws.code): \(aws.message)); files wait, none is quarantined for it — check the credentials and the bucket's and IAM policy's s3:PutObject")
            }
            metrics.increment("ferry_upload_errors_total", ["rule": file.rule], help: "Uploads to S3 staging that failed after the client's retries.")
            return .retry(.seconds(10))
        }
    }

    /// Runs a journal write away from FerryAWS's HTTP thread, where the upload workers run: a transaction
    /// waits for the journal's lock and may fsync, and on that thread every request in the process would
    /// wait with it. (`markStagedSoon`, on every upload's path, takes no journal lock and stays there.)
    private func offPoolThread<T: Sendable>(_ write: @Sendable () throws -> T) async throws -> T {
        try await withTaskExecutorPreference(globalConcurrentExecutor) { try write() }
    }

    /// Writes uploads waiting in the journal's memory 200 ms after the first of them, so a burst of
    /// uploads costs one transaction, and once more when the pipeline stops.
    private func flushStagedLoop() async {
        while await stagedFlush.next() != nil {
            try? await Task.sleep(for: .milliseconds(200))
            _ = await stagedFlush.drain(max: .max)
            flushStaged()
        }
        flushStaged()
    }

    private func flushStaged() {
        do {
            try journal.flushStaged()
        } catch {
            logger.error("cannot journal finished uploads; they are written with their batch, or uploaded again after a restart",
                         metadata: ["error": "\(error)"])
        }
    }

    private func scheduleStaged(_ file: OutboundFile) async {
        if let next = file.nextAttemptAt, next > Date() {
            delays.schedule(after: .milliseconds(Int(next.timeIntervalSinceNow * 1000))) { await self.batcher.add(file) }
        } else {
            await batcher.add(file)
        }
    }

    // MARK: Submit

    private func submitLoop(connectorName: String, queue: AsyncQueue<PendingBatch>) async {
        guard let service = connectors[connectorName] else { return }
        await Liveness.$loop.withValue("outbound submit \(connectorName)") { await submitLoop(service: service, queue: queue) }
    }

    private func submitLoop(service: ConnectorService, queue: AsyncQueue<PendingBatch>) async {
        // Discarding: this group lives as long as the daemon and gets a child per batch. A plain task
        // group keeps every finished child until it is awaited, which nothing here does: the soak saw
        // RSS grow ~1.5 KB per file sent (heaptrack: hundreds of finished submit tasks' stacks).
        await withDiscardingTaskGroup { group in
            while let batch = await queue.next() {
                // The connector service's budgets, shared with inbound and outliving reloads: an in-flight
                // slot, then the gate (a PENDING or ERRORED connector gets nothing: the batch waits here,
                // whole, spending no attempt, until DescribeConnector says ACTIVE again) and the rate.
                let context: ConnectorContext
                do {
                    context = try await service.admit()
                } catch {
                    break  // stopping: the batch's files stay staged for the next start
                }
                group.addTask { await self.submit(batch, service: service, context: context) }
            }
        }
    }

    private func submit(_ pending: PendingBatch, service: ConnectorService, context: ConnectorContext) async {
        let batchID: Int64
        do {
            if let existing = pending.existingBatchID {
                batchID = existing
            } else {
                batchID = try journal.createBatch(rule: pending.rule, connector: pending.connector, connectorID: context.connector.connectorId,
                                                  remoteDirectory: pending.remoteDirectory, fileIDs: pending.files.map(\.id))
            }
        } catch {
            logger.error("cannot journal a batch; retrying in 10 s", metadata: ["rule": "\(pending.rule)", "error": "\(error)"])
            await service.release()
            requeueLater(pending.files, tickets: pending.tickets, after: .seconds(10))
            return
        }
        let connectorID = context.connector.connectorId
        let paths = pending.files.map { "/\($0.bucket ?? "")/\($0.key ?? "")" }
        let metadata: Logger.Metadata = ["rule": "\(pending.rule)", "batch.id": "\(batchID)", "batch.files": "\(paths.count)"]
        let failure: SubmissionFailure
        let error: any Error
        switch await service.start(.send(paths: paths, remoteDirectory: pending.remoteDirectory), on: context) {
        case .started(let transferID):
            do {
                try journal.markSubmitted(batch: batchID, transferID: transferID)
            } catch let journalError {
                // Started, but not journaled: after a restart nothing would know the transfer. In doubt.
                await service.release()
                var doubtful = pending
                doubtful.existingBatchID = batchID
                await inDoubt(doubtful, context: context, error: "cannot journal the transfer id \(transferID): \(journalError)")
                return
            }
            logger.info("batch submitted", metadata: metadata.merging(["transfer.id": "\(transferID)"]) { $1 })
            await follow(TrackedBatch(id: batchID, rule: pending.rule, connector: pending.connector, connectorID: connectorID,
                                      transferID: transferID, fileIDs: pending.files.map(\.id), submittedAt: Date()),
                         through: service, holdsSlot: true)
            return
        case .stopped:
            // Stopping mid-call: the batch stays `submitting` and the next start treats it as in doubt.
            return
        case .failed(let classified, let thrown):
            failure = classified
            error = thrown
        }
        // The slot is free again (the service gave it back with the failure).
        let aws = error as? AWSError
        switch failure {
        case .throttled(let wait):
            // Not started, and not the batch's fault: wait as asked, without spending an attempt.
            logger.info("StartFileTransfer throttled; the batch goes again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            let files = (try? journal.abandonBatch(batchID, retryAfter: Date(timeIntervalSinceNow: seconds(wait)), error: "\(error)")) ?? pending.files
            requeueLater(files, tickets: pending.tickets, after: wait)
        case .denied:
            // Refused for the connector itself (credentials, an unknown connector id): held without
            // spending an attempt; the service has made status degraded until a call goes through.
            let message = aws.map { "\($0.code): \($0.message)" } ?? "\(error)"
            let wait = deniedRetry
            let files = (try? journal.abandonBatch(batchID, retryAfter: Date(timeIntervalSinceNow: seconds(wait)), error: message)) ?? pending.files
            requeueLater(files, tickets: pending.tickets, after: wait)
        case .refused:
            // AWS refused the batch itself (validation): not started. It counts toward `retries`.
            logger.warning("StartFileTransfer refused", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            let message = aws.map { "\($0.code): \($0.message)" } ?? "\(error)"
            let files: [OutboundFile]
            do {
                files = try journal.abandonBatch(batchID, retryAfter: Date(timeIntervalSinceNow: 10), error: message, countsAsAttempt: true)
            } catch {
                logger.error("cannot journal the refused batch; it is resubmitted after a restart", metadata: metadata.merging(["error.journal": "\(error)"]) { $1 })
                return
            }
            for file in files {
                var failed = file
                failed.state = .failed
                await retryOrQuarantine(failed)
            }
        case .inDoubt:
            var doubtful = pending
            doubtful.existingBatchID = batchID
            await inDoubt(doubtful, context: context, error: "\(error)")
        }
    }

    /// A batch whose StartFileTransfer may or may not have started a transfer (no answer, a timeout, a
    /// 5xx, or a crash before its answer was journaled). The connector's `on_in_doubt` decides: `resend`
    /// sends it again and reports every file as a possible duplicate; `hold` sets the files aside in
    /// `.ferry/in-doubt/` for an operator. The staged copies stay either way: a transfer that did start
    /// still reads them.
    private func inDoubt(_ pending: PendingBatch, context: ConnectorContext, error: String) async {
        guard let batchID = pending.existingBatchID else { return }
        let paths = pending.files.map(\.path).joined(separator: ", ")
        let metadata: Logger.Metadata = ["rule": "\(pending.rule)", "batch.id": "\(batchID)", "error": "\(error)", "file.paths": "\(paths)"]
        alerts?.post(AlertEvent(.batchInDoubt, rule: pending.rule, connector: pending.connector, paths: pending.files.map(\.path), message: AlertEvent.inDoubtMessage(files: pending.files.count, error: error, policy: context.connector.onInDoubt)))
        switch context.connector.onInDoubt {
        case .resend:
            logger.info("StartFileTransfer's outcome is unknown; the partner's folder is checked before the batch is resent (on_in_doubt: resend)",
                        metadata: metadata)
            let since = (try? journal.batches(in: .submitting).first { $0.id == batchID })??.createdAt
            let queue = configuration.withLock { $0.batchQueues[pending.connector] }
            // A moment for a transfer that did start to deliver, so that the listing can see it.
            delays.schedule(after: .seconds(5)) { [self] in
                var resend = pending
                if let since {
                    let check = InDoubtListing(context: context, pace: { try await self.connectors[pending.connector]?.pace() }, journal: journal, logger: logger)
                    let (found, unchecked) = await check.filesOnPartner(pending.files, batchID: batchID, since: since)
                    if let unchecked {
                        logger.info("in-doubt files could not all be looked for on the partner; those are resent", metadata: metadata.merging(["reason": "\(unchecked)"]) { $1 })
                    }
                    if !found.isEmpty {
                        do {
                            let completed = try journal.recordFoundOnPartner(batch: batchID, Array(found.keys))
                            logger.warning("in-doubt files are already on the partner (same name and size, written since the batch was journaled): recorded as sent, not sent again",
                                           metadata: metadata.merging(["file.paths": "\(completed.map(\.path).joined(separator: ", "))",
                                                                       "evidence": "\(found.values.sorted().joined(separator: "; "))"]) { $1 })
                            metrics.increment("ferry_in_doubt_found_on_partner_total", ["rule": pending.rule], by: Double(completed.count),
                                              help: "Files of in-doubt batches found on the partner by a directory listing and not sent again.")
                            for file in completed {
                                metrics.increment("ferry_files_sent_total", ["rule": file.rule], help: "Files the partner received.")
                                metrics.increment("ferry_bytes_sent_total", ["rule": file.rule], by: Double(file.size), help: "Bytes the partner received.")
                            }
                            resend.files.removeAll { found[$0.id] != nil }
                            for id in found.keys { resend.tickets[id] = nil }
                            await dispose(completed)
                        } catch {
                            logger.error("cannot journal in-doubt files found on the partner; they are resent and reported", metadata: metadata.merging(["error.journal": "\(error)"]) { $1 })
                        }
                    }
                }
                guard !resend.files.isEmpty else { return }
                logger.warning("StartFileTransfer's outcome is unknown; resending (on_in_doubt: resend), the partner may receive these files twice",
                               metadata: metadata.merging(["file.paths": "\(resend.files.map(\.path).joined(separator: ", "))"]) { $1 })
                try? self.journal.recordPossibleDuplicates(resend.files.map(\.id))
                self.alerts?.post(AlertEvent(.possibleDuplicate, rule: pending.rule, connector: pending.connector, paths: resend.files.map(\.path), message: "\(resend.files.count) file(s) are sent again after StartFileTransfer's outcome was unknown (\(error)): the partner may receive them twice; tell the partner or check with them"))
                self.metrics.increment("ferry_possible_duplicates_total", ["rule": pending.rule], by: Double(resend.files.count),
                                       help: "Files sent again after StartFileTransfer's outcome was unknown; the partner may have them twice.")
                await queue?.push(resend)
            }
        case .hold:
            logger.error("StartFileTransfer's outcome is unknown; holding the files in .ferry/in-doubt/ (on_in_doubt: hold) — check with the partner, then `ferry retry` resends them",
                         metadata: metadata)
            metrics.increment("ferry_batches_in_doubt_total", ["rule": pending.rule],
                              help: "Batches whose StartFileTransfer outcome was unknown and that were held for an operator.")
            var held: [(id: Int64, path: String)] = []
            for file in pending.files {
                let reason = "the outcome of StartFileTransfer is unknown (\(error)): the partner may or may not have this file"
                if let placed = setAside(file, folder: "in-doubt", reason: reason, retryHint: true) { held.append((file.id, placed)) }
            }
            do {
                try journal.markInDoubt(held, reason: error)
                try journal.finishBatch(batchID)
            } catch {
                logger.error("cannot journal the held batch; it is treated as in doubt again after a restart",
                             metadata: metadata.merging(["error.journal": "\(error)"]) { $1 })
                return
            }
            for file in pending.files { watcher.forget(path: file.path) }
        }
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Files go back to the batcher after `delay`, keeping their places in the window (`tickets`): a
    /// connector refusing for hours keeps its files, not the rest of the backlog, in memory.
    private func requeueLater(_ files: [OutboundFile], tickets: [Int64: BacklogTicket] = [:], after delay: Duration) {
        delays.schedule(after: delay) {
            for file in files { await self.batcher.add(file, ticket: tickets[file.id]) }
        }
    }

    /// Wakes the backlog's refill once a second while files wait in the journal: a refill that could not
    /// read the journal, or a window that emptied without crossing its low water, is not left waiting.
    private func backlogTicks() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            if backlog.isSpilled { backlog.nudge() }
        }
    }

    // MARK: Track

    /// Has the connector service follow a submitted batch; each look's results come back to `look`.
    private func follow(_ batch: TrackedBatch, through service: ConnectorService, holdsSlot: Bool) async {
        // The files still waiting for their outcome shrink from look to look.
        let state = Locked(batch)
        await service.track(transferID: batch.transferID, connectorID: batch.connectorID, submittedAt: batch.submittedAt, holdsSlot: holdsSlot,
                            follower: TransferFollower(look: { _, look in await self.look(state, look) }))
    }

    /// How long a batch whose StartFileTransfer was refused for the connector itself (denied credentials,
    /// an unknown connector id) waits before it is tried again: 15 s with the default retry base.
    var deniedRetry: Duration { retryBase * 15 }

    /// Records what one look at a batch's transfer found.
    private func look(_ state: Locked<TrackedBatch>, _ look: TransferLook) async -> TransferVerdict {
        let batch = state.withLock { $0 }
        let metadata: Logger.Metadata = ["rule": "\(batch.rule)", "transfer.id": "\(batch.transferID)", "connector.id": "\(batch.connectorID)"]
        let results: [FileTransferResult]
        switch look {
        case .lost(_, let why):
            await outcomeLost(batch, why: why)
            return .finished
        case .results(let found):
            results = found
        }
        var files: [Int64: OutboundFile] = [:]
        // Results are matched against every file of the transfer: those recorded at an earlier look are
        // still listed, and are theirs, not "paths ferry did not send".
        var sent: [OutboundFile] = []
        do {
            sent = try journal.outboundFiles(ids: batch.sentFileIDs)
            let open = Set(batch.fileIDs)
            for file in sent where file.state == .submitted && open.contains(file.id) { files[file.id] = file }
        } catch {
            logger.error("cannot read the batch's files from the journal; will ask again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return .retry
        }
        let matcher = ResultMatcher(files: sent)
        var outcomes: [Int64: FileOutcome] = [:]
        var unmatched: [FileTransferResult] = []
        for result in results {
            guard let id = matcher.file(for: result.filePath) else {
                unmatched.append(result)
                continue
            }
            // Recorded at an earlier look (or no longer waiting for this transfer): nothing to learn.
            guard files[id] != nil else { continue }
            switch result.statusCode {
            case .completed: outcomes[id] = .completed
            case .failed: outcomes[id] = .failed(code: result.failureCode ?? "FAILED", message: result.failureMessage ?? "no message from AWS")
            default: break
            }
        }
        if !unmatched.isEmpty {
            logger.error("transfer results match no file of the batch", metadata: metadata.merging([
                "transfer.unmatched_paths": "\(unmatched.map(\.filePath).joined(separator: ", "))"]) { $1 })
            metrics.increment("ferry_unmatched_results_total", ["rule": batch.rule], by: Double(unmatched.count),
                              help: "ListFileTransferResults entries that matched no file ferry sent in that transfer.")
            health?.set("results:\(batch.rule)", "transfer \(batch.transferID) of rule \(batch.rule) reported results for paths ferry did not send (\(unmatched.prefix(3).map(\.filePath).joined(separator: ", "))); its unmatched files are quarantined as outcome unknown")
        }
        // Every result is final, yet some files have none: AWS will not say more about them.
        let everyResultFinal = results.allSatisfy { $0.statusCode == .completed || $0.statusCode == .failed }
        let waiting = files.keys.filter { outcomes[$0] == nil }
        if !results.isEmpty, everyResultFinal, !waiting.isEmpty, !unmatched.isEmpty || results.count >= batch.sentFileIDs.count {
            for id in waiting.sorted() {
                if let file = files[id] {
                    await quarantineUnknownOutcome(file, why: "transfer \(batch.transferID) finished without a result naming this file")
                    files[id] = nil
                }
            }
        }
        // after_send first, then one transaction records every outcome (completed files whose after_send
        // is done go straight to done). A crash in between tracks the batch again; after_send then
        // finds each file already handled.
        let completedFiles = outcomes.compactMap { id, outcome in outcome == .completed ? files[id] : nil }.sorted { $0.id < $1.id }
        let disposed = await performAfterSend(completedFiles)
        do {
            try journal.recordOutcomes(batch: batch.id, outcomes, done: Set(disposed.map(\.id)))
        } catch {
            logger.error("cannot journal transfer results; will ask again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return .retry
        }
        forgetDisposed(disposed)
        var completed = 0
        var failed = 0
        for (id, outcome) in outcomes {
            guard var file = files[id] else { continue }
            switch outcome {
            case .completed:
                completed += 1
                metrics.increment("ferry_files_sent_total", ["rule": file.rule], help: "Files the partner received.")
                metrics.increment("ferry_bytes_sent_total", ["rule": file.rule], by: Double(file.size), help: "Bytes the partner received.")
            case .failed(let code, let message):
                failed += 1
                file.state = .failed
                file.attempts += 1
                file.lastError = "\(code): \(message)"
                metrics.increment("ferry_files_failed_total", ["rule": file.rule, "code": code], help: "File transfers AWS reported FAILED.")
                if code == "SEND_FILE_NOT_FOUND", file.attempts <= (rules[file.rule]?.retries ?? 0) {
                    // The staged copy is gone (expired by a lifecycle rule, deleted): upload the file again.
                    await reupload(file)
                } else {
                    await retryOrQuarantine(file)
                }
            }
        }
        let remaining = batch.fileIDs.filter { files[$0] != nil && outcomes[$0] == nil }
        if remaining.isEmpty {
            if outcomes.isEmpty { try? journal.finishBatch(batch.id) }
            logger.info("transfer finished", metadata: metadata.merging(["batch.completed": "\(completed)", "batch.failed": "\(failed)"]) { $1 })
            return .finished
        }
        state.withLock { $0.fileIDs = remaining }
        return .waiting
    }

    /// The transfer's outcome can no longer be learned: its files are quarantined, never resent
    /// automatically (the service then frees its in-flight slot).
    private func outcomeLost(_ batch: TrackedBatch, why: String) async {
        let files = (try? journal.outboundFiles(ids: batch.fileIDs).filter { $0.state == .submitted }) ?? []
        for file in files { await quarantineUnknownOutcome(file, why: why) }
        try? journal.finishBatch(batch.id)
    }

    private func reupload(_ file: OutboundFile) async {
        do {
            try journal.requeueForUpload([file.id], error: file.lastError ?? "SEND_FILE_NOT_FOUND")
        } catch {
            logger.error("cannot journal the new upload; it is retried after a restart", metadata: ["file.path": "\(file.path)", "error": "\(error)"])
            return
        }
        logger.warning("the staged copy is gone (SEND_FILE_NOT_FOUND); uploading the file again", metadata: ["rule": "\(file.rule)", "file.path": "\(file.path)"])
        var detected = file
        detected.state = .detected
        detected.bucket = nil
        detected.key = nil
        await uploadQueue.push(Admitted(file: detected, ticket: backlog.extraTicket(rule: detected.rule)))
    }

    // MARK: After the transfer

    /// after_send for files journaled `completed` (recovery, and retries of a failed after_send): the
    /// local action and staged-copy deletion, then one journal transaction for all.
    private func dispose(_ files: [OutboundFile], attempt: Int = 0) async {
        let done = await performAfterSend(files, attempt: attempt)
        do {
            try journal.markDone(done.map(\.id))
        } catch {
            logger.error("cannot journal after_send; it is done again (harmlessly) on the next start", metadata: ["error": "\(error)"])
        }
        forgetDisposed(done)
    }

    /// The local action of each file's after_send, then one DeleteObjects for the staged copies of those
    /// it succeeded for (which it returns). Files whose after_send cannot be done now are journaled with
    /// the reason and retried with backoff. Journaling the successes is the caller's.
    private func performAfterSend(_ files: [OutboundFile], attempt: Int = 0) async -> [OutboundFile] {
        var done: [OutboundFile] = []
        var retry: [OutboundFile] = []
        var records: [Journal.AfterSendRecord] = []
        for file in files {
            switch disposeLocally(file) {
            case .done(let record):
                done.append(file)
                if let record { records.append(record) }
            case .notNow(let reason):
                try? journal.markAfterSendFailed(file.id, error: reason)
                retry.append(file)
            }
        }
        // What after_send did, for `ferry history` and `ferry explain` (the archive path above all).
        do {
            try journal.recordAfterSend(records)
        } catch {
            logger.warning("cannot journal what after_send did; history will show the rule's after_send without the archive path",
                           metadata: ["error": "\(error)"])
        }
        await deleteStagedCopies(done)
        if retry.isEmpty {
            if attempt > 0 { health?.clear("after_send") }
        } else {
            health?.set("after_send", "after_send of \(retry.count) sent file(s) cannot be done yet, e.g. \(retry[0].path): \((try? journal.outboundFile(retry[0].id))??.lastError ?? "see the log")")
            let delay = min(retryBase * (1 << min(attempt, 8)), .seconds(300))
            logger.warning("after_send could not be done; retrying", metadata: [
                "file.paths": "\(retry.map(\.path).joined(separator: ", "))", "retry.delay": "\(delay)"])
            let again = retry
            delays.schedule(after: delay) { await self.dispose(again, attempt: attempt + 1) }
        }
        return done
    }

    /// The watcher may report a file at these paths again: the sent ones are gone (kept ones stay known).
    private func forgetDisposed(_ files: [OutboundFile]) {
        let rules = self.rules
        for file in files where rules[file.rule]?.afterSend != .keep { watcher.forget(path: file.path) }
    }

    enum AfterSendResult: Equatable {
        /// Done, or nothing left to do for the version that was sent; with what was done to it, when
        /// the rule's after_send was carried out on it.
        case done(Journal.AfterSendRecord?)
        /// Not possible now (open for writing, a full disk, permissions): retried with backoff.
        case notNow(String)
    }

    /// Archives, deletes or keeps exactly the version that was sent, and removes the ready marker that
    /// came with it. The file is first renamed to a private name under `.ferry/claim/` and checked
    /// there, so a newer version renamed into place meanwhile is never archived or deleted in its stead.
    private func disposeLocally(_ file: OutboundFile) -> AfterSendResult {
        guard let rule = rules[file.rule] else { return .notNow("rule \(file.rule) is no longer configured") }
        let metadata: Logger.Metadata = ["rule": "\(file.rule)", "file.path": "\(file.path)"]
        let expected = file.version
        let claimPath = ((rule.watch as NSString).appendingPathComponent(".ferry/claim") as NSString).appendingPathComponent("\(file.id)")
        func changedAfterSend() -> AfterSendResult {
            logger.warning("file changed after it was sent; the new version is sent on its own and the sent one is not archived",
                           metadata: metadata)
            return .done(Journal.AfterSendRecord(id: file.id, result: "changed after it was sent; left in place"))
        }
        do {
            var claimed = LocalFiles.currentVersion(claimPath) == expected  // a crash after the claim, before the move
            if !claimed {
                guard let current = LocalFiles.currentVersion(file.path) else {
                    removeMarker(of: file, rule: rule)
                    return .done(nil)  // gone already: handled before a crash, or removed by someone
                }
                if current != expected { return changedAfterSend() }
                let opened = try LocalFiles.OpenFile(path: file.path)
                if LocalFiles.isOpenForWriting(opened.descriptor) == true {
                    return .notNow("\(file.path) is open for writing by another process")
                }
                if rule.afterSend != .keep {
                    claimed = try LocalFiles.claim(file.path, expected: expected, as: claimPath)
                    if !claimed { return changedAfterSend() }
                }
            }
            var record = Journal.AfterSendRecord(id: file.id, result: "kept")
            switch rule.afterSend {
            case .archive:
                let placed: String
                do {
                    placed = try LocalFiles.moveNoReplace(claimPath, to: archiveDestination(for: file, rule: rule))
                } catch {
                    // Back where the operator expects it while the archive cannot take it (a full disk);
                    // if a newer version took the name meanwhile, it waits under .ferry/claim/ instead.
                    _ = ferry_rename_noreplace(claimPath, file.path)
                    throw error
                }
                logger.debug("archived", metadata: metadata.merging(["file.archived": "\(placed)"]) { $1 })
                record = Journal.AfterSendRecord(id: file.id, result: "archived", archivePath: placed)
            case .delete:
                try LocalFiles.syscall("unlink", path: claimPath) { unlink(claimPath) }
                record = Journal.AfterSendRecord(id: file.id, result: "deleted")
            case .keep:
                break
            }
            removeMarker(of: file, rule: rule)
            return .done(record)
        } catch let error as SystemError where error.errno == .noSuchFileOrDirectory || error.errno == .tooManySymbolicLinkLevels {
            return .done(nil)  // the file went away between the checks: nothing of the sent version is left here
        } catch {
            logger.error("after_send failed; retrying", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return .notNow("\(error)")
        }
    }

    /// Removes the ready marker seen with the sent version, and no other: a marker written for a newer
    /// version of the file (a new inode) stays for that version.
    private func removeMarker(of file: OutboundFile, rule: OutboundRule) {
        guard let marker = rule.readyMarker, !marker.isEmpty else { return }
        let markerPath = file.path + marker
        var info = stat()
        guard lstat(markerPath, &info) == 0 else { return }
        if let seen = file.markerInode, UInt64(info.st_ino) != seen { return }
        if unlink(markerPath) != 0, errno != ENOENT {
            logger.warning("cannot remove the ready marker", metadata: ["rule": "\(file.rule)", "file.marker": "\(markerPath)"])
        }
    }

    func archiveDestination(for file: OutboundFile, rule: OutboundRule) -> String {
        let day = CalendarDay(Date(), utc: false).formatted(separator: "-")
        let base = rule.archiveDir ?? (rule.watch as NSString).appendingPathComponent(".ferry/sent")
        return ((base as NSString).appendingPathComponent(day) as NSString).appendingPathComponent(file.relativePath)
    }

    /// Deletes the staged copies of `files` (unless their connector keeps them), 1,000 keys a request.
    private func deleteStagedCopies(_ files: [OutboundFile]) async {
        var groups: [String: (context: ConnectorContext, bucket: String, keys: [String])] = [:]
        let rules = self.rules
        let connectors = self.connectors
        for file in files {
            guard let rule = rules[file.rule], let context = connectors[rule.connector]?.context, !context.connector.keepStaged,
                  let bucket = file.bucket, let key = file.key else { continue }
            let group = rule.connector + "\u{0}" + bucket
            groups[group, default: (context, bucket, [])].keys.append(key)
        }
        for (_, group) in groups {
            for start in stride(from: 0, to: group.keys.count, by: 1000) {
                let chunk = Array(group.keys[start..<min(start + 1000, group.keys.count)])
                do {
                    let failures = try await group.context.s3.deleteObjects(bucket: group.bucket, keys: chunk)
                    for (key, error) in failures {
                        logger.warning("cannot delete the staged copy; an S3 lifecycle rule on the staging prefix would remove it",
                                       metadata: ["s3.key": "\(key)", "error": "\(error)"])
                    }
                } catch {
                    logger.warning("cannot delete staged copies; an S3 lifecycle rule on the staging prefix would remove them",
                                   metadata: ["s3.bucket": "\(group.bucket)", "s3.keys": "\(chunk.count)", "error": "\(error)"])
                }
            }
        }
    }

    private func retryOrQuarantine(_ file: OutboundFile) async {
        guard let rule = rules[file.rule] else { return }
        let metadata: Logger.Metadata = ["rule": "\(file.rule)", "file.path": "\(file.path)", "file.attempts": "\(file.attempts)",
                                         "error": "\(file.lastError ?? "")"]
        if file.attempts <= rule.retries {
            let delay = min(retryBase * (1 << min(file.attempts - 1, 16)), .seconds(300))
            logger.warning("transfer failed; retrying", metadata: metadata)
            do {
                try journal.requeue([file.id], after: Date(timeIntervalSinceNow: Double(delay.components.seconds)), error: nil)
            } catch {
                logger.error("cannot journal the retry", metadata: metadata.merging(["error.journal": "\(error)"]) { $1 })
                return
            }
            var staged = file
            staged.state = .staged
            requeueLater([staged], after: delay)
            return
        }
        guard await quarantine(file, reason: file.lastError ?? "unknown", reasonLine: "failure: \(file.lastError ?? "unknown")",
                               log: "file quarantined after its last retry") else { return }
        await deleteStagedCopies([file])
    }

    /// Quarantines a file whose transfer's outcome can no longer be learned (AWS forgot the transfer, or
    /// it is older than the 7 days results are kept). It is never resent automatically: the partner may
    /// have it. The staged copy stays, in case the transfer is still reading it.
    private func quarantineUnknownOutcome(_ file: OutboundFile, why: String) async {
        let reason = "outcome unknown: the partner may or may not have it (\(why)); check with the partner before `ferry retry`"
        _ = await quarantine(file, reason: reason, reasonLine: reason, log: "file quarantined: its transfer's outcome can no longer be learned")
    }

    /// Moves the file to `.ferry/failed/` with its reason, journals it quarantined and tells the
    /// watcher; false if the move or the journal failed (the file then stays where it is).
    private func quarantine(_ file: OutboundFile, reason: String, reasonLine: String, log message: Logger.Message) async -> Bool {
        let metadata: Logger.Metadata = ["rule": "\(file.rule)", "file.path": "\(file.path)", "file.attempts": "\(file.attempts)",
                                         "transfer.id": "\(file.transferID ?? "")", "error": "\(reason)"]
        guard let placed = setAside(file, folder: "failed", reason: reasonLine, retryHint: true) else { return false }
        do {
            try journal.markQuarantined(file.id, reason: reason, quarantinePath: placed)
        } catch {
            logger.error("cannot journal the quarantine", metadata: metadata.merging(["error.journal": "\(error)"]) { $1 })
            return false
        }
        metrics.increment("ferry_files_quarantined_total", ["rule": file.rule], help: "Files moved to .ferry/failed/ after their last retry.")
        alerts?.post(AlertEvent(.fileQuarantined, rule: file.rule, connector: rules[file.rule]?.connector, paths: [placed], message: "\(file.path) was quarantined after \(file.attempts) attempt(s) and is now \(placed): \(reason); fix the cause, then `ferry retry \(placed)` sends it again"))
        logger.error(message, metadata: metadata.merging(["file.quarantined": "\(placed)"]) { $1 })
        watcher.forget(path: file.path)
        return true
    }

    /// Moves the journaled version of `file` (if it is still the one at its path) to
    /// `<watch>/.ferry/<folder>/<relative path>` with a `.reason` file beside it; returns where the
    /// file is (its original path if it was no longer that version), nil if the move failed.
    private func setAside(_ file: OutboundFile, folder: String, reason: String, retryHint: Bool) -> String? {
        guard let rule = rules[file.rule] else { return nil }
        let destination = ((rule.watch as NSString).appendingPathComponent(".ferry/\(folder)") as NSString).appendingPathComponent(file.relativePath)
        let expected = file.version
        var placed = destination
        do {
            if LocalFiles.currentVersion(file.path) == expected {
                placed = try LocalFiles.moveNoReplace(file.path, to: destination)
            }
            let text = """
                file: \(file.path)
                rule: \(file.rule)
                attempts: \(file.attempts)
                \(reason)
                transfer: \(file.transferID ?? "none")
                set aside: \(ISO8601DateFormatter().string(from: Date()))
                \(retryHint ? "retry with: ferry retry --rule \(file.rule) \(placed)\n" : "")
                """
            try LocalFiles.makeDirectories((placed as NSString).deletingLastPathComponent)
            try LocalFiles.writeAtomically(text, to: placed + ".reason")
            return placed
        } catch {
            logger.error("cannot move the file to .ferry/\(folder)/; it stays in place", metadata: ["rule": "\(file.rule)", "file.path": "\(file.path)", "error": "\(error)"])
            return nil
        }
    }
}

/// A calendar day (UTC or local time) from the C library: Foundation's Calendar and String(format:)
/// cost more than an upload's signature when done for every file.
struct CalendarDay {
    var year: Int32
    var month: Int32
    var day: Int32

    init(_ date: Date, utc: Bool) {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        if utc { gmtime_r(&seconds, &parts) } else { localtime_r(&seconds, &parts) }
        year = parts.tm_year + 1900
        month = parts.tm_mon + 1
        day = parts.tm_mday
    }

    /// `yyyy<sep>mm<sep>dd`.
    func formatted(separator: String) -> String {
        func padded(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return padded(year, 4) + separator + padded(month, 2) + separator + padded(day, 2)
    }
}

#if canImport(Glibc)
import Glibc
#endif
