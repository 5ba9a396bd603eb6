import FerryGlob
import FerryStore
import Foundation

/// Which files of a listing a poll asks for, before the journal's dedupe: the pure part of a poll.
public struct InboundSelection: Sendable, Equatable {
    /// A selected file: the version to journal (dedupe key) and its plain name.
    public struct Candidate: Sendable, Equatable {
        public var version: RemoteVersion
        public var name: String
    }

    /// A refused hostile name; `version.remotePath` is already printable.
    public struct Refused: Sendable, Equatable {
        public var version: RemoteVersion
        public var reason: String
    }

    public var candidates: [Candidate] = []
    public var refused: [Refused] = []
    /// Left out by include/exclude (or the default ignores).
    public var filteredOut = 0
    /// Modified within min_age: left for a later poll.
    public var tooYoung = 0
    /// Without a usable timestamp and not yet seen twice with the same size.
    public var waitingForSecondLook = 0
    /// Listed with neither size nor timestamp: their versions cannot be told apart, so they are reported
    /// and not retrieved (a file rewritten later would be taken for the one already retrieved).
    public var unversioned: [String] = []
    /// Sizes of timestamp-less files to remember for the next poll (path → size, -1 if none).
    public var unstableSizes: [String: Int64] = [:]

    /// The dedupe key's timestamp: the parsed instant in one canonical text (ISO 8601, UTC, milliseconds),
    /// so that a change in how the server writes the same instant (fractional seconds appearing, an
    /// offset instead of `Z`) is not a new version. Text that cannot be read is kept as it is.
    public static func versionTimestamp(_ entry: DirectoryListing.Entry) -> String? {
        guard let date = entry.modified else { return entry.modifiedText }
        return canonicalTimestamp(date)
    }

    /// `2024-05-01T08:00:00.000Z`: the form journal migration 4 also writes with SQLite's strftime.
    public static func canonicalTimestamp(_ date: Date) -> String {
        let milliseconds = (date.timeIntervalSince1970 * 1000).rounded()
        var seconds = time_t((milliseconds / 1000).rounded(.down))
        let fraction = Int(milliseconds - Double(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), fraction)
    }

    /// Whether a listing entry is the journaled version `file` (same size, same instant).
    public static func isSameVersion(_ entry: DirectoryListing.Entry, _ file: InboundFile) -> Bool {
        (entry.size ?? -1) == (file.size ?? -1) && (versionTimestamp(entry) ?? "") == (file.modified ?? "")
    }

    /// Selects from `listing`. A file without a usable `modifiedTimestamp` cannot be aged, so it is taken
    /// only once two consecutive polls saw it with the same size (`previousUnstableSizes` is what the
    /// last poll saw).
    public static func select(_ listing: DirectoryListing, remoteDirectory: String, downloadTo: String?, filter: FileFilter,
                              minAge: Duration, now: Date, previousUnstableSizes: [String: Int64]) -> InboundSelection {
        var selection = InboundSelection()
        let minimumAge = Double(minAge.components.seconds) + Double(minAge.components.attoseconds) / 1e18
        for entry in listing.files {
            let version = RemoteVersion(remotePath: entry.filePath, size: entry.size, modified: versionTimestamp(entry))
            let name: String
            switch RemoteName.check(filePath: entry.filePath, remoteDirectory: remoteDirectory, downloadTo: downloadTo) {
            case .failure(let refusal):
                var printable = version
                printable.remotePath = RemoteName.printable(entry.filePath)
                selection.refused.append(Refused(version: printable, reason: refusal.reason))
                continue
            case .success(let accepted):
                name = accepted
            }
            guard filter.accepts(name) else {
                selection.filteredOut += 1
                continue
            }
            if entry.size == nil && entry.modifiedText == nil {
                selection.unversioned.append(RemoteName.printable(entry.filePath))
                continue
            }
            if let modified = entry.modified {
                if now.timeIntervalSince(modified) < minimumAge {
                    selection.tooYoung += 1
                    continue
                }
            } else {
                let size = entry.size ?? -1
                guard previousUnstableSizes[entry.filePath] == size else {
                    selection.unstableSizes[entry.filePath] = size
                    selection.waitingForSecondLook += 1
                    continue
                }
                // Keep remembering it: should this version be retrieved and then change, its new size
                // is compared against this one rather than starting over.
                selection.unstableSizes[entry.filePath] = size
            }
            selection.candidates.append(Candidate(version: version, name: name))
        }
        return selection
    }
}
