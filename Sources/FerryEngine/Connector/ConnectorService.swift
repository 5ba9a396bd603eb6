import FerryAWS
import FerryConfig
import Foundation
import Logging

/// A connector's settings as the rules in force give them, with the clients of its AWS settings.
/// Replaced as a whole by a reload (`ConnectorService.update`); work reads it at the last moment.
struct ConnectorContext: Sendable {
    let connector: Connector
    let s3: any StagingStore
    let transfer: any TransferService
}

/// What a direction asks of the connector in one StartFileTransfer.
enum TransferRequest: Sendable {
    /// Send staged objects (`/bucket/key`, at most 10) to the partner.
    case send(paths: [String], remoteDirectory: String?)
    /// Retrieve partner files (at most 10) into `localDirectory` (`/bucket/prefix`).
    case retrieve(paths: [String], localDirectory: String)
}

/// How one StartFileTransfer went.
enum StartResult: Sendable {
    /// Started: the caller journals the transfer id, then has the service `track` it. The in-flight slot
    /// stays taken until the tracking ends.
    case started(transferID: String)
    /// Not started, or maybe started (`SubmissionFailure`): the in-flight slot is already given back.
    case failed(SubmissionFailure, any Error)
    /// The task was cancelled during the call (ferry is stopping): the outcome is unknown, the slot given back.
    case stopped(any Error)
}

/// One look at a tracked transfer, for the direction that submitted it.
enum TransferLook: Sendable {
    /// Every file's state as ListFileTransferResults gave it.
    case results([FileTransferResult])
    /// AWS will say no more about the transfer: it does not know it (`code`), or it is older than the
    /// 7 days results are kept.
    case lost(code: String, why: String)
}

/// What the direction made of a look.
enum TransferVerdict: Sendable {
    /// Every file's outcome is recorded (or given up on): the tracking ends, the in-flight slot is freed
    /// and the connector's next transfer is looked at at once.
    case finished
    /// Some files are still QUEUED or IN_PROGRESS: looked at again on the head-of-line schedule.
    case waiting
    /// The look could not be recorded (the journal failed): looked at again after a backoff.
    case retry
}

/// A direction's part in one tracked transfer: `look` records each look's results and says what they
/// mean; `ended` is told once the tracking ended and the in-flight slot is free.
struct TransferFollower: Sendable {
    var look: @Sendable (TrackedTransfer, TransferLook) async -> TransferVerdict
    var ended: @Sendable () -> Void = {}
}

/// One connector, for both directions and for the daemon's whole life (a reload updates it in place):
/// the only owner of what AWS limits per connector.
///
/// - the request budget (`requests_per_second`, held off by a `RetryAfterSeconds`) and the gate that
///   holds all work while DescribeConnector says the connector cannot take it (`ConnectorMonitor`);
/// - the in-flight budget (`max_in_flight`): a slot from `admit` until the transfer's tracking ends;
/// - submission: each StartFileTransfer is called once and a failure is classified once, for both
///   directions (`SubmissionFailure`); a refusal for the connector itself (denied credentials, an
///   unknown connector id) holds work and makes `ferry status` degraded instead of costing files attempts;
/// - one tracker of the connector's transfers, both directions together: ListFileTransferResults on the
///   head-of-line schedule (`Tracker`), with backoff after errors and the 7-day horizon. Each look's
///   results go to the direction that submitted the transfer (`TransferFollower`), against the connector
///   id the transfer was sent with, whatever a reload changed since.
///
/// The tracking loop is `run()`, the daemon's part "connector <name>". Where no daemon runs it (`ferry
/// poll` without a daemon, tests), a direction waiting for its transfers runs it meanwhile
/// (`waitForTracking`); one loop at a time either way.
final class ConnectorService: Sendable {
    let name: String
    private let settings: Locked<ConnectorContext>
    /// Closed while the connector cannot take work (PENDING, ERRORED, another type than the rules say).
    let gate: ConnectorGate
    /// The request budget; nil when `pace` stands in for it (tests).
    private let limiter: RateLimiter?
    /// The in-flight budget; nil when `inFlight` stands in for it (tests).
    private let semaphore: AsyncSemaphore?
    private let paceBudget: @Sendable () async throws -> Void
    private let inFlight: InFlightGate
    private let health: DaemonHealth?
    private let logger: Logger
    private let tracker = Tracker()
    private struct Followed {
        var id: Int64
        var follower: TransferFollower
    }
    /// The transfers being followed, by transfer id.
    private let followed = Locked<[String: Followed]>([:])
    private let sequence = Locked<Int64>(0)
    /// Whether a tracking loop runs (`run` or a waiting direction's `waitForTracking`).
    private let looping = Locked(false)

    /// The daemon's service for a connector: budgets from its `requests_per_second` and `max_in_flight`.
    /// `limiter` is the one the connector's TransferClient holds off on a `RetryAfterSeconds`.
    convenience init(_ context: ConnectorContext, limiter: RateLimiter, health: DaemonHealth?, logger: Logger) {
        let gate = ConnectorGate()
        let semaphore = AsyncSemaphore(context.connector.maxInFlight)
        self.init(context, gate: gate, limiter: limiter, semaphore: semaphore,
                  pace: {
                      try await gate.waitUntilOpen()
                      try await limiter.acquire()
                  },
                  inFlight: InFlightGate(enter: { try await semaphore.wait() }, take: { await semaphore.take() }, leave: { await semaphore.signal() }),
                  health: health, logger: logger)
    }

    /// A service whose budgets are the caller's (`pace` before every Start* call, `inFlight` for
    /// transfers): `InboundConnection`'s public initializer and tests.
    convenience init(_ context: ConnectorContext, pace: @escaping @Sendable () async throws -> Void, inFlight: InFlightGate, logger: Logger) {
        self.init(context, gate: ConnectorGate(), limiter: nil, semaphore: nil, pace: pace, inFlight: inFlight, health: nil, logger: logger)
    }

    private init(_ context: ConnectorContext, gate: ConnectorGate, limiter: RateLimiter?, semaphore: AsyncSemaphore?,
                 pace: @escaping @Sendable () async throws -> Void, inFlight: InFlightGate, health: DaemonHealth?, logger: Logger) {
        name = context.connector.name
        settings = Locked(context)
        self.gate = gate
        self.limiter = limiter
        self.semaphore = semaphore
        paceBudget = pace
        self.inFlight = inFlight
        self.health = health
        self.logger = logger
    }

    /// The settings in force: connector id, staging, clients.
    var context: ConnectorContext { settings.withLock { $0 } }

    /// A reload: new work uses `context` at once; the budgets take its limits in place, so both
    /// directions and every generation of the rules keep sharing one.
    func update(_ context: ConnectorContext) async {
        settings.withLock { $0 = context }
        await limiter?.update(perSecond: context.connector.requestsPerSecond)
        await semaphore?.resize(to: context.connector.maxInFlight)
    }

    /// The limiter a throttled answer holds off (the daemon builds the connector's TransferClient with it).
    var requestLimiter: RateLimiter? { limiter }

    // MARK: Budgets and submission

    /// Waits until the connector may be asked (the gate is open) and a request may be made (the rate):
    /// before every Start* call of either direction.
    func pace() async throws {
        try await paceBudget()
    }

    /// Waits for an in-flight slot, then for the gate and a request token; returns the settings to make
    /// the call with, read at the last moment (a reload while the work waited sends it with the new
    /// connector id and clients). Throws only when cancelled, then holding nothing.
    func admit() async throws -> ConnectorContext {
        try await inFlight.enter()
        do {
            try await paceBudget()
        } catch {
            await inFlight.leave()
            throw error
        }
        return context
    }

    /// Gives back an admission that was not used (or whose transfer will never be tracked).
    func release() async {
        await inFlight.leave()
    }

    /// One StartFileTransfer for `request` through `context` (from `admit`), sent once: StartFileTransfer
    /// has no idempotency token, so only the caller, with its journal, may decide to ask again.
    func start(_ request: TransferRequest, on context: ConnectorContext) async -> StartResult {
        let connectorID = context.connector.connectorId
        do {
            let transferID: String
            switch request {
            case .send(let paths, let remoteDirectory):
                transferID = try await context.transfer.startFileTransfer(connectorId: connectorID, sendFilePaths: paths, remoteDirectoryPath: remoteDirectory)
            case .retrieve(let paths, let localDirectory):
                transferID = try await context.transfer.startFileTransfer(connectorId: connectorID, retrieveFilePaths: paths, localDirectoryPath: localDirectory)
            }
            health?.clear(accessKey)
            return .started(transferID: transferID)
        } catch is CancellationError {
            await inFlight.leave()
            return .stopped(CancellationError())
        } catch {
            await inFlight.leave()
            let aws = error as? AWSError
            let failure = SubmissionFailure(aws)
            if failure == .denied {
                let message = aws.map { "\($0.code): \($0.message)" } ?? "\(error)"
                let what = aws?.code == "ResourceNotFoundException"
                    ? "AWS does not know connector \(connectorID) (\(message)): check `connector_id` in the rules file and reload"
                    : "StartFileTransfer is denied (\(message)): check the credentials and their policy"
                logger.warning("StartFileTransfer refused for the connector itself: its work is held, no attempt spent",
                               metadata: ["connector": "\(name)", "connector.id": "\(connectorID)", "error": "\(message)"])
                health?.set(accessKey, "connector \(name): \(what); files are held, not quarantined, and go once a call is allowed")
            }
            return .failed(failure, error)
        }
    }

    private var accessKey: String { "access:\(name)" }

    // MARK: Tracking

    /// AWS keeps ListFileTransferResults for 7 days; a transfer older than that can no longer be learned.
    static let resultHorizon: TimeInterval = 7 * 86_400

    /// Follows transfer `transferID`, sent through `connectorID` at `submittedAt`, until `follower` says
    /// it is finished. `holdsSlot`: it was started through `admit`/`start` and holds its in-flight slot;
    /// otherwise (a transfer found started after a restart) it takes one without waiting. A transfer
    /// already followed keeps its place and slot and is from now on reported to `follower` (a later poll
    /// takes over from one that stopped waiting).
    func track(transferID: String, connectorID: String, submittedAt: Date, holdsSlot: Bool, follower: TransferFollower) async {
        let added = followed.withLock { followed -> Int64? in
            if followed[transferID] != nil {
                followed[transferID]?.follower = follower
                return nil
            }
            let id = sequence.withLock { next -> Int64 in
                next += 1
                return next
            }
            followed[transferID] = Followed(id: id, follower: follower)
            return id
        }
        guard let id = added else {
            if holdsSlot { await inFlight.leave() }
            return
        }
        if !holdsSlot { await inFlight.take() }
        await tracker.submitted(TrackedTransfer(id: id, connectorID: connectorID, transferID: transferID, submittedAt: submittedAt,
                                                backoff: Tracker.headFirstLook))
    }

    /// Transfers being followed (status, tests).
    var trackedCount: Int { followed.withLock { $0.count } }

    /// The daemon's part "connector <name>": the tracking loop, until cancelled.
    func run() async {
        while !Task.isCancelled {
            if claimLoop() {
                await trackDue(until: nil)
                looping.withLock { $0 = false }
            } else {
                // A direction runs the loop meanwhile (it started before this part): take over when it stops.
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Returns once `done()` holds (or the task is cancelled); runs the tracking loop meanwhile if
    /// nothing else does.
    func waitForTracking(until done: @escaping @Sendable () -> Bool) async {
        while !done() && !Task.isCancelled {
            if claimLoop() {
                await trackDue(until: done)
                looping.withLock { $0 = false }
            } else {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    private func claimLoop() -> Bool {
        looping.withLock { running in
            if running { return false }
            running = true
            return true
        }
    }

    /// Looks at transfers as they fall due, until `done()` holds (never, when nil) or cancellation.
    private func trackDue(until done: (@Sendable () -> Bool)?) async {
        while done?() != true {
            // A waiting direction's loop checks `done` at least every 100 ms.
            guard let due = await tracker.nextDue(notAfter: done == nil ? nil : ContinuousClock.now + .milliseconds(100)) else { return }
            guard !due.isEmpty else { continue }
            await withTaskGroup(of: Void.self) { group in
                for transfer in due {
                    group.addTask { await self.look(at: transfer) }
                }
            }
        }
    }

    private func look(at transfer: TrackedTransfer) async {
        guard let follower = followed.withLock({ $0[transfer.transferID]?.follower }) else { return }
        let look: TransferLook
        do {
            // The current clients, the connector id the transfer was sent with.
            look = .results(try await context.transfer.listFileTransferResults(connectorId: transfer.connectorID, transferId: transfer.transferID))
        } catch {
            if let aws = error as? AWSError, aws.code == "ResourceNotFoundException" {
                look = .lost(code: aws.code, why: "AWS no longer knows transfer \(transfer.transferID) (\(aws.message))")
            } else if Date().timeIntervalSince(transfer.submittedAt) > Self.resultHorizon {
                look = .lost(code: "ResultsExpired", why: "transfer \(transfer.transferID) is older than the 7 days AWS keeps results")
            } else {
                logger.warning("cannot read transfer results; will ask again", metadata: [
                    "connector": "\(name)", "connector.id": "\(transfer.connectorID)", "transfer.id": "\(transfer.transferID)", "error": "\(error)"])
                await tracker.add(transfer.backedOff(), due: .now + transfer.backedOff().backoff)
                return
            }
        }
        switch await follower.look(transfer, look) {
        case .finished:
            let ended = followed.withLock { $0.removeValue(forKey: transfer.transferID)?.follower.ended }
            await tracker.finished(transfer)
            await inFlight.leave()
            ended?()
        case .waiting:
            var settled: Int?
            if case .results(let results) = look {
                settled = results.count { $0.statusCode == .completed || $0.statusCode == .failed }
            }
            await tracker.notFinished(transfer, settledFiles: settled)
        case .retry:
            await tracker.add(transfer.backedOff(), due: .now + transfer.backedOff().backoff)
        }
    }
}
