import FerryAWS
@testable import FerryEngine
import Foundation
import Synchronization

/// A connector and its buckets in memory, behind the engine's seams (`TransferService`, `StagingStore`):
/// the stage logic of both directions runs against it in milliseconds, with no emulator, sshd or network.
/// The end-to-end tests run the same code against the emulator; this fake is for the fast tests beside them.
///
/// It behaves as the connector does where the engine depends on it: a send copies staged objects to the
/// partner, a retrieve copies partner files into S3, a listing writes its JSON where it was asked, and
/// each transfer's files report QUEUED until it has been looked at `looksUntilDone` times. Each
/// StartFileTransfer can be given an answer in advance (`answers`), to play throttling, refusals and
/// lost answers.
final class FakeConnector: TransferService, StagingStore, @unchecked Sendable {
    /// How a scripted StartFileTransfer is answered.
    enum Answer: Sendable {
        /// Started (the default when nothing is scripted).
        case start
        /// ThrottlingException with RetryAfterSeconds: refused before any work.
        case throttle(retryAfterSeconds: Double)
        /// A 4xx refusal of the batch itself (validation): not started, and the batch's fault.
        case refuse
        /// AccessDeniedException: not started, and the credentials' fault, not the batch's.
        case deny
        /// ResourceNotFoundException for the connector id: not started, and the connector's fault (a
        /// wrong or deleted `connector_id`), not the batch's.
        case unknownConnector
        /// The transfer started but the answer was lost (the request was written, no reply came).
        case lostAnswer
    }

    struct Transfer {
        var id: String
        var connectorId: String
        var sendPaths: [String]
        var retrievePaths: [String]
        var localDirectory: String?
        var remoteDirectory: String?
        var looks = 0
        /// Files (by the path in the request) the partner fails, with the failure code.
        var failing: [String: String] = [:]
    }

    struct State {
        var objects: [String: Data] = [:]  // "bucket/key"
        var partner: [String: (data: Data, mtime: Date)] = [:]  // remote path
        var transfers: [String: Transfer] = [:]
        var order: [String] = []
        var answers: [Answer] = []
        var startCalls: [(connectorId: String, paths: [String])] = []
        var unfinished = 0
        var mostUnfinished = 0
        var listCalls = 0
        /// ListFileTransferResults calls by transfer id.
        var looksAt: [String: Int] = [:]
        /// Remote paths whose next retrieval fails (once each).
        var failNextRetrieval: Set<String> = []
        /// Staged keys (by file name) whose sends fail, every time.
        var failSends: [String: String] = [:]
        /// Transfers (by id) answered QUEUED, without counting a look, while this says so.
        var holdWhile: (@Sendable (String) -> Bool)?
    }

    let state = Mutex(State())
    /// How many ListFileTransferResults calls a transfer answers QUEUED before its files are final.
    let looksUntilDone: Int

    init(looksUntilDone: Int = 1) {
        self.looksUntilDone = looksUntilDone
    }

    /// The connector id the fake's rules name.
    static let connectorID = "c-0123456789abcdef0"

    /// The top of a rules file for tests against the fake: one SFTP connector named `partner` with
    /// `connectorLines` as more of its keys; rules follow the returned text.
    static func rulesHeader(stateDir: String, connectorLines: [String] = []) -> String {
        """
        version: 1
        state_dir: \(stateDir)
        aws:
          region: us-east-1
        connectors:
          partner:
            type: sftp
            connector_id: \(connectorID)
        \(connectorLines.map { "    " + $0 + "\n" }.joined())
        """
    }

    /// An `inbound:` section with one rule, `reports`, retrieving `/out/*.csv` from `partner` into
    /// s3://inbound/reports/ and `downloadTo`; polled only when a test asks.
    static func inboundRules(downloadTo: String) -> String {
        """
        inbound:
          - name: reports
            connector: partner
            remote_directory_path: /out
            schedule: "0 3 1 1 *"
            min_age: 0s
            include: ["*.csv"]
            local_directory_path: s3://inbound/reports/
            download_to: \(downloadTo)

        """
    }

    // MARK: What tests set and read

    func script(_ answers: [Answer]) { state.withLock { $0.answers = answers } }
    var startCalls: [[String]] { state.withLock { $0.startCalls.map(\.paths) } }
    var mostUnfinished: Int { state.withLock { $0.mostUnfinished } }
    func looks(at transferID: String) -> Int { state.withLock { $0.looksAt[transferID] ?? 0 } }
    func object(_ bucket: String, _ key: String) -> Data? { state.withLock { $0.objects["\(bucket)/\(key)"] } }
    func putOnPartner(_ path: String, _ data: Data, mtime: Date = Date(timeIntervalSinceNow: -3600)) {
        state.withLock { $0.partner[path] = (data, mtime) }
    }
    func partnerFile(_ path: String) -> Data? { state.withLock { $0.partner[path]?.data } }
    func listObjectsCount(bucket: String, prefix: String) -> Int {
        state.withLock { $0.objects.keys.filter { $0.hasPrefix("\(bucket)/\(prefix)") }.count }
    }

    // MARK: TransferService

    func startFileTransfer(connectorId: String, sendFilePaths: [String], remoteDirectoryPath: String?) async throws -> String {
        try start(Transfer(id: "", connectorId: connectorId, sendPaths: sendFilePaths, retrievePaths: [], remoteDirectory: remoteDirectoryPath))
    }

    func startFileTransfer(connectorId: String, retrieveFilePaths: [String], localDirectoryPath: String) async throws -> String {
        try start(Transfer(id: "", connectorId: connectorId, sendPaths: [], retrievePaths: retrieveFilePaths, localDirectory: localDirectoryPath))
    }

    private func start(_ request: Transfer) throws -> String {
        try state.withLock { state in
            state.startCalls.append((request.connectorId, request.sendPaths + request.retrievePaths))
            let answer = state.answers.isEmpty ? .start : state.answers.removeFirst()
            switch answer {
            case .throttle(let seconds):
                var error = AWSError(kind: .service, code: "ThrottlingException", message: "Rate exceeded", httpStatus: 400)
                error.retryAfterSeconds = seconds
                throw error
            case .refuse:
                throw AWSError(kind: .service, code: "ValidationException", message: "SendFilePaths is not valid", httpStatus: 400)
            case .deny:
                throw AWSError(kind: .service, code: "AccessDeniedException", message: "not allowed", httpStatus: 403)
            case .unknownConnector:
                throw AWSError(kind: .service, code: "ResourceNotFoundException", message: "Unknown connector \(request.connectorId)", httpStatus: 400)
            case .start, .lostAnswer:
                break
            }
            var transfer = request
            transfer.id = "t-\(state.order.count + 1)"
            for path in transfer.sendPaths {
                if let code = state.failSends[(path as NSString).lastPathComponent] { transfer.failing[path] = code }
            }
            for path in transfer.retrievePaths where state.failNextRetrieval.remove(path) != nil {
                transfer.failing[path] = "CONNECTION_ERROR"
            }
            state.transfers[transfer.id] = transfer
            state.order.append(transfer.id)
            state.unfinished += 1
            state.mostUnfinished = max(state.mostUnfinished, state.unfinished)
            if case .lostAnswer = answer {
                var lost = AWSError(kind: .network, code: "NetworkError", message: "connection closed before the answer")
                lost.outcome = .unknown
                throw lost
            }
            return transfer.id
        }
    }

    func listFileTransferResults(connectorId: String, transferId: String) async throws -> [FileTransferResult] {
        try state.withLock { state in
            state.listCalls += 1
            state.looksAt[transferId, default: 0] += 1
            guard var transfer = state.transfers[transferId], transfer.connectorId == connectorId else {
                throw AWSError(kind: .service, code: "ResourceNotFoundException", message: "Unknown transfer \(transferId)", httpStatus: 400)
            }
            if let hold = state.holdWhile, hold(transferId) {
                return (transfer.sendPaths + transfer.retrievePaths).map { FileTransferResult(filePath: $0, statusCode: .queued) }
            }
            transfer.looks += 1
            let paths = transfer.sendPaths + transfer.retrievePaths
            guard transfer.looks >= looksUntilDone else {
                state.transfers[transferId] = transfer
                return paths.map { FileTransferResult(filePath: $0, statusCode: .queued) }
            }
            if transfer.looks == looksUntilDone {
                Self.carryOut(transfer, in: &state)
                state.unfinished -= 1
            }
            state.transfers[transferId] = transfer
            return paths.map { path in
                if let code = transfer.failing[path] {
                    return FileTransferResult(filePath: path, statusCode: .failed, failureCode: code, failureMessage: "the fake partner failed it")
                }
                return FileTransferResult(filePath: path, statusCode: .completed)
            }
        }
    }

    /// What the partner does when a transfer's files are done.
    private static func carryOut(_ transfer: Transfer, in state: inout State) {
        for path in transfer.sendPaths where transfer.failing[path] == nil {
            let object = String(path.dropFirst())
            guard let data = state.objects[object] else { continue }
            let directory = transfer.remoteDirectory ?? "/"
            state.partner[(directory as NSString).appendingPathComponent((path as NSString).lastPathComponent)] = (data, Date())
        }
        for path in transfer.retrievePaths where transfer.failing[path] == nil {
            guard let file = state.partner[path], let local = transfer.localDirectory else { continue }
            let prefix = String(local.dropFirst())
            state.objects[(prefix.hasSuffix("/") ? prefix : prefix + "/") + (path as NSString).lastPathComponent] = file.data
        }
    }

    func startDirectoryListing(connectorId: String, remoteDirectoryPath: String, outputDirectoryPath: String,
                               maxItems: Int?) async throws -> (listingId: String, outputFileName: String) {
        state.withLock { state in
            let directory = remoteDirectoryPath.hasSuffix("/") ? remoteDirectoryPath : remoteDirectoryPath + "/"
            let formatter = ISO8601DateFormatter()
            let files = state.partner.filter { $0.key.hasPrefix(directory) && !$0.key.dropFirst(directory.count).contains("/") }
                .sorted { $0.key < $1.key }
                .map { ["filePath": $0.key, "size": $0.value.data.count, "modifiedTimestamp": formatter.string(from: $0.value.mtime)] as [String: Any] }
            let listingId = "l-\(state.order.count + state.listCalls)-\(UUID().uuidString.prefix(8))"
            let name = "\(connectorId)-\(listingId).json"
            let output = String(outputDirectoryPath.dropFirst())
            let body = try? JSONSerialization.data(withJSONObject: ["files": files, "paths": [], "truncated": false] as [String: Any])
            state.objects[(output.hasSuffix("/") ? output : output + "/") + name] = body
            return (listingId, name)
        }
    }

    func startRemoteDelete(connectorId: String, deletePath: String) async throws -> String {
        state.withLock { $0.partner[deletePath] = nil }
        return "d-1"
    }

    func startRemoteMove(connectorId: String, sourcePath: String, targetPath: String) async throws -> String {
        state.withLock {
            if let file = $0.partner.removeValue(forKey: sourcePath) { $0.partner[targetPath] = file }
        }
        return "m-1"
    }

    func describeConnector(connectorId: String) async throws -> ConnectorDescription {
        ConnectorDescription(connectorId: connectorId, type: "sftp", status: "ACTIVE")
    }

    // MARK: StagingStore

    var preferredExecutor: (any TaskExecutor)? { nil }

    func putObject(bucket: String, key: String, fileDescriptor fd: Int32, size: Int64, describedAs path: String) async throws -> PutObjectResult {
        var data = Data(count: Int(size))
        let read = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(size), 0) }
        guard read == Int(size) else {
            throw AWSError(kind: .localFile, code: "ReadFailed", message: "read \(read) of \(size) bytes of \(path)")
        }
        state.withLock { $0.objects["\(bucket)/\(key)"] = data }
        return PutObjectResult(eTag: Self.eTag(data), size: size)
    }

    func getObject(bucket: String, key: String, toFileAt path: String) async throws -> ObjectInfo {
        guard let data = object(bucket, key) else {
            throw AWSError(kind: .service, code: "NoSuchKey", message: "no \(key)", httpStatus: 404)
        }
        try data.write(to: URL(fileURLWithPath: path))
        return ObjectInfo(size: Int64(data.count), eTag: Self.eTag(data))
    }

    func headObject(bucket: String, key: String) async throws -> ObjectInfo? {
        object(bucket, key).map { ObjectInfo(size: Int64($0.count), eTag: Self.eTag($0), lastModified: Date()) }
    }

    func deleteObjects(bucket: String, keys: [String]) async throws -> [String: AWSError] {
        state.withLock { state in for key in keys { state.objects["\(bucket)/\(key)"] = nil } }
        return [:]
    }

    func deleteObject(bucket: String, key: String) async throws {
        state.withLock { $0.objects["\(bucket)/\(key)"] = nil }
    }

    func listObjectsV2(bucket: String, prefix: String) async throws -> [ObjectSummary] {
        state.withLock { state in
            state.objects.filter { $0.key.hasPrefix("\(bucket)/\(prefix)") }.sorted { $0.key < $1.key }.map {
                ObjectSummary(key: String($0.key.dropFirst(bucket.count + 1)), size: Int64($0.value.count), eTag: Self.eTag($0.value),
                              lastModified: Date())
            }
        }
    }

    /// Stands in for S3's MD5 ETag: equal bytes, equal tag.
    static func eTag(_ data: Data) -> String {
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in data { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return "\"\(String(hash, radix: 16))\""
    }
}
