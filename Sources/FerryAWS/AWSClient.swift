import FerrySystem
import Foundation
import Logging

/// Settings of an `AWSClient`: where to send requests and how hard to try.
public struct AWSClientConfiguration: Sendable {
    /// e.g. `us-east-1`.
    public var region: String
    /// One override for both Transfer Family and S3 (a VPC endpoint or the local emulator); S3 then
    /// uses path-style addressing.
    public var endpointURL: String?
    /// Profile in the shared config files; nil means `AWS_PROFILE` or `default`.
    public var profile: String?
    /// Extra CA certificates (PEM) trusted in addition to verification, which is always on.
    public var caBundle: String?
    /// Attempts per call, the first included (standard retry mode default: 3).
    public var maxAttempts: Int = 3
    public var connectTimeout: Duration = .seconds(10)
    /// A connection making no progress for this long is abandoned and the call retried.
    public var lowSpeedTimeout: Duration = .seconds(60)
    /// Requests on the wire at once; more wait in a queue.
    public var maxConcurrentRequests: Int = 32
    /// Uploads at least this large use multipart upload.
    public var multipartThreshold: Int64 = 64 << 20
    public var partSize: Int64 = 16 << 20
    /// Parts of one upload sent at once.
    public var partConcurrency: Int = 4
    /// Base of the exponential backoff (standard mode: 1 s cap 20 s; tests lower it).
    public var retryBaseDelay: Duration = .seconds(1)
    /// Environment used for credentials, proxies and config-file locations (tests pass their own).
    public var environment: [String: String]

    public init(region: String, endpointURL: String? = nil, profile: String? = nil, caBundle: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.region = region
        self.endpointURL = endpointURL
        self.profile = profile
        self.caBundle = caBundle
        self.environment = environment
    }
}

/// What went wrong with an AWS call, with what a user can do about it. Never holds secrets.
public struct AWSError: Error, CustomStringConvertible, Sendable {
    /// Where the failure happened, which decides what the user should look at.
    public enum Kind: String, Sendable {
        /// The service answered with an error.
        case service
        /// No usable response: connection refused, reset, DNS, TLS.
        case network
        /// No progress within the timeout.
        case timeout
        /// No credentials could be found or refreshed.
        case credentials
        /// The configuration is unusable (bad endpoint, region).
        case configuration
        /// Reading or writing a local file failed.
        case localFile
        /// The service's answer could not be understood.
        case invalidResponse
    }

    /// Whether the request may have reached the service and been acted on. For an operation whose
    /// repeat is not harmless (StartFileTransfer: a second transfer) this decides what the caller may do:
    /// after `.notStarted` it may send again; after `.unknown` the work may have been done.
    public enum Outcome: String, Sendable {
        /// The service did not act on the request: it never received it (connection refused, DNS,
        /// proxy or TLS handshake failure, credentials or configuration unusable before sending), or it
        /// received it and refused it with a 3xx/4xx answer (validation, access, throttling).
        case notStarted = "not_started"
        /// The service may have acted on it: the request was (or may have been) written and no
        /// conclusive answer came back: a timeout, the connection lost after sending, a 5xx, an answer
        /// that could not be understood (a 2xx without the expected fields). The work may be done.
        case unknown
    }

    public var kind: Kind
    /// Whether the service may have acted on the request; see `Outcome`. Decided where the failure is
    /// detected: anything not proven unsent is `.unknown`.
    public var outcome: Outcome
    /// The AWS error code (`NoSuchKey`, `ThrottlingException`) or a ferry code for local failures.
    public var code: String
    public var message: String
    public var httpStatus: Int?
    public var requestID: String?
    /// Seconds the service asked us to wait (ThrottlingException `RetryAfterSeconds`).
    public var retryAfterSeconds: Double?
    /// `service.operation`, when known.
    public var operation: String?
    /// For `.localFile`: the failed system call on the local file, with its errno.
    public var cause: SystemError?

    /// `outcome` defaults to what `kind` and `httpStatus` prove: a 3xx/4xx answer, credentials,
    /// configuration and local-file failures are `.notStarted`; everything else (network failures
    /// included, unless the caller knows the request was never sent) is `.unknown`.
    public init(kind: Kind, code: String, message: String, httpStatus: Int? = nil, requestID: String? = nil,
                operation: String? = nil, outcome: Outcome? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.requestID = requestID
        self.operation = operation
        self.outcome = outcome ?? Self.provenOutcome(kind: kind, httpStatus: httpStatus)
    }

    /// A failed system call on a local file (reading an upload's source): `.localFile`, code
    /// `LocalFileError`, the call's own message and errno.
    public init(localFile cause: SystemError) {
        self.init(kind: .localFile, code: "LocalFileError", message: cause.description)
        self.cause = cause
    }

    private static func provenOutcome(kind: Kind, httpStatus: Int?) -> Outcome {
        switch kind {
        case .credentials, .configuration, .localFile:
            return .notStarted
        case .service:
            // A refusal is decided before any work; a 5xx (or an error inside a 2xx) may come after it.
            guard let status = httpStatus, (300..<500).contains(status) else { return .unknown }
            return .notStarted
        case .network, .timeout, .invalidResponse:
            return .unknown
        }
    }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
        "ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded",
        "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException",
    ]
    static let transientCodes: Set<String> = ["RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable"]
    static let clockSkewCodes: Set<String> = ["RequestTimeTooSkewed", "RequestExpired", "InvalidSignatureException",
                                              "SignatureDoesNotMatch", "AuthFailure", "RequestInTheFuture"]

    /// False when the failed operation is one whose repeat is not harmless (StartFileTransfer,
    /// StartRemoteMove, StartRemoteDelete): set by `AWSClient` from the operation's retry policy.
    var repeatIsHarmless = true

    /// Whether sending the request again may help and cannot do harm, which is what `AWSClient`
    /// itself retries on: a transient failure (network, timeout, throttling, 5xx) of an operation whose
    /// repeat is harmless, or one that provably did not start (`outcome == .notStarted`) of any
    /// operation. A StartFileTransfer whose outcome is `.unknown` is never retryable: repeating it
    /// could send the files twice.
    public var isRetryable: Bool {
        isTransient && (repeatIsHarmless || outcome == .notStarted)
    }

    /// A failure that may pass if the request is sent again later (the standard retry mode's list).
    private var isTransient: Bool {
        switch kind {
        case .network, .timeout: return true
        case .service:
            if Self.throttlingCodes.contains(code) || Self.transientCodes.contains(code) { return true }
            return [500, 502, 503, 504].contains(httpStatus ?? 0)
        default: return false
        }
    }

    public var isThrottling: Bool { Self.throttlingCodes.contains(code) }

    public var description: String {
        var text = "\(operation.map { "\($0): " } ?? "")\(code)"
        if let status = httpStatus { text += " (HTTP \(status))" }
        text += ": \(message)"
        if let id = requestID { text += " [request id \(id)]" }
        if let hint { text += " — \(hint)" }
        if outcome == .unknown && !repeatIsHarmless {
            text += " — the service may have carried it out; it was not sent again"
        }
        return text
    }

    private var hint: String? {
        switch code {
        case "AccessDenied", "AccessDeniedException": return "check the IAM policy of the credentials in use"
        case "NoSuchBucket": return "check the bucket name and region in the rules file"
        case "InvalidAccessKeyId", "UnrecognizedClientException": return "the access key is not known to AWS; check the credentials chain (environment, profile)"
        case "SignatureDoesNotMatch": return "the secret key does not match the access key, or the system clock is wrong"
        case "ExpiredToken", "ExpiredTokenException": return "temporary credentials expired and could not be refreshed"
        default:
            switch kind {
            case .network: return "check network access to the endpoint, proxy settings (https_proxy, no_proxy) and DNS"
            case .timeout: return "the endpoint did not answer in time; check the network or raise the timeout"
            default: return nil
            }
        }
    }
}

/// One finished AWS call (after all its attempts), for metrics.
public struct AWSRequestRecord: Sendable {
    public var service: String
    public var operation: String
    /// HTTP status of the last attempt; nil when no response arrived.
    public var httpStatus: Int?
    /// AWS error code of the last attempt, nil on success.
    public var errorCode: String?
    public var attempts: Int
    public var retried: Bool { attempts > 1 }
    public var duration: Duration
}

/// Receives a record of every finished call (the engine turns them into Prometheus metrics).
public protocol AWSObserver: Sendable {
    func requestFinished(_ record: AWSRequestRecord)
    /// Told of every credentials refresh, successful or not (the engine makes `ferry status` degraded
    /// while refreshing keeps failing). The default does nothing.
    func credentialRefreshFinished(_ refresh: CredentialRefresh)
}

extension AWSObserver {
    public func credentialRefreshFinished(_ refresh: CredentialRefresh) {}
}

/// The outcome of one refresh of the credentials chain. Never holds secrets.
public struct CredentialRefresh: Sendable {
    /// The source that answered, or (after a failure) the one whose credentials are still in use or
    /// that was last chosen; nil when no source ever answered.
    public var source: String?
    /// When the credentials now in use expire (nil: long-term keys, or none usable).
    public var expiration: Date?
    /// Why the refresh failed; nil when it succeeded.
    public var error: AWSError?
    /// Failed refreshes in a row, this one included (0 after a success).
    public var consecutiveFailures: Int
    /// Until when requests still have valid credentials despite the failure; nil when they have none.
    public var usableUntil: Date?
    /// Seconds until the next refresh is tried, after a failure.
    public var nextAttemptIn: TimeInterval?
}

/// The standard retry mode's token bucket: retries spend tokens, successes refund them, so a long
/// outage drains the bucket and calls then fail fast instead of multiplying the load.
final class RetryQuota: @unchecked Sendable {
    static let capacity = 500
    static let retryCost = 5
    static let timeoutCost = 10
    private let lock = NSLock()
    private var available = RetryQuota.capacity
    private(set) var retriesGranted = 0
    private(set) var retriesRefused = 0

    /// Takes the cost of one retry; nil when the bucket cannot pay for it.
    func acquire(timeout: Bool) -> Int? {
        let cost = timeout ? Self.timeoutCost : Self.retryCost
        lock.lock()
        defer { lock.unlock() }
        guard available >= cost else { retriesRefused += 1; return nil }
        available -= cost
        retriesGranted += 1
        return cost
    }

    /// After a success: gives back what its retries cost, or one token if it needed none.
    func release(_ cost: Int) {
        lock.lock()
        available = min(Self.capacity, available + (cost > 0 ? cost : 1))
        lock.unlock()
    }

    var tokens: Int { lock.lock(); defer { lock.unlock() }; return available }
}

/// Statistics of the retry quota, for tests and the status command.
public struct AWSRetryStatistics: Sendable {
    public var retriesGranted: Int
    public var retriesRefusedByQuota: Int
    public var tokensAvailable: Int
}

/// How often one call of an operation may be sent, decided once per operation by the service
/// clients (TransferClient, S3Client) so that every caller gets the same guarantee.
enum AWSRetryPolicy: Sendable {
    /// Repeating the request is harmless: the standard retry mode retries network failures,
    /// timeouts, throttling and 5xx, and libcurl may resend it on a dead reused connection.
    case standard
    /// A repeat would do the work twice (StartFileTransfer has no idempotency token): one HTTP
    /// attempt per call, on a connection libcurl will not resend on. Sent again only when the attempt
    /// provably did not start: it never reached the service (connect, DNS, TLS) or was refused with a
    /// 4xx answer that says try again (throttling). A lost answer is the caller's to decide.
    case onlyIfNotStarted
}

/// A request before signing, as the service clients describe it.
struct AWSOperationRequest: Sendable {
    var service: String
    var operation: String
    var method: String
    /// For S3: the bucket (addressing is decided here); nil for other services.
    var bucket: String?
    /// Encoded path below the bucket (S3) or service root.
    var path: String
    var query: [(name: String, value: String)] = []
    var headers: [(name: String, value: String)] = []
    var body: HTTPBody = .empty
    var payloadHash: String = SigV4Signer.emptyHash
    var sink: HTTPResponseSink = .memory
    /// Called before each attempt (a download truncates its file).
    var beforeAttempt: (@Sendable () throws -> Void)?
    var retryPolicy: AWSRetryPolicy = .standard
    /// Told of every throttled attempt, with the service's `RetryAfterSeconds` if it gave one, before
    /// the client waits to retry or gives up: the caller's whole budget (not only this call) should
    /// hold off, since every other call to the same resource would be throttled too.
    var onThrottled: (@Sendable (_ retryAfterSeconds: Double?) async -> Void)?
}

/// The connection pool, credentials, retry quota and clock-skew correction shared by the S3 and
/// Transfer Family clients. Create one per process and call `shutdown()` at the end.
public final class AWSClient: Sendable {
    public let configuration: AWSClientConfiguration
    let logger: Logger
    let observer: AWSObserver?
    let http: HTTPClient
    let credentials: CredentialChain
    let quota = RetryQuota()
    private let skew: ClockSkew
    /// `endpoint_url` taken apart once: "scheme://host[:port][/prefix]".
    private let customEndpoint: (base: String, host: String, prefix: String)?

    public init(configuration: AWSClientConfiguration, logger: Logger, observer: AWSObserver? = nil) throws {
        guard configuration.maxAttempts >= 1 else {
            throw AWSError(kind: .configuration, code: "InvalidConfiguration", message: "max_attempts must be at least 1")
        }
        if let endpoint = configuration.endpointURL, !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
            throw AWSError(kind: .configuration, code: "InvalidEndpoint",
                           message: "endpoint_url \(endpoint) must start with http:// or https://")
        }
        self.configuration = configuration
        self.logger = logger
        self.observer = observer
        if let url = configuration.endpointURL {
            var base = url
            while base.hasSuffix("/") { base.removeLast() }
            let parts = base.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
            let host = parts.count > 2 ? String(parts[2]) : base
            customEndpoint = ("\(parts[0])//\(host)", host, parts.count > 3 ? "/" + parts[3] : "")
        } else {
            customEndpoint = nil
        }
        var settings = HTTPClientSettings()
        settings.maxConcurrentRequests = configuration.maxConcurrentRequests
        settings.connectTimeout = configuration.connectTimeout
        settings.lowSpeedTimeout = configuration.lowSpeedTimeout
        settings.caBundle = configuration.caBundle ?? configuration.environment["AWS_CA_BUNDLE"]
        settings.proxyEnvironment = configuration.environment
        http = HTTPClient(settings: settings)
        let skew = ClockSkew()
        self.skew = skew
        credentials = CredentialChain(environment: configuration.environment, profile: configuration.profile,
                                      region: configuration.region, http: http, logger: logger, clock: skew, observer: observer)
    }

    /// Stops the connection pool's thread. Calls made afterwards fail.
    public func shutdown() { http.shutdown() }

    // The pool's thread must be stopped before the pool is freed, even if shutdown() was forgotten.
    deinit { http.shutdown() }

    /// How the retry quota has been used so far.
    public var retryStatistics: AWSRetryStatistics {
        AWSRetryStatistics(retriesGranted: quota.retriesGranted, retriesRefusedByQuota: quota.retriesRefused, tokensAvailable: quota.tokens)
    }

    /// Shifts the signing clock, as if the system clock were off (tests of skew correction).
    func skewForTesting(seconds: TimeInterval) { skew.set(seconds) }

    /// The credentials calls are signed with now (refreshed as needed).
    public func resolveCredentials() async throws -> AWSCredentials { try await credentials.credentials() }

    /// How far AWS's clock was from this machine's in the last answer that carried a `Date` header
    /// (seconds, positive when AWS is ahead; `Date` has a resolution of one second); nil before any.
    public var measuredClockOffset: TimeInterval? { skew.lastMeasured }

    /// The offset requests are signed with and credential expiry is judged by.
    public var clockOffset: TimeInterval { skew.offsetSeconds }

    func endpoint(service: String, bucket: String?) -> (base: String, host: String, pathPrefix: String) {
        if let custom = customEndpoint {
            return (custom.base, custom.host, custom.prefix + (bucket.map { "/" + URIEncoding.encode($0) } ?? ""))
        }
        let region = configuration.region
        if service == "s3", let bucket {
            // Dotted bucket names do not match the wildcard certificate, so they go path-style.
            if bucket.contains(".") {
                let host = "s3.\(region).amazonaws.com"
                return ("https://\(host)", host, "/" + bucket)
            }
            let host = "\(bucket).s3.\(region).amazonaws.com"
            return ("https://\(host)", host, "")
        }
        let host = "\(service).\(region).amazonaws.com"
        return ("https://\(host)", host, "")
    }

    /// The executor of the connection pool's thread. Tasks that make many requests run fastest with it
    /// as their preference (`withTaskExecutorPreference`, `addTask(executorPreference:)`): their code
    /// then runs on the thread that drives the network, and no thread wake-up separates a request
    /// from its answer. Such tasks must not block (fsync, long computations): hop elsewhere for that.
    public var executor: any TaskExecutor { http }

    /// Sends one operation with signing, retries, the quota and clock-skew correction, on the
    /// connection pool's thread (see `executor`).
    func send(_ op: AWSOperationRequest) async throws -> HTTPResponse {
        try await withTaskExecutorPreference(http) { try await self.sendOnPoolThread(op) }
    }

    private func sendOnPoolThread(_ op: AWSOperationRequest) async throws -> HTTPResponse {
        let started = ContinuousClock.now
        var attempt = 0
        var retryCost = 0
        var skewRetried = false
        // Metadata is built only for lines that are written: a Logger copy per request showed in profiles.
        func log(_ level: Logger.Level, _ message: Logger.Message, _ metadata: @autoclosure () -> Logger.Metadata) {
            logger.log(level: level, message, metadata: metadata().merging(["aws.operation": "\(op.service).\(op.operation)"]) { a, _ in a })
        }
        let (base, host, prefix) = endpoint(service: op.service, bucket: op.bucket)
        let path = prefix + op.path
        while true {
            attempt += 1
            var failure: AWSError
            do {
                try op.beforeAttempt?()
                let creds: AWSCredentials
                do {
                    creds = try await credentials.credentials()
                } catch var e as AWSError {
                    e.outcome = .notStarted  // whatever failed (STS, IMDS), this request was not sent
                    throw e
                }
                let signer = SigV4Signer(service: op.service, region: configuration.region)
                let signable = SignableRequest(method: op.method, path: path.isEmpty ? "/" : path, query: op.query,
                                               headers: [("Host", host)] + op.headers, payloadHash: op.payloadHash)
                let signingDate = skew.now()
                let signed = signer.signHeaders(signable, credentials: creds, date: signingDate)
                var url = base
                url += signed.request.path
                if !op.query.isEmpty {
                    url += "?"
                    url += signed.request.encodedQuery
                }
                // Host goes out as signed: libcurl sends a Host header it is given instead of its own.
                let response = try await http.execute(HTTPRequest(method: op.method, url: url, headers: signed.request.headers,
                                                                  body: op.body, sink: op.sink,
                                                                  mayBeResentByTransport: op.retryPolicy == .standard))
                let serverDate = skew.observe(serverDate: response.header("date"))
                if response.status < 300 || (op.method == "HEAD" && response.status == 404) || response.status == 304 {
                    if let error = embeddedError(response, op) {
                        failure = error  // S3 may answer 200 with an <Error> body (CompleteMultipartUpload)
                    } else {
                        quota.release(retryCost)
                        report(op, status: response.status, code: nil, attempts: attempt, started: started)
                        return response
                    }
                } else {
                    failure = decodeError(response, op)
                    // A HEAD's 403 has no body to name the cause, so any 4xx with a skewed Date qualifies there.
                    let maybeSkew = AWSError.clockSkewCodes.contains(failure.code) || (op.method == "HEAD" && failure.httpStatus == 403)
                    // Signed more than 4 minutes away from the server's clock: `observe` has just adopted
                    // the server's clock, so one more attempt is signed right. This holds for every retry
                    // policy, the one-attempt rule of StartFileTransfer/StartRemoteMove/StartRemoteDelete
                    // included: a RequestTimeTooSkewed (or signature-expired) answer is the signature
                    // check refusing the request before any work, so the work cannot happen twice. Once
                    // per call, as the AWS SDKs do, and not paid from the retry quota.
                    if maybeSkew, !skewRetried, let serverDate, abs(serverDate.timeIntervalSince(signingDate)) > ClockSkew.retryThreshold {
                        skewRetried = true
                        log(.info, "corrected clock skew from the server's Date header", ["aws.clock_offset_s": "\(skew.offsetSeconds)"])
                        continue
                    }
                }
            } catch let error as HTTPTransportError where error.isShutDown {
                // Not a network failure: retrying would only wait for nothing.
                failure = AWSError(kind: .configuration, code: "ClientShutDown", message: error.message,
                                   operation: "\(op.service).\(op.operation)",
                                   outcome: error.requestMayHaveBeenSent ? .unknown : .notStarted)
            } catch let error as HTTPTransportError {
                failure = AWSError(kind: error.isTimeout ? .timeout : .network, code: error.isTimeout ? "Timeout" : "NetworkError",
                                   message: error.message, operation: "\(op.service).\(op.operation)",
                                   outcome: error.requestMayHaveBeenSent ? .unknown : .notStarted)
            } catch let error as AWSError {
                failure = error
            }
            failure.operation = failure.operation ?? "\(op.service).\(op.operation)"
            failure.repeatIsHarmless = op.retryPolicy == .standard
            if failure.isThrottling, let onThrottled = op.onThrottled { await onThrottled(failure.retryAfterSeconds) }
            let cap = 20.0
            // A wait longer than the backoff cap is not sat out inside one call: the caller gets the
            // error, with retryAfterSeconds, and decides when to come back.
            let asksTooLong = failure.isThrottling && (failure.retryAfterSeconds ?? 0) > cap
            guard failure.isRetryable, !asksTooLong, attempt < configuration.maxAttempts,
                  let cost = quota.acquire(timeout: failure.kind == .timeout) else {
                if failure.isRetryable, !asksTooLong, attempt < configuration.maxAttempts {
                    log(.debug, "retry quota exhausted; not retrying", ["aws.error": "\(failure.code)"])
                }
                report(op, status: failure.httpStatus, code: failure.code, attempts: attempt, started: started)
                throw failure
            }
            retryCost += cost
            var delay = Crypto.randomUnit() * min(pow(2.0, Double(attempt - 1)) * seconds(configuration.retryBaseDelay), cap)
            // Never sooner than the service asked: an earlier retry is only throttled again.
            if let after = failure.retryAfterSeconds, failure.isThrottling { delay = max(delay, after) }
            log(.debug, "retrying", ["aws.error": "\(failure.code)", "aws.attempt": "\(attempt)", "aws.delay_s": "\(delay)"])
            try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
        }
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    private func report(_ op: AWSOperationRequest, status: Int?, code: String?, attempts: Int, started: ContinuousClock.Instant) {
        observer?.requestFinished(AWSRequestRecord(service: op.service, operation: op.operation, httpStatus: status, errorCode: code,
                                                   attempts: attempts, duration: ContinuousClock.now - started))
    }

    private func embeddedError(_ response: HTTPResponse, _ op: AWSOperationRequest) -> AWSError? {
        guard op.service == "s3", op.method == "POST", response.status == 200, XMLElement.mayContainError(response.body),
              let root = XMLElement.parse(response.body), root.name == "Error" else { return nil }
        var error = AWSError(kind: .service, code: root.string("Code") ?? "InternalError", message: root.string("Message") ?? "",
                             httpStatus: 200, requestID: root.string("RequestId"))
        // An error inside a 200 is transient by definition (S3 documents it for CompleteMultipartUpload).
        if !error.isRetryable { error.code = "InternalError" }
        return error
    }

    func decodeError(_ response: HTTPResponse, _ op: AWSOperationRequest) -> AWSError {
        let requestID = response.header("x-amz-request-id") ?? response.header("x-amzn-requestid")
        var code: String?
        var message: String?
        var retryAfter: Double?
        if let root = XMLElement.parse(response.body), !response.body.isEmpty {
            let error = root.name == "Error" ? root : (root.find("Error") ?? root)
            code = error.string("Code")
            message = error.string("Message")
        } else if let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] {
            code = (json["__type"] as? String) ?? (json["code"] as? String)
            message = (json["message"] as? String) ?? (json["Message"] as? String)
            retryAfter = (json["RetryAfterSeconds"] as? NSNumber)?.doubleValue ?? (json["RetryAfterSeconds"] as? String).flatMap(Double.init)
        }
        if code == nil, let header = response.header("x-amzn-errortype") { code = header }
        // JSON protocols send "namespace#Code" and sometimes ":http://..." suffixes.
        if let c = code {
            code = String(c.split(separator: "#").last ?? Substring(c)).components(separatedBy: ":").first
        }
        let fallback: String
        switch response.status {
        case 301: fallback = "PermanentRedirect"
        case 304: fallback = "NotModified"
        case 400: fallback = "BadRequest"
        case 403: fallback = "AccessDenied"
        case 404: fallback = "NotFound"
        case 412: fallback = "PreconditionFailed"
        case 429: fallback = "TooManyRequestsException"
        case 500: fallback = "InternalError"
        case 503: fallback = "ServiceUnavailable"
        default: fallback = "HTTP\(response.status)"
        }
        var error = AWSError(kind: .service, code: code ?? fallback, message: message ?? "the service answered HTTP \(response.status)",
                             httpStatus: response.status, requestID: requestID, operation: "\(op.service).\(op.operation)")
        error.retryAfterSeconds = retryAfter
        return error
    }
}

/// The offset between our clock and AWS's, learnt from the `Date` header of every answer: requests
/// are signed with it and credential expiry is judged by it (AWS rejects by its own clock).
final class ClockSkew: @unchecked Sendable {
    /// A signature this far from the server's clock is the reason a request was refused; AWS allows 15 minutes.
    static let retryThreshold: TimeInterval = 240
    /// `Date` has a resolution of one second and the answer took time to arrive: smaller differences are noise.
    static let adoptThreshold: TimeInterval = 2
    private let lock = NSLock()
    private var offset: TimeInterval = 0
    private var measured: TimeInterval?
    /// The last `Date` text and its parsed value: most answers within a second carry the same one.
    private var lastText = ""
    private var lastDate: Date?

    var offsetSeconds: TimeInterval { lock.lock(); defer { lock.unlock() }; return offset }

    var lastMeasured: TimeInterval? { lock.lock(); defer { lock.unlock() }; return measured }

    func set(_ seconds: TimeInterval) { lock.lock(); offset = seconds; lock.unlock() }

    func now() -> Date { Date().addingTimeInterval(offsetSeconds) }

    /// Learns the server's clock from an answer's `Date`; returns that date (nil without a readable one).
    @discardableResult
    func observe(serverDate text: String?) -> Date? {
        guard let text else { return nil }
        lock.lock()
        defer { lock.unlock() }
        let date: Date
        if text == lastText, let lastDate {
            date = lastDate
        } else {
            guard let parsed = Self.parseHTTPDate(text) else { return nil }
            lastText = text
            lastDate = parsed
            date = parsed
        }
        let difference = date.timeIntervalSinceNow
        measured = difference
        if abs(difference - offset) > Self.adoptThreshold { offset = difference }
        return date
    }

    /// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110), the only form AWS sends, by
    /// position: it is read from every answer, and a DateFormatter costs more than the request's signing.
    static func parseHTTPDate(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 29, b[3] == UInt8(ascii: ","), b[28] == UInt8(ascii: "T") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                value = value * 10 + Int(b[i] - 48)
            }
            return value
        }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard let day = number(5..<7), let year = number(12..<16), let hour = number(17..<19), let minute = number(20..<22),
              let second = number(23..<25), let monthIndex = months.firstIndex(of: String(decoding: b[8..<11], as: UTF8.self)),
              (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
        let m = monthIndex + 1
        let y = m <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3_600 + minute * 60 + second))
    }
}
