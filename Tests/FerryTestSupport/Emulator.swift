import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The local AWS emulator (`Tests/Emulator/run`): moto's S3 behind a real SigV4 check, the Transfer
/// Family connector operations, and a real OpenSSH sshd as the SFTP partner. Each instance is a
/// separate process on free ports, so suites never collide; it is stopped by `stop()` or `deinit`.
public final class Emulator: @unchecked Sendable {
    /// Why the emulator could not be started or talked to, with what to do about it.
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// One line of the emulator's request log.
    public struct RequestRecord: Decodable, Sendable {
        public let ts: Double
        public let service: String
        public let operation: String?
        public let status: Int?
        public let fault: String?
        public let errorCode: String?
        public let key: String?
        public let connectorId: String?
        public let transferId: String?
        public let paths: [String]?
    }

    private struct Ready: Decodable {
        struct Buckets: Decodable { let staging: String; let inbound: String }
        struct Connectors: Decodable { let sftp: String; let as2: String }
        struct Sftp: Decodable { let host: String; let port: Int; let user: String; let privateKey: String }
        let endpoint: String, region: String, accessKeyId: String, secretAccessKey: String
        let buckets: Buckets, connectors: Connectors, partnerRoot: String, sftp: Sftp
        let requestLog: String, control: String, as2Inbox: String, stateDir: String, startSeconds: Double
    }

    public let endpoint: String
    public let region: String
    public let accessKeyId: String
    public let secretAccessKey: String
    public let stagingBucket: String
    public let inboundBucket: String
    public let sftpConnectorId: String
    public let as2ConnectorId: String
    /// What `/` means over SFTP for the connectors, as a folder on this machine.
    public let partnerRoot: String
    public let requestLogPath: String
    public let controlURL: String
    public let sftpHost: String
    public let sftpPort: Int
    public let sftpUser: String
    public let sftpPrivateKeyPath: String
    /// Where files sent through the AS2 connector land.
    public let as2Inbox: String
    /// Seconds from process start to ready, as the emulator measured it.
    public let startSeconds: Double
    /// The emulator's stderr, for when a test needs to know why it misbehaved.
    public let stderrLogPath: String
    /// `deliveries.jsonl` in the emulator's state dir: one line per file completed to a partner.
    public let deliveriesPath: String

    private let process: Process
    private let lock = NSLock()
    private var stopped = false

    /// `Tests/Emulator/run`, found from this source file so it works from any working directory.
    public static var runScriptPath: String {
        if let override = ProcessInfo.processInfo.environment["FERRY_EMULATOR_RUN"] { return override }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Emulator/run").path
    }

    /// Starts a fresh emulator and waits (up to `readyTimeout` seconds) for its ready line.
    public static func start(faultRate: Double = 0, faultKinds: [String] = [], latencyMs: Int = 0,
                             transferDelayMs: Int? = nil, seed: Int? = nil, maxPending: Int? = nil,
                             sftpConnections: Int? = nil, readyTimeout: Double = 60) throws -> Emulator {
        let script = runScriptPath
        guard FileManager.default.isExecutableFile(atPath: script) else {
            throw Failure(message: "emulator script \(script) is missing or not executable")
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") else {
            throw Failure(message: "/usr/sbin/sshd not found: the emulator's SFTP partner needs openssh-server; run `make deps`")
        }
        var arguments = [script, "--port", "0", "--fault-rate", String(faultRate), "--latency-ms", String(latencyMs)]
        if !faultKinds.isEmpty { arguments += ["--faults", faultKinds.joined(separator: ",")] }
        if let transferDelayMs { arguments += ["--transfer-delay-ms", String(transferDelayMs)] }
        if let seed { arguments += ["--seed", String(seed)] }
        // Transfers a connector holds unfinished before StartFileTransfer answers ThrottlingException
        // (AWS: 1,000): lowered, it makes the emulator itself check ferry's max_in_flight.
        if let maxPending { arguments += ["--max-pending", String(maxPending)] }
        // SftpConfig.MaxConcurrentConnections (1...5) of the SFTP connector the emulator makes at start.
        if let sftpConnections { arguments += ["--sftp-connections", String(sftpConnections)] }

        let stderrPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("ferry-emulator-\(UUID().uuidString).stderr.log").path
        guard FileManager.default.createFile(atPath: stderrPath, contents: nil),
              let stderrFile = FileHandle(forWritingAtPath: stderrPath) else {
            throw Failure(message: "cannot create \(stderrPath) for the emulator's stderr")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        // A file, not a pipe: nobody has to drain it, so the emulator can never block on stderr.
        process.standardError = stderrFile
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw Failure(message: "cannot run python3 (\(error)); install Python 3 and the test dependencies with `make deps`")
        }
        try? stderrFile.close()

        let line = LineReader(stdout.fileHandleForReading)
        guard let ready = line.firstLine(timeout: readyTimeout) else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let errors = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            throw Failure(message: "the emulator did not become ready within \(Int(readyTimeout)) s (exit \(process.isRunning ? "none" : String(process.terminationStatus))): \(errors.suffix(2000))\nIf a module is missing, run `make deps`.")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let info: Ready
        do {
            info = try decoder.decode(Ready.self, from: Data(ready.utf8))
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw Failure(message: "the emulator's ready line is not what the contract says (\(error)): \(ready)")
        }
        return Emulator(info: info, process: process, stderrLogPath: stderrPath)
    }

    private init(info: Ready, process: Process, stderrLogPath: String) {
        endpoint = info.endpoint
        region = info.region
        accessKeyId = info.accessKeyId
        secretAccessKey = info.secretAccessKey
        stagingBucket = info.buckets.staging
        inboundBucket = info.buckets.inbound
        sftpConnectorId = info.connectors.sftp
        as2ConnectorId = info.connectors.as2
        partnerRoot = info.partnerRoot
        requestLogPath = info.requestLog
        controlURL = info.control
        sftpHost = info.sftp.host
        sftpPort = info.sftp.port
        sftpUser = info.sftp.user
        sftpPrivateKeyPath = info.sftp.privateKey
        as2Inbox = info.as2Inbox
        startSeconds = info.startSeconds
        self.stderrLogPath = stderrLogPath
        deliveriesPath = (info.stateDir as NSString).appendingPathComponent("deliveries.jsonl")
        self.process = process
    }

    deinit { stop() }

    /// Whether the emulator process is still running.
    public var isRunning: Bool { process.isRunning }

    /// The environment for a child process (ferry, the aws CLI) that should talk to this emulator:
    /// the current environment with its credentials, region and endpoint, and nothing from ~/.aws.
    public var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        for name in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE",
                     "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
            env.removeValue(forKey: name)
        }
        env["AWS_ACCESS_KEY_ID"] = accessKeyId
        env["AWS_SECRET_ACCESS_KEY"] = secretAccessKey
        env["AWS_REGION"] = region
        env["AWS_DEFAULT_REGION"] = region
        env["AWS_ENDPOINT_URL"] = endpoint
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["AWS_CONFIG_FILE"] = "/dev/null"
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        return env
    }

    /// Every request the emulator has answered since start (or the last `resetRequestLog()`).
    public func requestLog() throws -> [RequestRecord] {
        let text = try String(contentsOfFile: requestLogPath, encoding: .utf8)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        // The last piece is empty, or a line the emulator is still writing: either way not a record yet.
        lines.removeLast()
        return try lines.filter { !$0.isEmpty }.map { try decoder.decode(RequestRecord.self, from: Data($0.utf8)) }
    }

    /// One file completed to a partner, as the emulator's connector wrote it: `sha256` is of the bytes delivered.
    public struct Delivery: Decodable, Sendable {
        public let ts: Double
        public let connectorId: String
        public let transferId: String
        public let remotePath: String
        public let size: Int
        public let sha256: String
    }

    /// Every file completed to a partner (SFTP or AS2) since start, in order; unlike the partner's folder,
    /// which keeps only the last file of each name, this shows duplicates and every version.
    public func deliveries() throws -> [Delivery] {
        guard FileManager.default.fileExists(atPath: deliveriesPath) else { return [] }
        let text = try String(contentsOfFile: deliveriesPath, encoding: .utf8)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        lines.removeLast()  // empty, or a line still being written
        return try lines.filter { !$0.isEmpty }.map { try decoder.decode(Delivery.self, from: Data($0.utf8)) }
    }

    /// Changes fault injection at run time: `rate` of requests fail with one of `kinds`
    /// (throttle, unavailable, internal, slowdown, drop answer before any work; lost_answer, late_504
    /// after it was done); every request waits `latencyMs` first. `operations` aims faults at those
    /// operations only; `every` > 0 faults every `every`-th such request instead of a random `rate`;
    /// `retryAfterSeconds` goes into Transfer ThrottlingException answers. Each call sets all of them.
    public func setFaults(rate: Double, kinds: [String], latencyMs: Int, operations: [String] = [], every: Int = 0,
                          retryAfterSeconds: Double? = nil) throws {
        let body = try JSONSerialization.data(withJSONObject: [
            "rate": rate, "kinds": kinds, "latency_ms": latencyMs, "operations": operations, "every": every,
            "retry_after_seconds": retryAfterSeconds.map { $0 as Any } ?? NSNull(),
        ])
        try control("/faults", body: body)
    }

    /// What DescribeConnector says of `connectorId` from now on: `ACTIVE`, `PENDING` or `ERRORED` (with
    /// `errorMessage`). The emulator's connector keeps working whatever it says.
    public func setConnectorStatus(_ connectorId: String, _ status: String, errorMessage: String? = nil) throws {
        var body: [String: Any] = ["Status": status]
        if let errorMessage { body["ErrorMessage"] = errorMessage }
        try control("/connectors/\(connectorId)", body: try JSONSerialization.data(withJSONObject: body))
    }

    /// Runs the emulator's clock `seconds` ahead of this machine's (negative: behind): signatures are
    /// judged by it (more than 15 minutes off is `RequestTimeTooSkewed`) and answers' `Date` shows it.
    public func setClockOffset(seconds: Double) throws {
        try control("/clock", body: try JSONSerialization.data(withJSONObject: ["offset_seconds": seconds]))
    }

    /// Makes S3 refuse writes (PutObject, DeleteObject, multipart) to `bucket` with 403 AccessDenied, as a
    /// bucket policy denying them would; reads and listings still work. `false` allows them again.
    public func denyWrites(bucket: String, _ deny: Bool = true) throws {
        try control("/buckets/\(bucket)", body: try JSONSerialization.data(withJSONObject: ["deny_writes": deny]))
    }

    /// Empties the request log.
    public func resetRequestLog() throws {
        try control("/reset-log", body: Data("{}".utf8))
    }

    private func control(_ path: String, body: Data) throws {
        guard let url = URL(string: controlURL + path) else { throw Failure(message: "bad control URL \(controlURL)") }
        var request = URLRequest(url: url, timeoutInterval: 10)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let outcome = ControlOutcome()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            outcome.set(status: (response as? HTTPURLResponse)?.statusCode, data: data, error: error)
            done.signal()
        }.resume()
        guard done.wait(timeout: .now() + 15) == .success else {
            throw Failure(message: "emulator control \(path) did not answer within 15 s")
        }
        let (status, data, error) = outcome.get()
        if let error { throw Failure(message: "emulator control \(path) failed: \(error)") }
        guard status == 200 else {
            throw Failure(message: "emulator control \(path) answered \(status.map(String.init) ?? "nothing"): \(String(decoding: data ?? Data(), as: UTF8.self))")
        }
    }

    /// The emulator's process: benchmarks and the soak read its CPU time (and its children's, sshd) from /proc.
    public var processID: Int32 { process.processIdentifier }

    /// Stops the emulator (SIGTERM, then SIGKILL after 10 s); it stops its sshd and removes its state.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Carries a control request's outcome from URLSession's callback thread to the waiting caller.
private final class ControlOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var status: Int?
    private var data: Data?
    private var error: (any Error)?

    func set(status: Int?, data: Data?, error: (any Error)?) {
        lock.lock(); defer { lock.unlock() }
        self.status = status; self.data = data; self.error = error
    }

    func get() -> (Int?, Data?, (any Error)?) {
        lock.lock(); defer { lock.unlock() }
        return (status, data, error)
    }
}

/// Reads the emulator's one ready line on a background thread, then keeps draining stdout so the
/// child can never block on it.
private final class LineReader: @unchecked Sendable {
    private let handle: FileHandle
    private let lock = NSLock()
    private let ready = DispatchSemaphore(value: 0)
    private var line: String?

    init(_ handle: FileHandle) {
        self.handle = handle
        let thread = Thread { [self] in self.run() }
        thread.start()
    }

    private func run() {
        var buffer = Data()
        var signalled = false
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            guard !signalled else { continue }
            buffer.append(chunk)
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                lock.lock(); line = String(decoding: buffer[..<newline], as: UTF8.self); lock.unlock()
                signalled = true
                ready.signal()
            }
        }
        if !signalled { ready.signal() }
    }

    func firstLine(timeout: Double) -> String? {
        guard ready.wait(timeout: .now() + timeout) == .success else { return nil }
        lock.lock(); defer { lock.unlock() }
        return line
    }
}

extension Emulator {
    /// The top of a rules file for this emulator: `version`, `state_dir`, `aws` (region and endpoint) and
    /// one SFTP connector named `partner` with staging in the emulator's bucket. `connectorLines` are
    /// more keys of the connector (`requests_per_second: 2`); rules follow the returned text.
    public func rulesHeader(stateDir: String, connectorID: String? = nil, connectorLines: [String] = []) -> String {
        """
        version: 1
        state_dir: \(stateDir)
        aws:
          region: \(region)
          endpoint_url: \(endpoint)
        connectors:
          partner:
            type: sftp
            connector_id: \(connectorID ?? sftpConnectorId)
            staging: s3://\(stagingBucket)/outbound/
        \(connectorLines.map { "    " + $0 }.joined(separator: "\n"))

        """
    }
}
