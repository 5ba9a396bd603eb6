import FerryAWS
import FerryConfig
import FerryStore

/// What a failed StartFileTransfer means for its batch. StartFileTransfer has no idempotency token, so
/// the only safe resend is of a call that provably did not reach the service.
enum SubmissionFailure: Equatable {
    /// Not started: the service asked us to slow down, or could not be reached at all (connection
    /// refused, DNS, TLS). Resend after the wait, spending no attempt.
    case throttled(Duration)
    /// Not started: the credentials were refused or do not allow the call (expired or unknown keys, a
    /// policy that denies it), or AWS does not know the connector id (ResourceNotFoundException: a wrong
    /// or deleted `connector_id`). The connector's problem, not the batch's: every batch would fail
    /// alike, and spending their `retries` would quarantine every file for it. Held, like a PENDING
    /// connector. The same for both directions: a send's files keep their attempts, and so do a
    /// retrieval's.
    case denied
    /// Not started: the service refused the call for the request itself (validation). Counts toward
    /// `retries` (outbound) and the file's attempts (inbound).
    case refused
    /// Maybe started: no answer, a timeout, a 5xx, or an answer we could not read.
    case inDoubt

    /// FerryAWS decides whether the request may have reached the service (`AWSError.outcome`); this
    /// only sorts the not-started failures into those that count against the file and those that don't.
    init(_ error: AWSError?) {
        guard let error, error.outcome == .notStarted else {
            self = .inDoubt
            return
        }
        if error.isThrottling {
            self = .throttled(.milliseconds(Int((error.retryAfterSeconds ?? 10) * 1000)))
        } else if error.httpStatus == nil {
            self = .throttled(.seconds(10))  // unreachable: the file is not at fault
        } else if error.isAccessProblem || error.code == "ResourceNotFoundException" {
            // StartFileTransfer names one resource, the connector: "not found" is about it, not the paths.
            self = .denied
        } else {
            self = .refused
        }
    }
}

extension AWSError {
    /// AWS's answers meaning "these credentials may not do this", whatever is asked: unknown, expired or
    /// badly signed keys, and a policy denying the action. Not about the file or the batch at hand.
    static let accessProblemCodes: Set<String> = [
        "AccessDenied", "AccessDeniedException", "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId",
        "InvalidClientTokenId", "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch",
        "MissingAuthenticationTokenException", "IncompleteSignatureException", "AuthFailure", "RequestExpired",
    ]

    /// The credentials could not be had, or AWS refused them or what they may do.
    var isAccessProblem: Bool { kind == .credentials || Self.accessProblemCodes.contains(code) }
}

/// Matches ListFileTransferResults entries to the files of one transfer. AWS documents `FilePath` as
/// where the file "was sent to or retrieved from", so a send's result may name the S3 source (`/bucket/key`
/// or `bucket/key`) or the remote destination (`<remote directory>/<name>`): any of them matches.
/// Paths compare as bytes: NFC and NFD spellings of a name are different files.
struct ResultMatcher {
    private var byPath: [[UInt8]: Int64] = [:]

    init(files: [OutboundFile]) {
        for file in files {
            let source = "\(file.bucket ?? "")/\(file.key ?? "")"
            byPath[Array(("/" + source).utf8)] = file.id
            byPath[Array(source.utf8)] = file.id
            let name = (file.key ?? file.relativePath).split(separator: "/").last.map(String.init) ?? file.relativePath
            var directory = file.remoteDirectory ?? ""
            while directory.hasSuffix("/") { directory.removeLast() }
            if !directory.isEmpty {
                let remote = directory + "/" + name
                // A destination named twice in one transfer is ambiguous: match neither by it.
                if byPath[Array(remote.utf8)] != nil { byPath[Array(remote.utf8)] = -1 } else { byPath[Array(remote.utf8)] = file.id }
            }
        }
    }

    /// The file id a result's FilePath names, if exactly one.
    func file(for path: String) -> Int64? {
        guard let id = byPath[Array(path.utf8)], id >= 0 else { return nil }
        return id
    }
}
