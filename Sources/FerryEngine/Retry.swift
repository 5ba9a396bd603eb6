import FerryConfig
import FerryStore
import Foundation
import Logging

/// `ferry retry`: puts quarantined files back where they were found, so the watcher sends them afresh.
public enum QuarantineRetry {
    /// One file put back.
    public struct Restored: Sendable, Equatable {
        /// Where it was in quarantine.
        public var from: String
        /// Where it is now (its original path, or a numbered name if that was taken).
        public var to: String
    }

    /// Restores the quarantined files of `rule` (or all rules), limited to `paths` (original or quarantine
    /// paths) when given. Works while the daemon runs: it sees the file appear and journals it anew.
    public static func run(rules: Rules, rule: String?, paths: [String], logger: Logger) throws -> [Restored] {
        let journal = try Journal(directory: rules.stateDir, logger: logger)
        var restored: [Restored] = []
        let wanted = Set(paths.map { ($0 as NSString).standardizingPath })
        for (file, quarantinePath) in try journal.quarantined(rule: rule) {
            guard let quarantinePath else { continue }
            if !wanted.isEmpty, !wanted.contains(file.path), !wanted.contains(quarantinePath) { continue }
            guard FileManager.default.fileExists(atPath: quarantinePath) else {
                logger.warning("quarantined file is gone; marking it retried", metadata: ["file.path": "\(quarantinePath)"])
                try journal.markRetried(file.id)
                continue
            }
            // Journal first: if we stop between the two steps, the file is still in quarantine and can be retried again.
            try journal.markRetried(file.id)
            let placed = try LocalFiles.moveNoReplace(quarantinePath, to: file.path)
            LocalFiles.announce(placed)
            try? FileManager.default.removeItem(atPath: quarantinePath + ".reason")
            restored.append(Restored(from: quarantinePath, to: placed))
        }
        return restored
    }
}
