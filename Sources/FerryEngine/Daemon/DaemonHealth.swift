import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Problems the running daemon knows of and the journal cannot show (the journal's own disk is full,
/// an after_send keeps failing, a watched folder was lost), published for `ferry status` in
/// `<state_dir>/health.json`.
///
/// The file is made at start with room for every message (64 KiB, written out so its blocks exist) and
/// later rewritten in place, padded with spaces: updating it needs no new disk blocks, so it can still
/// say "the journal's file system is full" when that is exactly the problem.
public final class DaemonHealth: Sendable {
    /// One problem: a stable key (e.g. `journal`, `rule:invoices`) and a sentence an operator can act on.
    public struct Problem: Codable, Sendable, Equatable {
        public var key: String
        public var message: String
        public var since: Date
    }

    static let capacity = 64 * 1024
    private let path: String
    private let state = Locked<(descriptor: Int32, problems: [String: Problem])>((-1, [:]))
    /// Told of each problem that begins or changes (`message`) or ends (nil, with the `previous`
    /// message): the alerts of `notify:`. Called outside the lock; it must not block.
    let onChange = Locked<(@Sendable (_ key: String, _ message: String?, _ previous: String?) -> Void)?>(nil)

    /// The health file of a state_dir.
    public static func path(stateDir: String) -> String { (stateDir as NSString).appendingPathComponent("health.json") }

    /// Creates (or resets) the file; without it problems are only logged.
    init(stateDir: String) {
        path = Self.path(stateDir: stateDir)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        state.withLock { $0.descriptor = descriptor }
        write([:])
    }

    deinit {
        state.withLock { if $0.descriptor >= 0 { close($0.descriptor) } }
    }

    /// Reports (or updates) a problem; unchanged messages cost nothing.
    func set(_ key: String, _ message: String) {
        let changed = state.withLock { state -> [String: Problem]? in
            if state.problems[key]?.message == message { return nil }
            state.problems[key] = Problem(key: key, message: message, since: state.problems[key]?.since ?? Date())
            return state.problems
        }
        if let changed {
            write(changed)
            onChange.withLock { $0 }?(key, message, nil)
        }
    }

    /// The problem is over.
    func clear(_ key: String) {
        let ended = state.withLock { state -> (problems: [String: Problem], previous: String)? in
            guard let removed = state.problems.removeValue(forKey: key) else { return nil }
            return (state.problems, removed.message)
        }
        if let ended {
            write(ended.problems)
            onChange.withLock { $0 }?(key, nil, ended.previous)
        }
    }

    var problems: [Problem] { state.withLock { $0.problems.values.sorted { $0.key < $1.key } } }

    private func write(_ problems: [String: Problem]) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .sortedKeys
        var list = problems.values.sorted { $0.key < $1.key }
        var bytes = [UInt8]((try? encoder.encode(list)) ?? Data("[]".utf8))
        while bytes.count > Self.capacity - 1, !list.isEmpty {
            list.removeLast()
            bytes = [UInt8]((try? encoder.encode(list)) ?? Data("[]".utf8))
        }
        bytes += [UInt8](repeating: 0x20, count: Self.capacity - 1 - bytes.count) + [0x0A]
        state.withLock { state in
            guard state.descriptor >= 0 else { return }
            _ = bytes.withUnsafeBytes { pwrite(state.descriptor, $0.baseAddress, $0.count, 0) }
        }
    }

    /// What the daemon last published (empty when there is no file or it cannot be read).
    public static func read(stateDir: String) -> [Problem] {
        guard let data = FileManager.default.contents(atPath: path(stateDir: stateDir)) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return (try? decoder.decode([Problem].self, from: data)) ?? []
    }
}
