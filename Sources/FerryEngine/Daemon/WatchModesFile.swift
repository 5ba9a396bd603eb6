import FerryWatch
import Foundation

/// How one watched folder is watched, as the running daemon decided it (`watch_mode`, the folder's
/// file system type), for `ferry status`.
public struct WatchModeStatus: Codable, Sendable, Equatable {
    /// The watched folder (a rule's `watch`).
    public var folder: String
    /// `inotify` or `poll`.
    public var mode: String
    /// Why, e.g. "auto: fuse is a network or FUSE file system".
    public var reason: String
    /// Seconds between poll passes (poll mode only).
    public var pollIntervalSeconds: Double?
    /// On NFS in poll mode, the attribute-cache time a file must also stand unchanged for.
    public var attributeCacheSeconds: Double?

    init(folder: String, choice: WatchModeChoice) {
        self.folder = folder
        mode = choice.mode.rawValue
        reason = choice.reason
        pollIntervalSeconds = choice.mode == .poll ? Self.seconds(choice.pollInterval) : nil
        attributeCacheSeconds = choice.attributeCacheTime > .zero ? Self.seconds(choice.attributeCacheTime) : nil
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// "poll every 5s (auto: fuse is a network or FUSE file system)", for the status table.
    var summary: String {
        guard mode == "poll", let interval = pollIntervalSeconds else { return "\(mode) (\(reason))" }
        let every = interval == interval.rounded() ? "\(Int(interval))s" : "\(interval)s"
        let cache = attributeCacheSeconds.map { "; NFS attribute cache \(Int($0))s" } ?? ""
        return "poll every \(every) (\(reason)\(cache))"
    }
}

/// `<state_dir>/watch-modes.json`: the daemon writes it (temp name, then rename) whenever a folder's
/// watch mode is decided or changes; `ferry status` reads it.
enum WatchModesFile {
    static func path(stateDir: String) -> String { (stateDir as NSString).appendingPathComponent("watch-modes.json") }

    static func write(_ modes: [WatchModeStatus], stateDir: String) {
        StateFile.writeJSON(modes, to: path(stateDir: stateDir))
    }

    static func read(stateDir: String) -> [WatchModeStatus] {
        guard let data = FileManager.default.contents(atPath: path(stateDir: stateDir)) else { return [] }
        return (try? JSONDecoder().decode([WatchModeStatus].self, from: data)) ?? []
    }
}

/// The small JSON files the daemon publishes in `state_dir` for `ferry status` (watch modes, connector
/// states): written whole to a temporary name, then renamed, so a reader never sees half a file.
/// Status information only: a failure (a full disk) leaves the previous file and is not an error;
/// health.json, which must work on a full disk, has its own preallocated file.
enum StateFile {
    static func writeJSON<Value: Encodable>(_ value: Value, to path: String) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(value) else { return }
        if let existing = FileManager.default.contents(atPath: path), existing == data { return }
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else { return }
        if rename(temporary, path) != 0 { unlink(temporary) }
    }
}
