import FerryAWS
import FerryConfig
import FerryStore
import Foundation
import Logging

/// Before a batch in doubt is resent (`on_in_doubt: resend`), an SFTP connector lists the partner's
/// folder: a file the lost transfer already delivered is then recorded as sent instead of being sent
/// (and reported) a second time.
///
/// What counts as proof that a file of the batch is on the partner, all of:
/// - an entry with the byte-identical remote path (`<remote directory>/<name>`);
/// - the same size;
/// - a modification time (whole seconds, as listings give it) no earlier than the second the batch was
///   journaled `submitting`, i.e. written after ferry asked for this transfer, not left by an older one;
/// - no other version ferry journaled for the same remote path and size that may have been sent (a
///   rewrite of the same size, another rule sending there): its copy would look the same.
///
/// Anything else — no entry, another size, an entry without a size or time, a listing that fails or does
/// not appear in time, AS2 (no listing), a rule without `remote_directory_path` (the partner's home folder
/// cannot be named) — is *not* proof: the file is resent and reported as a possible duplicate, because
/// the lost transfer may still be queued at the connector and deliver it later. What it cannot rule out:
/// a file of that name and size written into the folder by someone other than ferry since the batch was
/// journaled, or a partner clock running ahead of ferry's (docs/operations.md).
struct InDoubtListing {
    let context: ConnectorContext
    /// The connector service's request budget (and gate), which the StartDirectoryListing waits for.
    let pace: @Sendable () async throws -> Void
    let journal: Journal
    let logger: Logger
    /// Entries a listing may hold: AWS's most (its default, 1,000, left every file of a fuller partner folder
    /// listed after the first thousand unfindable).
    static let maxItems = 10_000
    /// How long to wait for the listing object before giving up on the check (and resending).
    var listingTimeout: Duration = .seconds(60)

    /// The files of `files` (all of one in-doubt batch, journaled at `since`) proved to be on the partner,
    /// with the evidence; and, when some could not be checked, why.
    func filesOnPartner(_ files: [OutboundFile], batchID: Int64, since: Date) async -> (found: [Int64: String], unchecked: String?) {
        guard context.connector.type == .sftp else { return ([:], "an AS2 connector cannot list the partner") }
        guard let staging = context.connector.staging else { return ([:], "connector \(context.connector.name) has no staging location to receive a listing") }
        var byDirectory: [String: [OutboundFile]] = [:]
        var unchecked: String?
        for file in files {
            guard let directory = file.remoteDirectory, !directory.isEmpty else {
                unchecked = "the rule has no remote_directory_path, and StartDirectoryListing cannot name the partner's home folder"
                continue
            }
            byDirectory[directory, default: []].append(file)
        }
        // Listing timestamps have whole seconds: a file written in the batch's own second counts.
        let earliest = Date(timeIntervalSince1970: since.timeIntervalSince1970.rounded(.down))
        var found: [Int64: String] = [:]
        for (directory, group) in byDirectory.sorted(by: { $0.key < $1.key }) {
            let listing: DirectoryListing
            do {
                listing = try await list(directory, staging: staging, batchID: batchID)
            } catch {
                unchecked = "listing \(directory) failed: \(error)"
                continue
            }
            var entries: [[UInt8]: DirectoryListing.Entry] = [:]
            for entry in listing.files { entries[Array(entry.filePath.utf8)] = entry }
            var base = directory
            while base.count > 1, base.hasSuffix("/") { base.removeLast() }
            for file in group {
                let name = Self.remoteName(file)
                let remotePath = (base == "/" ? "" : base) + "/" + name
                guard let entry = entries[Array(remotePath.utf8)], entry.size == file.size,
                      let modified = entry.modified, modified >= earliest else { continue }
                do {
                    let lookalikes = try journal.versionsThatMayHaveBeenSent(remoteDirectory: file.remoteDirectory, size: file.size, excluding: file.id)
                        .filter { Array(Self.remoteName($0).utf8) == Array(name.utf8) }
                    guard lookalikes.isEmpty else {
                        logger.debug("in-doubt file on the partner, but another version of the same name and size may have put it there; resent", metadata: [
                            "file.path": "\(file.path)", "file.remote_path": "\(remotePath)", "other.ids": "\(lookalikes.map(\.id))"])
                        continue
                    }
                } catch {
                    unchecked = "cannot read the journal: \(error)"
                    continue
                }
                found[file.id] = "\(remotePath): \(file.size) bytes, written \(entry.modifiedText ?? "?")"
            }
            if listing.truncated, group.contains(where: { found[$0.id] == nil }) {
                unchecked = "the listing of \(directory) stopped at \(Self.maxItems) entries; files beyond them cannot be looked for"
            }
        }
        return (found, unchecked)
    }

    /// The name the partner receives: the staging key's last component, as ResultMatcher assumes.
    static func remoteName(_ file: OutboundFile) -> String {
        (file.key ?? file.relativePath).split(separator: "/").last.map(String.init) ?? file.relativePath
    }

    /// StartDirectoryListing into `<staging prefix>.ferry-listings/in-doubt/`, wait for the object, fetch,
    /// delete, parse.
    private func list(_ directory: String, staging: S3Location, batchID: Int64) async throws -> DirectoryListing {
        let prefix = staging.prefix + ".ferry-listings/in-doubt/"
        try await pace()
        let started = try await context.transfer.startDirectoryListing(connectorId: context.connector.connectorId, remoteDirectoryPath: directory,
                                                                       outputDirectoryPath: "/\(staging.bucket)/\(prefix)", maxItems: Self.maxItems)
        let key = prefix + started.outputFileName
        let deadline = ContinuousClock.now.advanced(by: listingTimeout)
        var delay = Duration.milliseconds(100)
        while try await context.s3.headObject(bucket: staging.bucket, key: key) == nil {
            guard ContinuousClock.now < deadline else {
                throw InboundError(code: "ListingTimeout", message: "the listing of \(directory) (listing id \(started.listingId)) did not appear at s3://\(staging.bucket)/\(key) within \(listingTimeout) — check that connector \(context.connector.name)'s access role may write there (s3:PutObject on s3://\(staging.bucket)/\(prefix)) and that the connector can reach the partner (`ferry test-connection \(context.connector.name)`); until then in-doubt files are resent and reported")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
        let scratch = (journal.path as NSString).deletingLastPathComponent + "/.listing-in-doubt-\(batchID).json"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        _ = try await context.s3.getObject(bucket: staging.bucket, key: key, toFileAt: scratch)
        let data = try Data(contentsOf: URL(fileURLWithPath: scratch))
        try? await context.s3.deleteObject(bucket: staging.bucket, key: key)
        return try DirectoryListing.parse(data)
    }
}
