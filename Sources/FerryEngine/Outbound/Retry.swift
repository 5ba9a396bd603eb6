import FerryConfig
import FerryStore
import FerrySystem
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

    /// Restores the quarantined and held (in-doubt) files of `rule` (or all rules), limited to `paths`
    /// (original or quarantine paths) when given. Works while the daemon runs: it sees the file appear
    /// and journals it anew.
    public static func run(rules: Rules, rule: String?, paths: [String], logger: Logger) throws -> [Restored] {
        let journal = try Journal(directory: rules.stateDir, logger: logger)
        var restored: [Restored] = []
        let wanted = Set(paths.map { ($0 as NSString).standardizingPath })
        for (file, quarantinePath) in try journal.held(in: [.quarantined, .inDoubt], rule: rule) {
            guard let quarantinePath else { continue }
            if !wanted.isEmpty, !wanted.contains(file.path), !wanted.contains(quarantinePath) { continue }
            guard LocalFiles.currentVersion(quarantinePath) != nil else {
                logger.warning("quarantined file is gone; marking it retried", metadata: ["file.path": "\(quarantinePath)"])
                try journal.markRetried(file.id)
                continue
            }
            // Neither the quarantined file nor the folder it goes back to may be reached through a link:
            // a folder swapped for a link would hand the file to another tree.
            do {
                _ = try LocalFiles.OpenFile(path: quarantinePath)
                _ = try LocalFiles.OpenFile(path: (file.path as NSString).deletingLastPathComponent)
            } catch let error as SystemError where error.errno == .tooManySymbolicLinkLevels {
                logger.error("not putting the file back: a folder on its way is a symbolic link, and ferry never follows links",
                             metadata: ["file.path": "\(file.path)", "error": "\(error)"])
                continue
            }
            // Move first, then journal: if the move fails the file stays quarantined and counted, and a
            // second `ferry retry` finds it again. A stop between the two leaves a file the daemon sends
            // (it is a new arrival) while the journal still lists it in quarantine: the next retry then
            // finds it gone and marks it retried.
            let placed = try LocalFiles.moveNoReplace(quarantinePath, to: file.path)
            LocalFiles.announce(placed)
            try journal.markRetried(file.id)
            try? FileManager.default.removeItem(atPath: quarantinePath + ".reason")
            restored.append(Restored(from: quarantinePath, to: placed))
        }
        return restored
    }
}
