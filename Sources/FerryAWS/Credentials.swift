import FerrySystem
import Foundation
internal import CFerrySys
import Logging

/// One source of credentials in the chain.
protocol CredentialProvider: Sendable {
    var name: String { get }
    /// nil when this source is not configured (the chain moves on); throws when it is configured but fails.
    func load() async throws -> AWSCredentials?
}

/// The AWS SDK default chain: environment, shared config/credentials profile (static keys,
/// credential_process, role_arn + source_profile, web identity), web identity from the environment,
/// container endpoint, EC2 IMDSv2. The first source that answers is remembered; its temporary
/// credentials are cached and refreshed 5 minutes before they expire, judged by AWS's clock (this
/// machine's corrected by the skew learned from responses' `Date`), since that is the clock AWS
/// rejects expired credentials by.
///
/// A refresh that fails is not tried again on every request: for months a daemon may be asking a
/// source that is down (IMDS, STS, a credential_process whose certificate expired). Until the next
/// attempt is due (1 s after the first failure, doubling up to `failureBackoffCap`) requests get the
/// current credentials while they are still valid, else the remembered error at once.
actor CredentialChain {
    static let refreshWindow: TimeInterval = 300
    static let failureBackoffBase: TimeInterval = 1
    /// Short enough that credentials still valid for a few minutes are replaced before they expire.
    static let failureBackoffCap: TimeInterval = 60
    private let providers: [CredentialProvider]
    private let logger: Logger
    private let clock: ClockSkew
    private let observer: AWSObserver?
    private var cached: AWSCredentials?
    private var chosen: CredentialProvider?
    private var refreshing: Task<AWSCredentials, Error>?
    /// The last failed refresh: its error, how many failed in a row, when the next may be tried.
    private var failure: (error: AWSError, count: Int, retryAt: ContinuousClock.Instant)?
    /// How many times a source was asked (tests check caching with it).
    private(set) var loads = 0

    init(environment: [String: String], profile: String?, region: String, http: HTTPClient, logger: Logger,
         clock: ClockSkew = ClockSkew(), observer: AWSObserver? = nil) {
        let context = CredentialContext(environment: environment, region: region, http: http)
        var list: [CredentialProvider] = []
        // An explicitly configured profile wins over keys in the environment, as in the SDKs.
        if profile == nil { list.append(EnvironmentCredentials(environment: environment)) }
        list.append(ProfileCredentials(context: context, profileName: profile ?? environment["AWS_PROFILE"] ?? "default",
                                       explicit: profile != nil || environment["AWS_PROFILE"] != nil))
        list.append(WebIdentityCredentials(context: context, tokenFile: environment["AWS_WEB_IDENTITY_TOKEN_FILE"],
                                           roleArn: environment["AWS_ROLE_ARN"], sessionName: environment["AWS_ROLE_SESSION_NAME"]))
        list.append(ContainerCredentials(context: context))
        list.append(InstanceMetadataCredentials(context: context))
        providers = list
        self.logger = logger
        self.clock = clock
        self.observer = observer
    }

    init(providers: [CredentialProvider], logger: Logger, clock: ClockSkew = ClockSkew(), observer: AWSObserver? = nil) {
        self.providers = providers
        self.logger = logger
        self.clock = clock
        self.observer = observer
    }

    var loadCount: Int { loads }

    /// Current credentials read without hopping onto the actor: every request asks, and a hop
    /// per request showed up as thread switches in the upload benchmark.
    private nonisolated let fastPath = CachedCredentials()

    nonisolated func credentials() async throws -> AWSCredentials {
        if let current = fastPath.get(), !Self.needsRefresh(current, awsNow: clock.now()) { return current }
        return try await refreshIfNeeded()
    }

    private func refreshIfNeeded() async throws -> AWSCredentials {
        if let cached, !Self.needsRefresh(cached, awsNow: clock.now()) { return cached }
        if let failure, ContinuousClock.now < failure.retryAt {
            if let usable = cached, !Self.isExpired(usable, awsNow: clock.now()) { return usable }
            throw failure.error
        }
        if let refreshing { return try await refreshing.value }
        let task = Task { try await self.refresh() }
        refreshing = task
        defer { refreshing = nil }
        return try await task.value
    }

    private static func needsRefresh(_ c: AWSCredentials, awsNow: Date) -> Bool {
        guard let expiration = c.expiration else { return false }
        return awsNow >= expiration.addingTimeInterval(-Self.refreshWindow)
    }

    private static func isExpired(_ c: AWSCredentials, awsNow: Date) -> Bool {
        guard let expiration = c.expiration else { return false }
        return awsNow >= expiration
    }

    private func refresh() async throws -> AWSCredentials {
        let fresh: AWSCredentials
        do {
            fresh = try await resolve()
            // botocore's "refreshed credentials are still expired": signing with them would only earn
            // ExpiredToken from AWS, a less helpful message than this one.
            if let expiration = fresh.expiration, Self.isExpired(fresh, awsNow: clock.now()) {
                throw AWSError(kind: .credentials, code: "ExpiredCredentials",
                               message: "\(fresh.source) gave credentials that expired at \(Self.timestamp(expiration)) (AWS's time is now \(Self.timestamp(clock.now()))); "
                                   + "renew them at their source (the credential process's certificate or session, the profile's session token) or fix the system clock")
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let awsError = error as? AWSError
                ?? AWSError(kind: .credentials, code: "CredentialsFailed", message: "\(error)")
            return try failed(awsError)
        }
        failure = nil
        cached = fresh
        fastPath.set(fresh)
        logger.debug("credentials loaded", metadata: ["aws.credentials.source": "\(fresh.source)",
                                                       "aws.credentials.access_key_id": "\(fresh.accessKeyId)"])
        observer?.credentialRefreshFinished(CredentialRefresh(source: fresh.source, expiration: fresh.expiration, error: nil,
                                                              consecutiveFailures: 0, usableUntil: fresh.expiration, nextAttemptIn: nil))
        return fresh
    }

    /// Remembers a failed refresh and when to try again; returns the current credentials while they are valid.
    private func failed(_ error: AWSError) throws -> AWSCredentials {
        let count = (failure?.count ?? 0) + 1
        let delay = min(Self.failureBackoffBase * pow(2, Double(count - 1)), Self.failureBackoffCap)
        failure = (error, count, ContinuousClock.now.advanced(by: .milliseconds(Int(delay * 1000))))
        let usable = cached.flatMap { Self.isExpired($0, awsNow: clock.now()) ? nil : $0 }
        observer?.credentialRefreshFinished(CredentialRefresh(source: usable?.source ?? chosen?.name, expiration: usable?.expiration, error: error,
                                                              consecutiveFailures: count, usableUntil: usable?.expiration, nextAttemptIn: delay))
        var metadata: Logger.Metadata = ["error": "\(error)", "aws.credentials.failures": "\(count)", "aws.credentials.retry_in_s": "\(delay)"]
        if let usable, let expiration = usable.expiration {
            metadata["aws.credentials.source"] = "\(usable.source)"
            metadata["aws.credentials.expires"] = "\(Self.timestamp(expiration))"
            logger.warning("refreshing credentials failed; using the current ones until they expire", metadata: metadata)
            return usable
        }
        logger.warning("no usable AWS credentials; requests fail until a refresh succeeds", metadata: metadata)
        throw error
    }

    private static func timestamp(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }

    private func resolve() async throws -> AWSCredentials {
        if let chosen {
            loads += 1
            if let c = try await chosen.load() { return c }
        }
        var tried: [String] = []
        for provider in providers {
            loads += 1
            if let c = try await provider.load() {
                chosen = provider
                return c
            }
            tried.append(provider.name)
        }
        throw AWSError(kind: .credentials, code: "NoCredentials",
                       message: "no AWS credentials found (tried: \(tried.joined(separator: ", "))); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                           + "configure a profile in ~/.aws/config (or AWS_CONFIG_FILE), or run on an instance/container with a role")
    }
}

/// A lock-protected copy of the chain's current credentials.
final class CachedCredentials: @unchecked Sendable {
    private let lock = NSLock()
    private var value: AWSCredentials?
    func get() -> AWSCredentials? { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ new: AWSCredentials) { lock.lock(); value = new; lock.unlock() }
}

/// What the providers share: the environment, the region and the HTTP pool.
struct CredentialContext: Sendable {
    var environment: [String: String]
    var region: String
    var http: HTTPClient

    var home: String { environment["HOME"] ?? NSHomeDirectory() }

    func expandHome(_ path: String) -> String {
        path.hasPrefix("~/") ? home + path.dropFirst(1) : path
    }

    func readProfiles() throws -> AWSProfileFile {
        let configPath = expandHome(environment["AWS_CONFIG_FILE"] ?? "~/.aws/config")
        let credentialsPath = expandHome(environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "~/.aws/credentials")
        return try AWSProfileFile.parse(config: try? String(contentsOfFile: configPath, encoding: .utf8),
                                        credentials: try? String(contentsOfFile: credentialsPath, encoding: .utf8),
                                        configPath: configPath, credentialsPath: credentialsPath)
    }

    static func parseDate(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)
    }

    /// STS (AssumeRole, AssumeRoleWithWebIdentity): Query protocol, XML answer.
    func callSTS(action: String, parameters: [(String, String)], signWith credentials: AWSCredentials?, source: String) async throws -> AWSCredentials {
        let endpoint = environment["AWS_ENDPOINT_URL_STS"] ?? environment["AWS_ENDPOINT_URL"] ?? "https://sts.\(region).amazonaws.com"
        var base = endpoint
        while base.hasSuffix("/") { base.removeLast() }
        let host = base.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? base
        let form = ([("Action", action), ("Version", "2011-06-15")] + parameters)
            .map { URIEncoding.encode($0.0) + "=" + URIEncoding.encode($0.1) }.joined(separator: "&")
        let body = Array(form.utf8)
        var headers: [(name: String, value: String)] = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
        if let credentials {
            let signer = SigV4Signer(service: "sts", region: region)
            let signed = signer.signHeaders(SignableRequest(method: "POST", path: "/", query: [], headers: [("Host", host)] + headers,
                                                            payloadHash: Crypto.hex(Crypto.sha256(body))),
                                            credentials: credentials, date: Date())
            headers = signed.request.headers  // Host included: libcurl sends the one it is given, as signed
        }
        let response: HTTPResponse
        do {
            response = try await http.execute(HTTPRequest(method: "POST", url: base + "/", headers: headers, body: .bytes(body), timeout: .seconds(30)))
        } catch let error as HTTPTransportError {
            throw AWSError(kind: .credentials, code: "STSUnreachable", message: "\(source): could not reach STS at \(base): \(error.message)")
        }
        let root = XMLElement.parse(response.body)
        guard response.status == 200, let c = root?.find("\(action)Result", "Credentials"),
              let id = c.string("AccessKeyId"), let secret = c.string("SecretAccessKey") else {
            let error = root?.find("Error")
            throw AWSError(kind: .credentials, code: error?.string("Code") ?? "STSError",
                           message: "\(source): STS \(action) failed: \(error?.string("Message") ?? "HTTP \(response.status)")",
                           httpStatus: response.status)
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: c.string("SessionToken"),
                              expiration: c.string("Expiration").flatMap(Self.parseDate), source: source)
    }

    /// GET a JSON credentials document ({AccessKeyId, SecretAccessKey, Token, Expiration}).
    func fetchJSONCredentials(url: String, headers: [(name: String, value: String)], source: String) async throws -> AWSCredentials {
        let response: HTTPResponse
        do {
            response = try await http.execute(HTTPRequest(method: "GET", url: url, headers: headers, timeout: .seconds(5)))
        } catch let error as HTTPTransportError {
            throw AWSError(kind: .credentials, code: "CredentialsEndpointUnreachable", message: "\(source): \(url): \(error.message)")
        }
        guard response.status == 200,
              let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let id = json["AccessKeyId"] as? String, let secret = json["SecretAccessKey"] as? String else {
            throw AWSError(kind: .credentials, code: "InvalidCredentialsResponse",
                           message: "\(source): \(url) answered HTTP \(response.status) without credentials", httpStatus: response.status)
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: json["Token"] as? String,
                              expiration: (json["Expiration"] as? String).flatMap(Self.parseDate), source: source)
    }
}

struct EnvironmentCredentials: CredentialProvider {
    let environment: [String: String]
    var name: String { "environment" }

    func load() async throws -> AWSCredentials? {
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty else { return nil }
        guard let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
            throw AWSError(kind: .credentials, code: "IncompleteCredentials",
                           message: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both or neither")
        }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token, source: "environment")
    }
}

struct ProfileCredentials: CredentialProvider {
    let context: CredentialContext
    let profileName: String
    /// Named by the user: a missing profile is then an error rather than "not configured".
    let explicit: Bool
    var name: String { "profile \(profileName)" }

    func load() async throws -> AWSCredentials? {
        let file: AWSProfileFile
        do { file = try context.readProfiles() } catch {
            throw AWSError(kind: .credentials, code: "InvalidProfileFile", message: "\(error)")
        }
        guard file.profiles[profileName] != nil else {
            if explicit {
                throw AWSError(kind: .credentials, code: "ProfileNotFound",
                               message: "profile \(profileName) is not in the config or credentials file (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)")
            }
            return nil
        }
        return try await resolve(profileName, file: file, visited: [])
    }

    private func resolve(_ name: String, file: AWSProfileFile, visited: [String]) async throws -> AWSCredentials? {
        guard let p = file.profiles[name] else {
            throw AWSError(kind: .credentials, code: "ProfileNotFound", message: "source_profile \(name) (used by \(visited.last ?? name)) does not exist")
        }
        if visited.contains(name) {
            // A profile may be its own source only through static keys.
            if let c = staticKeys(p, name) { return c }
            throw AWSError(kind: .credentials, code: "ProfileCycle", message: "source_profile chain loops: \((visited + [name]).joined(separator: " → "))")
        }
        if let role = p["role_arn"] {
            let session = p["role_session_name"] ?? "ferry-\(Int(Date().timeIntervalSince1970))"
            if let tokenFile = p["web_identity_token_file"] {
                return try await WebIdentityCredentials(context: context, tokenFile: tokenFile, roleArn: role, sessionName: session).load()
            }
            let sourceCredentials: AWSCredentials?
            if let source = p["source_profile"] {
                sourceCredentials = try await resolve(source, file: file, visited: visited + [name])
            } else if let source = p["credential_source"] {
                switch source {
                case "Environment": sourceCredentials = try await EnvironmentCredentials(environment: context.environment).load()
                case "EcsContainer": sourceCredentials = try await ContainerCredentials(context: context).load()
                case "Ec2InstanceMetadata": sourceCredentials = try await InstanceMetadataCredentials(context: context).load()
                default:
                    throw AWSError(kind: .credentials, code: "InvalidCredentialSource",
                                   message: "profile \(name): credential_source \(source) is not Environment, EcsContainer or Ec2InstanceMetadata")
                }
            } else {
                throw AWSError(kind: .credentials, code: "InvalidProfile", message: "profile \(name) has role_arn but no source_profile or credential_source")
            }
            guard let sourceCredentials else {
                throw AWSError(kind: .credentials, code: "NoSourceCredentials", message: "profile \(name): the source of role \(role) has no credentials")
            }
            var parameters = [("RoleArn", role), ("RoleSessionName", session)]
            if let externalID = p["external_id"] { parameters.append(("ExternalId", externalID)) }
            if let duration = p["duration_seconds"] { parameters.append(("DurationSeconds", duration)) }
            return try await context.callSTS(action: "AssumeRole", parameters: parameters, signWith: sourceCredentials,
                                             source: "profile \(name) (assume role)")
        }
        if let command = p["credential_process"] {
            return try await CredentialProcess(command: command, profile: name).run()
        }
        return staticKeys(p, name)
    }

    private func staticKeys(_ p: [String: String], _ name: String) -> AWSCredentials? {
        guard let id = p["aws_access_key_id"], let secret = p["aws_secret_access_key"] else { return nil }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: p["aws_session_token"], source: "profile \(name)")
    }
}

/// `credential_process`: a command printing `{"Version":1,"AccessKeyId":…}` (IAM Roles Anywhere's
/// aws_signing_helper is the usual one on premises).
struct CredentialProcess: Sendable {
    let command: String
    let profile: String

    func run() async throws -> AWSCredentials {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let source = "credential_process of profile \(profile)"
        // Close-on-exec pipes, not Foundation's Pipe(): a child that another thread spawns meanwhile (an
        // alert command, another credential_process) would otherwise inherit the write ends, and the
        // reads below would wait for that child to exit, not this one.
        guard let out = CloexecPipe(), let err = CloexecPipe() else {
            throw AWSError(kind: .credentials, code: "CredentialProcessFailed", message: "\(source) could not start: \(SystemError.last("pipe"))")
        }
        process.standardOutput = out.writing
        process.standardError = err.writing
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw AWSError(kind: .credentials, code: "CredentialProcessFailed", message: "\(source) could not start: \(error)")
        }
        // The child has its copies; ours must go, or the reads below never see the end.
        try? out.writing.close()
        try? err.writing.close()
        // Read both pipes off the cooperative pool: the child may write a lot to either.
        let (stdout, stderr) = await withCheckedContinuation { (c: CheckedContinuation<(Data, Data), Never>) in
            Thread {
                nonisolated(unsafe) var errData = Data()
                let reader = Thread { errData = err.reading.readDataToEndOfFile() }
                reader.start()
                let outData = out.reading.readDataToEndOfFile()
                while !reader.isFinished { usleep(1000) }
                process.waitUntilExit()
                c.resume(returning: (outData, errData))
            }.start()
        }
        let firstCommandWord = command.split(separator: " ").first.map(String.init) ?? command
        guard process.terminationStatus == 0 else {
            let detail = String(decoding: stderr.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw AWSError(kind: .credentials, code: "CredentialProcessFailed",
                           message: "\(source) (\(firstCommandWord)) exited with status \(process.terminationStatus)"
                               + (detail.isEmpty ? "" : ": \(detail)"))
        }
        guard let json = try? JSONSerialization.jsonObject(with: stdout) as? [String: Any] else {
            throw AWSError(kind: .credentials, code: "CredentialProcessInvalidOutput",
                           message: "\(source) (\(firstCommandWord)) did not print a JSON object on stdout")
        }
        guard (json["Version"] as? Int) == 1 else {
            throw AWSError(kind: .credentials, code: "CredentialProcessInvalidOutput",
                           message: "\(source) printed Version \(json["Version"].map { "\($0)" } ?? "(missing)"); only Version 1 is supported")
        }
        guard let id = json["AccessKeyId"] as? String, let secret = json["SecretAccessKey"] as? String else {
            throw AWSError(kind: .credentials, code: "CredentialProcessInvalidOutput",
                           message: "\(source) printed JSON without AccessKeyId and SecretAccessKey")
        }
        var expiration: Date?
        if let text = json["Expiration"] as? String {
            guard let date = CredentialContext.parseDate(text) else {
                throw AWSError(kind: .credentials, code: "CredentialProcessInvalidOutput",
                               message: "\(source) printed an Expiration that is not an ISO 8601 time")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: json["SessionToken"] as? String,
                              expiration: expiration, source: source)
    }
}

struct WebIdentityCredentials: CredentialProvider {
    let context: CredentialContext
    let tokenFile: String?
    let roleArn: String?
    let sessionName: String?
    var name: String { "web identity" }

    func load() async throws -> AWSCredentials? {
        guard let tokenFile, let roleArn else { return nil }
        guard let token = try? String(contentsOfFile: context.expandHome(tokenFile), encoding: .utf8) else {
            throw AWSError(kind: .credentials, code: "WebIdentityTokenUnreadable", message: "web identity token file \(tokenFile) cannot be read")
        }
        return try await context.callSTS(action: "AssumeRoleWithWebIdentity",
                                         parameters: [("RoleArn", roleArn), ("RoleSessionName", sessionName ?? "ferry-\(Int(Date().timeIntervalSince1970))"),
                                                      ("WebIdentityToken", token.trimmingCharacters(in: .whitespacesAndNewlines))],
                                         signWith: nil, source: "web identity")
    }
}

struct ContainerCredentials: CredentialProvider {
    let context: CredentialContext
    var name: String { "container" }

    func load() async throws -> AWSCredentials? {
        let env = context.environment
        let url: String
        if let relative = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] {
            url = "http://169.254.170.2" + relative
        } else if let full = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
            let host = full.split(separator: "/").dropFirst().first.map { String($0.split(separator: ":").first ?? $0) } ?? ""
            let allowed = full.hasPrefix("https://") || ["127.0.0.1", "localhost", "[::1]", "169.254.170.2", "169.254.170.23"].contains(host)
            guard allowed else {
                throw AWSError(kind: .credentials, code: "InvalidContainerEndpoint",
                               message: "AWS_CONTAINER_CREDENTIALS_FULL_URI must use https or a loopback/ECS/EKS address, not \(host)")
            }
            url = full
        } else {
            return nil
        }
        var headers: [(name: String, value: String)] = []
        if let file = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] {
            guard let token = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw AWSError(kind: .credentials, code: "ContainerTokenUnreadable", message: "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(file) cannot be read")
            }
            headers.append(("Authorization", token.trimmingCharacters(in: .whitespacesAndNewlines)))
        } else if let token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] {
            headers.append(("Authorization", token))
        }
        return try await context.fetchJSONCredentials(url: url, headers: headers, source: "container")
    }
}

struct InstanceMetadataCredentials: CredentialProvider {
    let context: CredentialContext
    var name: String { "EC2 instance metadata" }

    func load() async throws -> AWSCredentials? {
        let env = context.environment
        if env["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" { return nil }
        var base = env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254"
        while base.hasSuffix("/") { base.removeLast() }
        let tokenResponse: HTTPResponse
        do {
            tokenResponse = try await context.http.execute(HTTPRequest(method: "PUT", url: base + "/latest/api/token",
                                                                       headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                                                                       timeout: .seconds(1)))
        } catch {
            return nil  // not on EC2 (or IMDS switched off): the chain simply has nothing here
        }
        guard tokenResponse.status == 200 else { return nil }
        let token = String(decoding: tokenResponse.body, as: UTF8.self)
        let headers: [(name: String, value: String)] = [("X-aws-ec2-metadata-token", token)]
        let roleURL = base + "/latest/meta-data/iam/security-credentials/"
        let roles: HTTPResponse
        do {
            roles = try await context.http.execute(HTTPRequest(method: "GET", url: roleURL, headers: headers, timeout: .seconds(2)))
        } catch let error as HTTPTransportError {
            throw AWSError(kind: .credentials, code: "IMDSUnreachable", message: "EC2 instance metadata: \(error.message)")
        }
        let role = String(decoding: roles.body, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        guard roles.status == 200, !role.isEmpty else {
            throw AWSError(kind: .credentials, code: "NoInstanceRole",
                           message: "EC2 instance metadata has no IAM role (HTTP \(roles.status)); attach an instance profile")
        }
        return try await context.fetchJSONCredentials(url: roleURL + role, headers: headers, source: "imds")
    }
}

/// A pipe whose two ends are close-on-exec (pipe2 O_CLOEXEC): handed to a child as its stdout or stderr
/// (Process dup2s it onto fd 1 or 2, which clears the flag there), and inherited by no other child.
struct CloexecPipe {
    let reading: FileHandle
    let writing: FileHandle

    init?() {
        var fds: [Int32] = [-1, -1]
        guard ferry_pipe_cloexec(&fds) == 0 else { return nil }
        reading = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        writing = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
    }
}
