import FerryConfig
import FerryStore
import FerrySystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The bytes fetched for a version are not as many as the listing said: they are not that version's
/// (the S3 object was replaced, or the partner changed the file during the retrieval).
public struct DownloadSizeMismatch: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var expected: Int64
    public var written: Int64
    public var description: String {
        "SizeMismatch: the retrieved copy of \(RemoteName.printable(path)) has \(written) bytes where the listing said \(expected); it is not placed, and is retrieved again while the partner lists the file"
    }
}

/// The bytes fetched for a version are already in download_to at `path`, placed for an earlier version
/// of the name whose retrieval read this version (the partner replaced the file, same size, between that
/// version's listing and its retrieval): not placed a second time.
struct BytesAlreadyPlaced: Error, Sendable {
    var path: String
    /// The object's ETag, journaled with the version so that the path's last placement is known by it.
    var eTag: String
}

/// Places retrieved files into `download_to` so that a reader there never sees a partial file and a crash
/// at any instant neither loses a file nor leaves two copies of it.
///
/// The order, each step durable before the next: create the temporary file (a dot-name ending in
/// `.part`, which the default ignores hide from an outbound rule watching the same folder) and fsync the
/// folder → journal `downloading(temp, final)` → write and fsync the temporary file → move it to its final
/// name → fsync the folder → journal `downloaded`. The temporary file's inode is journaled with the plan:
/// link() and rename() keep it, so on restart a final file with that inode proves the move happened. A
/// temporary file that is gone proves nothing (an operator or a cleanup job may have removed it): without
/// a final file that is ours, the version is downloaded again.
public struct DownloadPlacement: Sendable {
    public let directory: String
    public let onConflict: OnConflict

    public init(directory: String, onConflict: OnConflict) {
        self.directory = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.onConflict = onConflict
    }

    /// The temporary file for journal file `id`: fixed per file, so a restart finds (and reuses) it.
    public func temporaryPath(for id: Int64) -> String {
        "\(directory)/.ferry-download-\(id).part"
    }

    /// "name (n).ext": the name on_conflict=rename gives the n-th copy. The stem is shortened (whole
    /// characters) when the result would pass Linux's 255-byte name limit, so a long name that collides
    /// is placed rather than failing with ENAMETOOLONG.
    public static func conflictName(_ name: String, _ n: Int) -> String {
        var stem = Substring(name)
        var ext = Substring("")
        if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            stem = name[..<dot]
            ext = name[dot...]
        }
        let suffix = " (\(n))"
        while !stem.isEmpty, stem.utf8.count + suffix.utf8.count + ext.utf8.count > 255 { stem.removeLast() }
        if stem.isEmpty {
            // An extension alone near the limit: shorten it instead, keeping the counter visible.
            var whole = Substring(name)
            while !whole.isEmpty, whole.utf8.count + suffix.utf8.count > 255 { whole.removeLast() }
            return "\(whole)\(suffix)"
        }
        return "\(stem)\(suffix)\(ext)"
    }

    /// Where a file called `name` should go, or nil when on_conflict=skip and the name is taken.
    public func finalPath(for name: String) -> String? {
        let plain = "\(directory)/\(name)"
        guard Self.exists(plain) else { return plain }
        switch onConflict {
        case .overwrite: return plain
        case .skip: return nil
        case .rename:
            var n = 1
            while Self.exists("\(directory)/\(Self.conflictName(name, n))") { n += 1 }
            return "\(directory)/\(Self.conflictName(name, n))"
        }
    }

    /// The outcome of placing one file.
    public enum Outcome: Sendable, Equatable {
        /// On disk at this path.
        case placed(String)
        /// on_conflict=skip and the name was taken; nothing written.
        case skipped(String)
    }

    /// Places (or, after a restart, finishes placing) journal file `file`: `fill` writes the content to the
    /// path it is given. The journal records each step as described on the type.
    public func place(_ file: InboundFile, journal: Journal, fill: (String) async throws -> Void) async throws -> Outcome {
        let temp = temporaryPath(for: file.id)
        var final: String
        var resumed = false
        if file.state == .downloading, let planned = file.localPath, file.tempPath == temp {
            if !Self.exists(temp), isOurs(planned, file) {
                // The move into place happened before the crash: the final name holds our inode.
                try journal.markDownloaded(file.id, localPath: planned)
                return .placed(planned)
            }
            resumed = Self.exists(temp)
        }
        if resumed, let planned = file.localPath {
            if let linked = try linkedTwin(temp, planned) {
                // The crash fell between link() and unlink(): the file is in place under both names.
                try unlink(temp)
                try syncDirectory()
                try journal.markDownloaded(file.id, localPath: linked)
                return .placed(linked)
            }
            final = planned
        } else {
            guard let planned = finalPath(for: file.name) else {
                let existing = "\(directory)/\(file.name)"
                try journal.markDownloaded(file.id, localPath: nil, note: Self.skipNote(file.name))
                return .skipped(existing)
            }
            final = planned
            let inode = try createEmpty(temp)
            try syncDirectory()
            try journal.planDownload(file.id, tempPath: temp, finalPath: final, tempInode: inode)
        }
        try await fill(temp)
        let written = try syncFile(temp)
        if let expected = file.size, written != expected {
            throw DownloadSizeMismatch(path: file.remotePath, expected: expected, written: written)
        }
        final = try moveIntoPlace(temp, final, file: file, journal: journal)
        if final.isEmpty {
            let existing = "\(directory)/\(file.name)"
            try journal.markDownloaded(file.id, localPath: nil, note: Self.skipNote(file.name))
            return .skipped(existing)
        }
        try journal.markDownloaded(file.id, localPath: final)
        return .placed(final)
    }

    /// Moves the complete temporary file to `final`; returns where it went ("" when skipped). Without
    /// overwrite it never replaces a file that appeared meanwhile: link() fails on an existing name.
    private func moveIntoPlace(_ temp: String, _ planned: String, file: InboundFile, journal: Journal) throws -> String {
        if onConflict == .overwrite {
            try call("rename", "\(temp) to \(planned)") { rename(temp, planned) }
            try syncDirectory()
            return planned
        }
        var final = planned
        var n = 0
        while true {
            do {
                try call("link", "\(temp) to \(final)") { link(temp, final) }
                break
            } catch let error as SystemError where error.errno == .fileExists {
                if onConflict == .skip {
                    try unlink(temp)
                    try syncDirectory()
                    return ""
                }
                n += 1
                if n > 1000 { throw error }
                final = finalPath(for: file.name) ?? final
                // The journal must name the file's real final path before it can appear there.
                try journal.planDownload(file.id, tempPath: temp, finalPath: final)
            }
        }
        try unlink(temp)
        try syncDirectory()
        return final
    }

    /// What the journal and status say of a version on_conflict=skip did not place.
    public static func skipNote(_ name: String) -> String {
        "skipped: download_to already holds \(RemoteName.printable(name)); kept on the partner (on_conflict: skip)"
    }

    /// Whether `path` is the file this placement made: the temporary file's journaled inode, or (for a
    /// plan journaled before inodes were) a regular file of the listed size.
    private func isOurs(_ path: String, _ file: InboundFile) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
        // Inode numbers are reused once freed, so the size must match too where the listing gave one.
        if let size = file.size, Int64(info.st_size) != size { return false }
        if let inode = file.tempInode { return UInt64(info.st_ino) == inode }
        return file.size != nil
    }

    /// `planned` if it is the same inode as `temp` (a hard link made just before a crash), else nil.
    private func linkedTwin(_ temp: String, _ planned: String) throws -> String? {
        var a = stat()
        var b = stat()
        guard lstat(temp, &a) == 0, lstat(planned, &b) == 0 else { return nil }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino ? planned : nil
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Creates the empty temporary file and returns its inode.
    private func createEmpty(_ path: String) throws -> UInt64 {
        // O_NOFOLLOW: a symbolic link planted at the temporary name must not redirect the write.
        let fd = try call("create", path) { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o666) }
        defer { close(fd) }
        var info = stat()
        try call("stat", path) { fstat(fd, &info) }
        return UInt64(info.st_ino)
    }

    /// fsyncs the file and returns its size.
    private func syncFile(_ path: String) throws -> Int64 {
        let fd = try call("open", path) { open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        defer { close(fd) }
        try call("fsync", path) { fsync(fd) }
        var info = stat()
        try call("stat", path) { fstat(fd, &info) }
        return Int64(info.st_size)
    }

    private func syncDirectory() throws {
        let fd = try call("open", directory) { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try call("fsync", directory) { fsync(fd) }
    }

    private func unlink(_ path: String) throws {
        try call("remove", path) { Glibc.unlink(path) }
    }

    /// Runs a syscall, retrying EINTR; a -1 result becomes a SystemError naming the action and errno,
    /// with what to do about `download_to` where the errno says it.
    @discardableResult
    private func call(_ operation: String, _ path: String, _ body: () -> Int32) throws -> Int32 {
        try SystemError.retryingInterrupts(body) { errno in
            var advice: String?
            switch errno {
            case .noSuchFileOrDirectory: advice = "create \(directory) or fix download_to"
            case .permissionDenied, .notPermitted: advice = "make \(directory) writable by the user ferry runs as"
            case .noSpace, .diskQuotaExceeded: advice = "the disk under \(directory) is full; free space and the download resumes on the next poll"
            default: break
            }
            return SystemError(operation, path: path, errno: errno, advice: advice)
        }
    }
}
