import FerryAWS
import FerryConfig
import Foundation
import Logging

/// Sends alerts (`notify:`) without ever holding up the pipeline: `post` only puts the event in a
/// bounded queue (when full, the oldest is dropped, counted and logged — nobody waits). `run()` drains
/// it: folds bursts (`AlertFolder`), picks the settings of the event's rule (or the top-level ones, read
/// at each event, so a reload applies at once) and hands each alert to the command or webhook it goes
/// to. Every destination has its own bounded queue and worker, so a hanging receiver delays only
/// its own alerts; each delivery is tried `attempts` times with doubling waits.
public final class Notifier: Sendable {
    private enum Input: Sendable {
        case event(AlertEvent)
        case tick
    }

    /// One alert for one destination, with the settings it was routed with.
    private struct Delivery: Sendable {
        var event: AlertEvent
        var settings: NotifySettings
    }

    private let settings: @Sendable (_ rule: String?) -> NotifySettings?
    private let metrics: Metrics
    private let logger: Logger
    private let window: Duration
    private let capacity: Int
    private let attempts: Int
    private let retryBase: Duration
    private let inbox: AsyncStream<Input>
    private let inboxInput: AsyncStream<Input>.Continuation
    private let webhookClient: Locked<WebhookClient?> = Locked(nil)

    /// The variable that shortens the one-alert-per-minute window, for tests only (docs/alerts.md).
    public static let windowVariable = "FERRY_TEST_NOTIFY_MIN_INTERVAL"

    /// `settings` answers, for an event's rule (nil: none), where its alerts go; nil sends nothing.
    public init(settings: @escaping @Sendable (_ rule: String?) -> NotifySettings?, metrics: Metrics, logger: Logger,
                window: Duration? = nil, capacity: Int = 256, attempts: Int = 3, retryBase: Duration = .seconds(1)) {
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.window = window ?? Self.windowFromEnvironment() ?? .seconds(60)
        self.capacity = capacity
        self.attempts = attempts
        self.retryBase = retryBase
        (inbox, inboxInput) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .bufferingNewest(capacity))
    }

    private static func windowFromEnvironment() -> Duration? {
        guard let text = ProcessInfo.processInfo.environment[windowVariable], case .success(let duration) = ValueSyntax.duration(text) else { return nil }
        return duration
    }

    /// Queues an event; never waits. Safe from any thread.
    public func post(_ event: AlertEvent) {
        if case .dropped(let oldest) = inboxInput.yield(.event(event)), case .event(let lost) = oldest {
            dropped(lost, queue: "alert queue")
        }
    }

    /// Tells of a problem `DaemonHealth` gained, changed or lost (DaemonHealth's observer).
    func healthChanged(key: String, message: String?, previous: String?) {
        post(AlertEvent.health(key: key, message: message, previous: previous))
    }

    private func dropped(_ event: AlertEvent, queue: String) {
        metrics.increment("ferry_alerts_dropped_total", ["event": event.event.rawValue],
                          help: "Alerts dropped because their queue was full (the oldest goes first).")
        logger.warning("\(queue) full; dropped the oldest alert", metadata: ["alert.event": "\(event.event.rawValue)", "rule": "\(event.rule ?? "")",
                                                                           "alert.queue.capacity": "\(capacity)"])
    }

    /// Runs until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.tick() }
            var folder = AlertFolder(window: window)
            var destinations: [String: AsyncStream<Delivery>.Continuation] = [:]
            for await input in inbox {
                let now = ContinuousClock.now
                var outgoing = folder.due(now: now)
                if case .event(let event) = input {
                    let sent = folder.offer(event, now: now)
                    if sent.last != event {
                        metrics.increment("ferry_alerts_folded_total", ["event": event.event.rawValue],
                                          help: "Alerts folded into the next one of their kind and rule (at most one per window).")
                    }
                    outgoing += sent
                }
                for event in outgoing {
                    guard let chosen = settings(event.rule) else {
                        logger.debug("no notify settings for this alert", metadata: ["alert.event": "\(event.event.rawValue)"])
                        continue
                    }
                    for key in Self.destinationKeys(chosen) {
                        let queue = destinations[key] ?? {
                            let (stream, input) = AsyncStream.makeStream(of: Delivery.self, bufferingPolicy: .bufferingNewest(capacity))
                            group.addTask { await self.deliver(stream, destination: key) }
                            destinations[key] = input
                            return input
                        }()
                        if case .dropped(let oldest) = queue.yield(Delivery(event: event, settings: chosen)) {
                            dropped(oldest.event, queue: "alert queue of \(key)")
                        }
                    }
                }
            }
            group.cancelAll()
        }
        webhookClient.withLock { $0?.shutdown(); $0 = nil }
    }

    /// Wakes the loop so folded alerts go out when their window ends, even when nothing else happens.
    private func tick() async {
        let interval = min(.seconds(1), window / 4)
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            inboxInput.yield(.tick)
        }
        inboxInput.finish()
    }

    /// One worker per destination: "command:<argv>" or "webhook:<url>".
    private static func destinationKeys(_ settings: NotifySettings) -> [String] {
        var keys: [String] = []
        if let command = settings.command { keys.append("command:" + command.joined(separator: " ")) }
        if let webhook = settings.webhook { keys.append("webhook:" + webhook.url) }
        return keys
    }

    private func deliver(_ queue: AsyncStream<Delivery>, destination: String) async {
        let channel = destination.hasPrefix("command:") ? "command" : "webhook"
        for await delivery in queue {
            var delay = retryBase
            for attempt in 1...attempts {
                do {
                    try await send(delivery, channel: channel)
                    metrics.increment("ferry_alerts_sent_total", ["channel": channel], help: "Alerts delivered, by channel (command or webhook).")
                    break
                } catch is CancellationError {
                    return
                } catch {
                    metrics.increment("ferry_alert_failures_total", ["channel": channel],
                                      help: "Failed attempts to deliver an alert, by channel (command or webhook).")
                    let last = attempt == attempts
                    logger.warning(last ? "alert not delivered; giving up on it" : "alert not delivered; trying again",
                                   metadata: ["alert.channel": "\(channel)", "alert.event": "\(delivery.event.event.rawValue)",
                                              "rule": "\(delivery.event.rule ?? "")", "alert.attempt": "\(attempt)",
                                              "alert.destination": "\(Self.redacted(destination))", "error": "\(error)"])
                    if last { break }
                    do { try await Task.sleep(for: delay) } catch { return }
                    delay *= 2
                }
            }
        }
    }

    private func send(_ delivery: Delivery, channel: String) async throws {
        if channel == "command", let argv = delivery.settings.command {
            try await AlertCommand(argv: argv, timeout: delivery.settings.commandTimeout).run(delivery.event)
            return
        }
        guard let webhook = delivery.settings.webhook else { return }
        // Read at each POST, so a rotated token needs no reload; never logged.
        let headers = try webhook.headersFile.map { try NotifyHeaders.read(path: $0) } ?? []
        let client = webhookClient.withLock { client in
            if let client { return client }
            let made = WebhookClient()
            client = made
            return made
        }
        _ = try await client.post(url: webhook.url, headers: headers, body: delivery.event.json, timeout: webhook.timeout)
    }

    /// A URL without its user information, which may hold a password.
    private static func redacted(_ destination: String) -> String {
        guard destination.hasPrefix("webhook:"), var parts = URLComponents(string: String(destination.dropFirst(8))) else { return destination }
        if parts.user != nil || parts.password != nil { parts.user = nil; parts.password = nil }
        parts.query = nil
        return "webhook:" + (parts.string ?? "")
    }
}
