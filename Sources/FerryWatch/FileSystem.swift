internal import CFerrySys
import FerrySystem
internal import Glibc
import Synchronization

/// What fstatat says about a path, reduced to what the watcher decides on.
struct FileStatus {
    enum Kind: Equatable {
        case regular, directory, symbolicLink
        /// fifo, socket or device, named for the debug log.
        case other(String)
    }

    var kind: Kind
    var version: FileVersion

    init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        case S_IFIFO: kind = .other("fifo")
        case S_IFSOCK: kind = .other("socket")
        case S_IFCHR: kind = .other("character device")
        case S_IFBLK: kind = .other("block device")
        default: kind = .other("special file")
        }
        version = FileVersion(info)
    }

    /// fstatat with AT_SYMLINK_NOFOLLOW relative to an open folder (a scan's folder, or a root's held
    /// descriptor with a path below it). nil when it is gone (or unreadable).
    static func of(_ name: String, in folder: Int32) -> FileStatus? {
        var info = stat()
        guard (try? Syscall.retrying("fstatat", path: name) { fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) }) != nil
        else { return nil }
        return FileStatus(info)
    }

    /// Attributes fresh from the file system (statx with AT_STATX_FORCE_SYNC), not from the client's
    /// attribute cache: on NFS and FUSE a cached stat can show an older size or mtime than a remote
    /// writer has already produced. `path` "" stats `folder` itself. Local file systems answer as
    /// fstatat would; kernels without statx (ENOSYS, before 4.11) get a plain fstatat.
    static func freshInfo(_ path: String, in folder: Int32) throws(WatchError) -> stat {
        var info = stat()
        let flags = path.isEmpty ? ferry_at_empty_path : AT_SYMLINK_NOFOLLOW
        do {
            try Syscall.retrying("statx(AT_STATX_FORCE_SYNC)", path: path.isEmpty ? nil : path) {
                ferry_stat_synced(folder, path, flags, &info)
            }
        } catch where error.errno == .noFunction {
            try Syscall.retrying("fstatat", path: path.isEmpty ? nil : path) {
                path.isEmpty ? fstat(folder, &info) : fstatat(folder, path, &info, AT_SYMLINK_NOFOLLOW)
            }
        }
        return info
    }

    /// `of(_:in:)` with attributes fresh from the file system (`freshInfo`).
    static func fresh(_ name: String, in folder: Int32) -> FileStatus? {
        (try? freshInfo(name, in: folder)).map(FileStatus.init)
    }
}

/// One folder's entries, opened below a root's descriptor without following any link, so a folder
/// replaced by a link (or reached through one) is not entered.
struct FolderListing {
    enum EntryType { case regular, directory, symbolicLink, unknown, other }

    /// Lists the folder at `relativeFolder` below `root` ("" for the root itself), calling `body` with
    /// the open folder descriptor, each name and its d_type. Names that are not valid UTF-8 are skipped
    /// (their count is returned): ferry could not name them byte-exactly, so it never acts on them.
    /// Throws the open error (ENOENT, ENOTDIR, ELOOP when it became a link, EACCES).
    @discardableResult
    static func read(_ relativeFolder: String, below root: Int32, _ body: (Int32, String, EntryType) -> Void) throws(WatchError) -> Int {
        let descriptor = try SafeOpen.below(root, relativeFolder.isEmpty ? "." : relativeFolder,
                                            flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard let folder = fdopendir(descriptor) else {
            let code = Glibc.errno
            close(descriptor)
            throw Syscall.failure("fdopendir", path: relativeFolder, errno: code)
        }
        defer { closedir(folder) }
        var undecodable = 0
        while let entry = readdir(folder) {
            let decoded = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(validatingCString: $0) }
            }
            guard let name = decoded else {
                undecodable += 1
                continue
            }
            if name == "." || name == ".." { continue }
            let type: EntryType
            switch Int32(entry.pointee.d_type) {
            case Int32(DT_REG): type = .regular
            case Int32(DT_DIR): type = .directory
            case Int32(DT_LNK): type = .symbolicLink
            case Int32(DT_UNKNOWN): type = .unknown
            default: type = .other
            }
            body(descriptor, name, type)
        }
        return undecodable
    }
}

/// Opens paths so that no component is ever a symbolic link: roots from `/`, everything else below a
/// root's held descriptor. A parent folder swapped for a link (tenantA → tenantB) can then never
/// redirect a scan, a stat or an open to another tree.
enum SafeOpen {
    /// openat2 arrived in Linux 5.6; on older kernels (ENOSYS) each component is opened in turn.
    private static let hasOpenat2 = Atomic<Bool>(true)

    /// Opens `path` relative to `folder` (absolute `path`: `folder` is ignored), refusing a link in any
    /// component with ELOOP (ENOTDIR from the fallback for a link in the middle) and, for relative
    /// paths, any escape from `folder`. `path` must not contain `..`.
    static func below(_ folder: Int32, _ path: String, flags: Int32) throws(WatchError) -> Int32 {
        let absolute = path.utf8.first == UInt8(ascii: "/")
        if hasOpenat2.load(ordering: .relaxed) {
            do {
                return try Syscall.retrying("openat2", path: path) {
                    ferry_open_no_symlinks(absolute ? AT_FDCWD : folder, path, flags, absolute ? 0 : 1)
                }
            } catch {
                // ENOSYS: an old kernel; EPERM: a seccomp filter that does not know openat2.
                guard error.errno == .noFunction || error.errno == .notPermitted else { throw error }
                hasOpenat2.store(false, ordering: .relaxed)
            }
        }
        return try componentWise(absolute ? AT_FDCWD : folder, path, flags: flags)
    }

    /// The fallback: every folder component opened with O_NOFOLLOW|O_DIRECTORY from the previous one.
    static func componentWise(_ start: Int32, _ path: String, flags: Int32) throws(WatchError) -> Int32 {
        var components = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true)
            .map { String(decoding: $0, as: UTF8.self) }
        if path.utf8.first == UInt8(ascii: "/") { components.insert("/", at: 0) }
        guard let last = components.popLast() else {
            return try Syscall.retrying("openat", path: path) { openat(start, ".", flags) }
        }
        var current = start
        defer { if current != start { close(current) } }
        for component in components {
            let next = try Syscall.retrying("openat", path: path) {
                openat(current, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if current != start { close(current) }
            current = next
        }
        return try Syscall.retrying("openat", path: path) { openat(current, last, flags | O_NOFOLLOW) }
    }

    /// The first component of absolute `path` that is a symbolic link, for a message that names it.
    static func firstSymbolicLink(in path: String) -> String? {
        var prefix = ""
        for component in path.utf8.split(separator: UInt8(ascii: "/")) {
            prefix += "/" + String(decoding: component, as: UTF8.self)
            var info = stat()
            guard (try? Syscall.retrying("lstat", path: prefix) { lstat(prefix, &info) }) != nil else { return nil }
            if info.st_mode & S_IFMT == S_IFLNK { return prefix }
        }
        return nil
    }
}

/// A watched root's folder, opened from `/` without following links in any component. Scans, stats
/// and opens below the root go through this descriptor, never through the root's path.
final class RootHandle {
    let fd: Int32
    let device: UInt64
    let inode: UInt64

    /// Why a root's path cannot be used as it is.
    enum Problem: Error {
        case missing
        /// The path leads to another folder than the one held (a mount over it, a new folder).
        case replaced
        case notDirectory
        case symbolicLink(String?)
        case other(WatchError)

        var explanation: String {
            switch self {
            case .missing: "it does not exist"
            case .replaced: "its path now leads to another folder"
            case .notDirectory: "it is not a folder"
            case .symbolicLink(let link?):
                "its path goes through a symbolic link (\(link)), and ferry never follows links in any component: configure the real folder"
            case .symbolicLink(nil):
                "its path goes through a symbolic link, and ferry never follows links in any component: configure the real folder"
            case .other(let error): "\(error)"
            }
        }
    }

    private init(fd: Int32, device: UInt64, inode: UInt64) {
        self.fd = fd
        self.device = device
        self.inode = inode
    }

    deinit { close(fd) }

    /// Resolves `root` from `/` with no symbolic link in any component and opens it as a folder.
    static func open(_ root: String) -> Result<RootHandle, Problem> {
        let fd: Int32
        do {
            fd = try SafeOpen.below(AT_FDCWD, root, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        } catch {
            switch error.errno {
            case .noSuchFileOrDirectory?: return .failure(.missing)
            case .tooManySymbolicLinkLevels?: return .failure(.symbolicLink(SafeOpen.firstSymbolicLink(in: root)))
            case .notDirectory?:
                // ENOTDIR is also the fallback's answer for a link in the middle of the path.
                if let link = SafeOpen.firstSymbolicLink(in: root) { return .failure(.symbolicLink(link)) }
                return .failure(.notDirectory)
            default: return .failure(.other(error))
            }
        }
        var info = stat()
        do {
            try Syscall.retrying("fstat", path: root) { fstat(fd, &info) }
        } catch {
            close(fd)
            return .failure(.other(error))
        }
        return .success(RootHandle(fd: fd, device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
    }

    /// Which folder a root resolved to, so a later resolution can tell the same folder from another.
    var identity: FileIdentity { FileIdentity(device: device, inode: inode) }
}

/// A file name or path compared and hashed by its UTF-8 bytes, as Linux compares names. Swift's
/// `String ==` is canonical equivalence: NFC "café" and NFD "café" are equal Strings but two files, so
/// every table the watcher keys by name or path uses this instead. Wrapping costs no allocation.
struct ExactString: Hashable, CustomStringConvertible {
    let string: String

    init(_ string: String) { self.string = string }

    static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.string.utf8.count == rhs.string.utf8.count && lhs.string.utf8.elementsEqual(rhs.string.utf8)
    }

    func hash(into hasher: inout Hasher) {
        let hashed: Void? = string.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil { for byte in string.utf8 { hasher.combine(byte) } }
        hasher.combine(string.utf8.count)
    }

    var description: String { string }
}

extension String {
    /// Byte-wise prefix test: `hasPrefix` compares Characters, so "café/" would match "café/".
    func hasBytePrefix(_ prefix: String) -> Bool {
        utf8.count >= prefix.utf8.count && utf8.starts(with: prefix.utf8)
    }

    /// Byte-wise suffix test, for ready markers.
    func hasByteSuffix(_ suffix: String) -> Bool {
        let count = utf8.count, suffixCount = suffix.utf8.count
        return count >= suffixCount && utf8.dropFirst(count - suffixCount).elementsEqual(suffix.utf8)
    }

    /// The bytes after the first `count` bytes, as a String (the caller cut at a `/` or name boundary).
    func droppingBytes(_ count: Int) -> String {
        String(decoding: utf8.dropFirst(count), as: UTF8.self)
    }

    /// The first `utf8.count - count` bytes, as a String.
    func droppingLastBytes(_ count: Int) -> String {
        String(decoding: utf8.dropLast(count), as: UTF8.self)
    }
}

/// A dictionary keyed by names or paths compared byte for byte (see `ExactString`), with String
/// subscripts so call sites read as before and cannot fall back to `String ==` by accident.
struct NameTable<Value> {
    private(set) var storage: [ExactString: Value] = [:]

    subscript(key: String) -> Value? {
        get { storage[ExactString(key)] }
        set {
            storage[ExactString(key)] = newValue
            if newValue == nil { storage.releaseBurstStorage() }
        }
    }

    /// Removes `key`; a table a burst grew (a folder that held 24,000 files at once) gives its storage back
    /// once mostly empty (`BurstStorage`).
    @discardableResult
    mutating func removeValue(forKey key: String) -> Value? {
        defer { storage.releaseBurstStorage() }
        return storage.removeValue(forKey: ExactString(key))
    }
    mutating func removeAll() { storage.removeAll() }
    var count: Int { storage.count }
    var isEmpty: Bool { storage.isEmpty }
    /// The keys as Strings, byte-exact as they were inserted.
    var keys: [String] { storage.keys.map(\.string) }
    var values: Dictionary<ExactString, Value>.Values { storage.values }
}

/// A set of names or paths compared byte for byte (see `ExactString`).
struct NameSet: Sequence {
    private(set) var storage: Set<ExactString> = []

    @discardableResult
    mutating func insert(_ name: String) -> (inserted: Bool, memberAfterInsert: ExactString) { storage.insert(ExactString(name)) }
    @discardableResult
    mutating func remove(_ name: String) -> ExactString? {
        defer { storage.releaseBurstStorage() }
        return storage.remove(ExactString(name))
    }
    func contains(_ name: String) -> Bool { storage.contains(ExactString(name)) }
    mutating func removeAll() { storage.removeAll() }
    var count: Int { storage.count }
    func makeIterator() -> LazyMapSequence<Set<ExactString>, String>.Iterator { storage.lazy.map(\.string).makeIterator() }
}
