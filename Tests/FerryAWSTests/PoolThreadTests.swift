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
        let requestedAt = ContinuousClock.now
        do {
            _ = try await s3.headObject(bucket: "b", key: "k")
            Issue.record("a request after shutdown succeeded")
        } catch let error as AWSError {
            #expect(error.code == "ClientShutDown")
            #expect(!error.isRetryable)
        }
        #expect(ContinuousClock.now - requestedAt < .seconds(1), "no retries with backoff")
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
