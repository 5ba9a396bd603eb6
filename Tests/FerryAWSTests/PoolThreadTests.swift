import Foundation
import Logging
import Testing
@testable import FerryAWS

/// The connection pool's thread doubles as a task executor (AWSClient.executor).
struct PoolThreadTests {
    static func threadName() -> String {
        ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func tasksPreferringThePoolThreadRunThereAndOutliveItsShutdown() async throws {
        var configuration = AWSClientConfiguration(region: "us-east-1", endpointURL: "http://127.0.0.1:9")
        configuration.environment = ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"]
        let client = try AWSClient(configuration: configuration, logger: Logger(label: "test"))
        let executor = client.executor
        let name = await Task(executorPreference: executor) { Self.threadName() }.value
        #expect(name == "ferry-http")
        // Many tasks interleaving on the one thread all finish.
        let sum = await withTaskGroup(of: Int.self) { group in
            for index in 0..<200 {
                group.addTask(executorPreference: executor) {
                    await Task.yield()
                    return Self.threadName() == "ferry-http" ? index : -1_000_000
                }
            }
            var total = 0
            for await value in group { total += value }
            return total
        }
        #expect(sum == (0..<200).reduce(0, +))
        // A task waiting when the pool shuts down carries on elsewhere instead of hanging.
        let (signal, signalContinuation) = AsyncStream.makeStream(of: Void.self)
        let started = Locked(false)
        let waiting = Task(executorPreference: executor) { () -> String in
            started.set(true)
            for await _ in signal { break }
            return Self.threadName()
        }
        while !started.get() { try await Task.sleep(for: .milliseconds(5)) }
        client.shutdown()
        signalContinuation.yield()
        let after = await waiting.value
        #expect(!after.isEmpty && after != "ferry-http")
        // And a request made after shutdown fails at once with a clear error: not retried, not a hang.
        let s3 = S3Client(client: client)
        let retriesBefore = client.retryStatistics.retriesGranted
        do {
            _ = try await s3.headObject(bucket: "b", key: "k")
            Issue.record("a request after shutdown succeeded")
        } catch let error as AWSError {
            #expect(error.code == "ClientShutDown")
            #expect(!error.isRetryable)
        }
        // Counted, not timed: a loaded machine makes any time threshold flaky.
        #expect(client.retryStatistics.retriesGranted == retriesBefore, "no retries with backoff")
    }
}

extension PoolThreadTests {
    /// Idle sockets stay in the epoll set between requests (see SocketTable). This checks what that
    /// must not break: connections the server closes, busy or idle, and descriptor numbers reused.
    @Test func connectionsTheServerClosesAreReplacedAndNoSocketIsLeftUnwatched() async throws {
        let server = try ChildProcess("/usr/bin/env", ["python3", projectRoot + "/Tests/FerryAWSTests/Scripts/closing_server.py"])
        defer { server.stop() }
        let info = try JSONSerialization.jsonObject(with: Data(server.firstLine.utf8)) as? [String: Any]
        let port = try #require(info?["port"] as? Int, "closing_server.py did not start: \(server.firstLine)")
        let http = HTTPClient(settings: HTTPClientSettings())
        defer { http.shutdown() }
        // "localhost" goes through libcurl's resolver, whose own socket is closed without our callback.
        @Sendable func get(_ path: String, host: String = "127.0.0.1") async throws -> String {
            let response = try await http.execute(HTTPRequest(method: "GET", url: "http://\(host):\(port)\(path)", headers: [],
                                                              timeout: .seconds(20)))
            #expect(response.status == 200)
            return String(decoding: response.body, as: UTF8.self)
        }

        // Keep-alive requests, with files opened and closed in between so that descriptor numbers move.
        for index in 0..<30 {
            let fd = open("/dev/null", O_RDONLY)
            #expect(try await get("/echo/\(index)", host: index % 3 == 0 ? "localhost" : "127.0.0.1") == "\(index)")
            close(fd)
        }
        // Every connection closed by the server after its answer, 16 at a time: each request gets a new
        // socket, often with the number of one just closed. A socket left unwatched would hang here.
        let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<16 {
                group.addTask {
                    for round in 0..<15 {
                        let text = "\(index)-\(round)"
                        guard try await get("/close/\(text)", host: round % 5 == 0 ? "localhost" : "127.0.0.1") == text else { return false }
                    }
                    return true
                }
            }
            var all = true
            for try await ok in group { all = all && ok }
            return all
        }
        #expect(answers)

        // The pooled connections are now idle, and the server closes them after 0.2 s. Their sockets
        // become readable (end of file) for good: the thread must drop them, not wake for them forever.
        for index in 0..<8 { _ = try await get("/echo/idle-\(index)") }
        try await Task.sleep(for: .milliseconds(800))
        let before = http.loopRounds
        try await Task.sleep(for: .milliseconds(500))
        let rounds = http.loopRounds - before
        #expect(rounds < 50, "the HTTP thread went round \(rounds) times in half a second with nothing to do")
        // And the next requests find the closed connections dead and open new ones.
        for index in 0..<10 { #expect(try await get("/echo/after-\(index)") == "after-\(index)") }
    }
}

/// A value shared between a test and its tasks.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ new: Value) { lock.lock(); value = new; lock.unlock() }
}
