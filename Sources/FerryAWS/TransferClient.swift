import Foundation

/// The state of one file of a connector transfer.
public struct FileTransferResult: Sendable, Equatable {
    /// The connector's per-file state; COMPLETED and FAILED are final.
    public enum Status: String, Sendable {
        case queued = "QUEUED", inProgress = "IN_PROGRESS", completed = "COMPLETED", failed = "FAILED"
    }
    public var filePath: String
    public var statusCode: Status
    public var failureCode: String?
    public var failureMessage: String?

    public init(filePath: String, statusCode: Status, failureCode: String? = nil, failureMessage: String? = nil) {
        self.filePath = filePath
        self.statusCode = statusCode
        self.failureCode = failureCode
        self.failureMessage = failureMessage
    }
}

/// DescribeConnector, reduced to what ferry uses.
public struct ConnectorDescription: Sendable, Equatable {
    public var connectorId: String
    public var arn: String?
    public var url: String?
    /// "sftp" or "as2", from which config block is present.
    public var type: String
    public var accessRole: String?
    public var loggingRole: String?
    public var trustedHostKeys: [String]
    public var maxConcurrentConnections: Int?
    /// ACTIVE, PENDING (being created or updated) or ERRORED (see `errorMessage`); required in the
    /// service model since 2025-10. Nil from an older endpoint that does not send it.
    public var status: String?
    /// Why the connector is ERRORED.
    public var errorMessage: String?
    /// SERVICE_MANAGED or VPC_LATTICE.
    public var egressType: String?
    /// The addresses the partner sees the connector's traffic come from (SERVICE_MANAGED egress).
    public var egressIPAddresses: [String]

    public init(connectorId: String, arn: String? = nil, url: String? = nil, type: String, accessRole: String? = nil,
                loggingRole: String? = nil, trustedHostKeys: [String] = [], maxConcurrentConnections: Int? = nil,
                status: String? = nil, errorMessage: String? = nil, egressType: String? = nil, egressIPAddresses: [String] = []) {
        self.connectorId = connectorId
        self.arn = arn
        self.url = url
        self.type = type
        self.accessRole = accessRole
        self.loggingRole = loggingRole
        self.trustedHostKeys = trustedHostKeys
        self.maxConcurrentConnections = maxConcurrentConnections
        self.status = status
        self.errorMessage = errorMessage
        self.egressType = egressType
        self.egressIPAddresses = egressIPAddresses
    }
}

/// TestConnection's answer.
public struct ConnectionTestResult: Sendable, Equatable {
    public var connectorId: String?
    /// "OK" or "ERROR".
    public var status: String
    public var statusMessage: String?
    /// The partner server's host key as the connector saw it (`SftpConnectionDetails.HostKey`).
    public var hostKey: String? = nil
    public var succeeded: Bool { status == "OK" }
}

/// AWS Transfer Family connector operations (JSON 1.1 protocol).
public struct TransferClient: Sendable {
    let client: AWSClient
    /// Told of every throttled attempt of this client's calls with the `RetryAfterSeconds` the service
    /// gave (nil if none): a connector's owner holds off all its calls, not just the throttled one.
    let onThrottled: (@Sendable (_ retryAfterSeconds: Double?) async -> Void)?

    public init(client: AWSClient, onThrottled: (@Sendable (_ retryAfterSeconds: Double?) async -> Void)? = nil) {
        self.client = client
        self.onThrottled = onThrottled
    }

    /// Operations that start work on the connector and take no idempotency token: each call is one
    /// attempt unless it provably did not start, and an error whose `outcome` is `.unknown` means the
    /// work may be under way. Every other operation here only reads, and retries as standard.
    static let startsWork: Set<String> = ["StartFileTransfer", "StartRemoteMove", "StartRemoteDelete"]

    /// The calls a connector's request budget paces, whose throttling `onThrottled` is told of. A
    /// throttled ListFileTransferResults or DescribeConnector says nothing about the Start* quota.
    static let paced: Set<String> = startsWork.union(["StartDirectoryListing"])

    private func call(_ operation: String, _ input: [String: Any]) async throws -> [String: Any] {
        let body = try JSONRequest.encode(input)
        var request = AWSOperationRequest(
            service: "transfer", operation: operation, method: "POST", path: "/",
            headers: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "TransferService.\(operation)")],
            body: .bytes(body), payloadHash: Crypto.hex(Crypto.sha256(body)))
        request.retryPolicy = Self.startsWork.contains(operation) ? .onlyIfNotStarted : .standard
        request.onThrottled = Self.paced.contains(operation) ? onThrottled : nil
        let response = try await client.send(request)
        guard let json = (response.body.isEmpty ? [:] : try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] else {
            throw invalidResponse(operation, "\(operation) answered with something that is not JSON", httpStatus: response.status)
        }
        return json
    }

    private func required(_ json: [String: Any], _ field: String, _ operation: String) throws -> String {
        guard let value = json[field] as? String else {
            throw invalidResponse(operation, "\(operation) answered without \(field)")
        }
        return value
    }

    /// A 2xx answer that cannot be used: the operation was accepted, so its outcome is `.unknown`.
    private func invalidResponse(_ operation: String, _ message: String, httpStatus: Int? = nil) -> AWSError {
        var error = AWSError(kind: .invalidResponse, code: "InvalidResponse", message: message, httpStatus: httpStatus,
                             operation: "transfer.\(operation)", outcome: .unknown)
        error.repeatIsHarmless = !Self.startsWork.contains(operation)
        return error
    }

    /// Sends files from S3 to the partner (at most 10 paths, `/bucket/key` form). Returns the TransferId.
    ///
    /// Sent once per call (StartFileTransfer has no idempotency token): retried inside the call only
    /// when the attempt provably did not start. An `AWSError` whose `outcome` is `.notStarted` means no
    /// transfer was created and the call may be made again; `.unknown` means one may have been (lost
    /// answer, timeout, 5xx): calling again may send the files twice. A `CancellationError` (the
    /// caller's task was cancelled while the request was in flight) is in doubt in the same way.
    public func startFileTransfer(connectorId: String, sendFilePaths: [String], remoteDirectoryPath: String?) async throws -> String {
        var input: [String: Any] = ["ConnectorId": connectorId, "SendFilePaths": sendFilePaths]
        if let remoteDirectoryPath { input["RemoteDirectoryPath"] = remoteDirectoryPath }
        return try required(try await call("StartFileTransfer", input), "TransferId", "StartFileTransfer")
    }

    /// Retrieves partner files into S3 (`/bucket/prefix`). Returns the TransferId. Sent once per call,
    /// as the send form is: see `AWSError.outcome`.
    public func startFileTransfer(connectorId: String, retrieveFilePaths: [String], localDirectoryPath: String) async throws -> String {
        let input: [String: Any] = ["ConnectorId": connectorId, "RetrieveFilePaths": retrieveFilePaths, "LocalDirectoryPath": localDirectoryPath]
        return try required(try await call("StartFileTransfer", input), "TransferId", "StartFileTransfer")
    }

    /// Every file's status in a transfer, through all pages.
    public func listFileTransferResults(connectorId: String, transferId: String) async throws -> [FileTransferResult] {
        var results: [FileTransferResult] = []
        var token: String?
        repeat {
            var input: [String: Any] = ["ConnectorId": connectorId, "TransferId": transferId]
            if let token { input["NextToken"] = token }
            let json = try await call("ListFileTransferResults", input)
            for item in json["FileTransferResults"] as? [[String: Any]] ?? [] {
                let code = item["StatusCode"] as? String ?? ""
                guard let status = FileTransferResult.Status(rawValue: code) else {
                    throw AWSError(kind: .invalidResponse, code: "InvalidResponse", message: "unknown file transfer status \(code)",
                                   operation: "transfer.ListFileTransferResults")
                }
                results.append(FileTransferResult(filePath: item["FilePath"] as? String ?? "", statusCode: status,
                                                  failureCode: item["FailureCode"] as? String, failureMessage: item["FailureMessage"] as? String))
            }
            token = (json["NextToken"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        } while token != nil
        return results
    }

    /// Lists one remote directory into `<outputDirectoryPath>/<connector>-<listing>.json` in S3.
    public func startDirectoryListing(connectorId: String, remoteDirectoryPath: String, outputDirectoryPath: String,
                                      maxItems: Int? = nil) async throws -> (listingId: String, outputFileName: String) {
        var input: [String: Any] = ["ConnectorId": connectorId, "RemoteDirectoryPath": remoteDirectoryPath, "OutputDirectoryPath": outputDirectoryPath]
        if let maxItems { input["MaxItems"] = maxItems }
        let json = try await call("StartDirectoryListing", input)
        return (try required(json, "ListingId", "StartDirectoryListing"), try required(json, "OutputFileName", "StartDirectoryListing"))
    }

    /// Deletes a remote file or empty directory. Returns the DeleteId. Sent once per call unless it
    /// provably did not start; see `AWSError.outcome`.
    public func startRemoteDelete(connectorId: String, deletePath: String) async throws -> String {
        try required(try await call("StartRemoteDelete", ["ConnectorId": connectorId, "DeletePath": deletePath]), "DeleteId", "StartRemoteDelete")
    }

    /// Renames a remote file. Returns the MoveId. Sent once per call unless it provably did not
    /// start; see `AWSError.outcome`.
    public func startRemoteMove(connectorId: String, sourcePath: String, targetPath: String) async throws -> String {
        try required(try await call("StartRemoteMove", ["ConnectorId": connectorId, "SourcePath": sourcePath, "TargetPath": targetPath]),
                     "MoveId", "StartRemoteMove")
    }

    public func describeConnector(connectorId: String) async throws -> ConnectorDescription {
        let json = try await call("DescribeConnector", ["ConnectorId": connectorId])
        guard let c = json["Connector"] as? [String: Any] else {
            throw AWSError(kind: .invalidResponse, code: "InvalidResponse", message: "DescribeConnector answered without Connector",
                           operation: "transfer.DescribeConnector")
        }
        let sftp = c["SftpConfig"] as? [String: Any]
        return ConnectorDescription(connectorId: c["ConnectorId"] as? String ?? connectorId, arn: c["Arn"] as? String, url: c["Url"] as? String,
                                    type: sftp != nil ? "sftp" : (c["As2Config"] != nil ? "as2" : "unknown"),
                                    accessRole: c["AccessRole"] as? String, loggingRole: c["LoggingRole"] as? String,
                                    trustedHostKeys: sftp?["TrustedHostKeys"] as? [String] ?? [],
                                    maxConcurrentConnections: (sftp?["MaxConcurrentConnections"] as? NSNumber)?.intValue,
                                    status: c["Status"] as? String, errorMessage: c["ErrorMessage"] as? String,
                                    egressType: c["EgressType"] as? String,
                                    egressIPAddresses: c["ServiceManagedEgressIpAddresses"] as? [String] ?? [])
    }

    public func testConnection(connectorId: String) async throws -> ConnectionTestResult {
        let json = try await call("TestConnection", ["ConnectorId": connectorId])
        return ConnectionTestResult(connectorId: json["ConnectorId"] as? String, status: json["Status"] as? String ?? "ERROR",
                                    statusMessage: json["StatusMessage"] as? String,
                                    hostKey: (json["SftpConnectionDetails"] as? [String: Any])?["HostKey"] as? String)
    }
}

/// The JSON of a request body. Transfer Family inputs are flat objects of strings, string lists and
/// integers, written here directly: JSONSerialization cost more than signing the request.
enum JSONRequest {
    static func encode(_ input: [String: Any]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        try write(input, to: &out)
        return out
    }

    private static func write(_ value: Any, to out: inout [UInt8]) throws {
        switch value {
        case let text as String:
            writeString(text, to: &out)
        case let number as Int:
            out += Array(String(number).utf8)
        case let flag as Bool:
            out += Array((flag ? "true" : "false").utf8)
        case let list as [Any]:
            out.append(UInt8(ascii: "["))
            for (index, item) in list.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                try write(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                try write(object[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        default:
            throw AWSError(kind: .configuration, code: "InvalidRequest", message: "cannot write \(type(of: value)) as JSON")
        }
    }

    private static func writeString(_ text: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case ..<0x20:
                out += Array("\\u00".utf8)
                out += [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default:
                out.append(byte)  // UTF-8 passes through: JSON text is UTF-8
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
