/// At most one alert per (event kind, rule) per window: the first event of a quiet pair goes at once
/// and opens a window; events inside it are folded, and when it ends one alert carries the last of
/// them with `folded` = how many, and opens the next window. A window that ends with nothing folded
/// closes. Time is passed in, so the logic is tested with a fake clock.
struct AlertFolder {
    struct Key: Hashable {
        var event: AlertEvent.Kind
        var rule: String?
    }

    private struct Window {
        var endsAt: ContinuousClock.Instant
        var folded = 0
        var latest: AlertEvent?
        var paths: [String] = []
    }

    let window: Duration
    private var windows: [Key: Window] = [:]

    init(window: Duration) { self.window = window }

    /// What to send now for `event`: itself if its pair is quiet (after the summary of a window that
    /// ended and was not yet flushed), nothing if it is folded.
    mutating func offer(_ event: AlertEvent, now: ContinuousClock.Instant) -> [AlertEvent] {
        let key = Key(event: event.event, rule: event.rule)
        if var open = windows[key], now < open.endsAt {
            open.folded += 1
            open.latest = event
            for path in event.paths where open.paths.count < AlertEvent.maximumPaths && !open.paths.contains(path) {
                open.paths.append(path)
            }
            windows[key] = open
            return []
        }
        var out: [AlertEvent] = []
        if let ended = windows[key], let summary = Self.summary(ended) { out.append(summary) }
        windows[key] = Window(endsAt: now.advanced(by: window))
        out.append(event)
        return out
    }

    /// The summaries of windows that have ended by `now`.
    mutating func due(now: ContinuousClock.Instant) -> [AlertEvent] {
        var out: [AlertEvent] = []
        for (key, open) in windows where open.endsAt <= now {
            if let summary = Self.summary(open) {
                out.append(summary)
                windows[key] = Window(endsAt: now.advanced(by: window))
            } else {
                windows[key] = nil
            }
        }
        return out.sorted { $0.time < $1.time }
    }

    /// How many pairs have an open window (for tests and the log).
    var openWindows: Int { windows.count }

    private static func summary(_ window: Window) -> AlertEvent? {
        guard window.folded > 0, var latest = window.latest else { return nil }
        latest.folded = window.folded
        latest.paths = window.paths
        return latest
    }
}
