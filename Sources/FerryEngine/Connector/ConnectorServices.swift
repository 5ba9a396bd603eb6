import FerryAWS

/// The Transfer Family operations a connector's work uses. FerryAWS's `TransferClient` is the real one;
/// the test targets implement it with fakes so that batching, retries, quarantine, in-doubt batches,
/// budgets and tracking can be tested in milliseconds, beside the end-to-end tests against the emulator.
///
/// Implementations keep `TransferClient`'s contract: a Start* call is sent once, and an error that is
/// not an `AWSError` with `outcome == .notStarted` means it may have started.
public protocol TransferService: Sendable {
    /// StartFileTransfer with SendFilePaths; returns the TransferId.
    func startFileTransfer(connectorId: String, sendFilePaths: [String], remoteDirectoryPath: String?) async throws -> String
    /// StartFileTransfer with RetrieveFilePaths into `localDirectoryPath` (`/bucket/prefix`); returns the TransferId.
    func startFileTransfer(connectorId: String, retrieveFilePaths: [String], localDirectoryPath: String) async throws -> String
    /// Every file's state in one transfer (all pages).
    func listFileTransferResults(connectorId: String, transferId: String) async throws -> [FileTransferResult]
    /// StartDirectoryListing into `<outputDirectoryPath>/<outputFileName>`.
    func startDirectoryListing(connectorId: String, remoteDirectoryPath: String, outputDirectoryPath: String,
                               maxItems: Int?) async throws -> (listingId: String, outputFileName: String)
    /// StartRemoteDelete; returns the DeleteId.
    func startRemoteDelete(connectorId: String, deletePath: String) async throws -> String
    /// StartRemoteMove; returns the MoveId.
    func startRemoteMove(connectorId: String, sourcePath: String, targetPath: String) async throws -> String
    /// DescribeConnector.
    func describeConnector(connectorId: String) async throws -> ConnectorDescription
}

/// The S3 operations on staging and inbound buckets that a connector's work uses. FerryAWS's `S3Client`
/// is the real one; test targets implement it with fakes (see `TransferService`).
public protocol StagingStore: Sendable {
    /// Where work on this store is best run (the real client's connection-pool thread); nil: anywhere.
    var preferredExecutor: (any TaskExecutor)? { get }
    /// Uploads `size` bytes from an open file the caller owns.
    func putObject(bucket: String, key: String, fileDescriptor fd: Int32, size: Int64, describedAs path: String) async throws -> PutObjectResult
    /// Downloads an object into a new file at `path`.
    func getObject(bucket: String, key: String, toFileAt path: String) async throws -> ObjectInfo
    /// The object's size and ETag; nil if it does not exist.
    func headObject(bucket: String, key: String) async throws -> ObjectInfo?
    /// Deletes up to 1,000 keys; returns the keys that could not be deleted, with why.
    func deleteObjects(bucket: String, keys: [String]) async throws -> [String: AWSError]
    /// Deletes one key (no error if it does not exist).
    func deleteObject(bucket: String, key: String) async throws
    /// Every object under `prefix`.
    func listObjectsV2(bucket: String, prefix: String) async throws -> [ObjectSummary]
}

extension TransferClient: TransferService {}

extension S3Client: StagingStore {
    public var preferredExecutor: (any TaskExecutor)? { executor }

    public func putObject(bucket: String, key: String, fileDescriptor fd: Int32, size: Int64, describedAs path: String) async throws -> PutObjectResult {
        try await putObject(bucket: bucket, key: key, fileDescriptor: fd, size: size, describedAs: path, ifNoneMatch: false)
    }
}
