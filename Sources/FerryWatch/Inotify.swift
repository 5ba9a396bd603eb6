import FerrySystem
internal import Glibc
import Dispatch
import Synchronization
import SystemPackage

/// One event as the kernel reported it; `name` is empty for events about the watched folder itself.
struct InotifyEvent: Sendable {
    var wd: Int32
    var mask: UInt32
    var cookie: UInt32
    var name: String
    /// The kernel's name was not valid UTF-8; `name` is empty and must not be used.
    var undecodableName = false

    func has(_ flag: UInt32) -> Bool { mask & flag != 0 }
}

/// The inotify flags the watcher uses, typed once so call sites need no casts.
enum InotifyFlag {
    static let closeWrite = UInt32(IN_CLOSE_WRITE)
    static let movedFrom = UInt32(IN_MOVED_FROM)
    static let movedTo = UInt32(IN_MOVED_TO)
    static let create = UInt32(IN_CREATE)
    static let delete = UInt32(IN_DELETE)
    static let attrib = UInt32(IN_ATTRIB)
    static let deleteSelf = UInt32(IN_DELETE_SELF)
    static let moveSelf = UInt32(IN_MOVE_SELF)
    static let unmount = UInt32(IN_UNMOUNT)
    static let ignored = UInt32(IN_IGNORED)
    static let overflow = UInt32(IN_Q_OVERFLOW)
    static let isDir = UInt32(IN_ISDIR)
    static let onlyDir = UInt32(IN_ONLYDIR)
    static let dontFollow = UInt32(IN_DONT_FOLLOW)
    static let excludeUnlinked = UInt32(IN_EXCL_UNLINK)

    /// What a watched folder subscribes to. No IN_MODIFY: the settle check compares stat results, so
    /// one event per write() would only cost CPU; IN_CREATE is needed for new folders.
    static let folderMask = closeWrite | movedFrom | movedTo | create | delete | attrib | deleteSelf | moveSelf
        | onlyDir | dontFollow | excludeUnlinked
}

/// Owns an inotify descriptor and the pipe that wakes its reader thread; both are closed in deinit.
///
/// The reader thread blocks in poll() with no timeout, so an idle watcher costs no wakeups. It hands
/// batches to `deliver` and then waits for a credit (`batchConsumed()`), so a slow consumer leaves
/// events in the kernel queue, whose overflow the watcher handles with a rescan, instead of growing
/// memory without bound.
final class Inotify: @unchecked Sendable {
    let fd: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// Batches the reader may hand over before the consumer catches up. Created at 0 and signalled up
    /// because libdispatch traps when a semaphore is freed below its initial value.
    private let credits = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    /// Times the reader thread returned from poll(); an idle watcher keeps this still.
    let readerWakeups = Atomic<Int>(0)
    /// `/proc/<pid>/task/<tid>` of the reader thread once it runs, for schedstat checks.
    let readerThreadProcPath = Mutex<String?>(nil)
    private var thread: pthread_t?

    init() throws(WatchError) {
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if descriptor < 0 {
            let code = Glibc.errno
            if code == EMFILE {
                let limit = Syscall.readSysctl("fs.inotify.max_user_instances").map(String.init) ?? "unknown"
                throw WatchError(code: .tooManyInstances, cause: SystemError("inotify_init1", code: code), message:
                    "cannot create an inotify instance: fs.inotify.max_user_instances (now \(limit)) is used up; raise it with `sysctl fs.inotify.max_user_instances=1024` and persist it in /etc/sysctl.d/")
            }
            throw Syscall.failure("inotify_init1", path: nil, errno: code)
        }
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) != 0 {
            let code = Glibc.errno
            close(descriptor)
            throw Syscall.failure("pipe", path: nil, errno: code)
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        fd = descriptor
        wakeRead = ends[0]
        wakeWrite = ends[1]
        credits.signal()
        credits.signal()
    }

    deinit {
        stop()
        close(fd)
        close(wakeRead)
        close(wakeWrite)
    }

    /// Watches the folder open as `folder` (opened without following links), through its
    /// `/proc/self/fd` entry so the kernel resolves no path components again; `path` names it in errors.
    /// Without /proc, the path itself is watched (IN_DONT_FOLLOW still refuses a link as the last part).
    func addWatch(folder: Int32, path: String) throws(WatchError) -> Int32 {
        do {
            // The /proc entry is a link by design: following it is the point, so no IN_DONT_FOLLOW.
            return try addWatch("/proc/self/fd/\(folder)", mask: InotifyFlag.folderMask & ~InotifyFlag.dontFollow, naming: path)
        } catch where error.errno == .noSuchFileOrDirectory && !Self.procIsMounted {
            return try addWatch(path)
        }
    }

    private static let procIsMounted = access("/proc/self/fd", F_OK) == 0

    /// Watches the folder at `path`; returns the watch descriptor (the same one if already watched).
    func addWatch(_ path: String, mask: UInt32 = InotifyFlag.folderMask, naming display: String? = nil) throws(WatchError) -> Int32 {
        let display = display ?? path
        do {
            return try Syscall.retrying("inotify_add_watch", path: display) { inotify_add_watch(fd, path, mask) }
        } catch {
            if error.errno == .noSpace {
                let limit = Syscall.readSysctl("fs.inotify.max_user_watches").map(String.init) ?? "unknown"
                throw WatchError(code: .tooManyWatches, cause: error.cause, message:
                    "cannot watch \(display): the inotify watch limit fs.inotify.max_user_watches (now \(limit)) is used up; raise it with `sysctl fs.inotify.max_user_watches=524288` and persist it in /etc/sysctl.d/")
            }
            throw error
        }
    }

    /// Stops watching `wd`; a descriptor the kernel already dropped (EINVAL) is not an error.
    func removeWatch(_ wd: Int32) {
        _ = try? Syscall.retrying("inotify_rm_watch") { () -> Int32 in
            let result = inotify_rm_watch(fd, wd)
            return result == -1 && Glibc.errno == EINVAL ? 0 : result
        }
    }

    /// Starts the reader thread; `deliver` is called on it with each batch of events.
    func startReader(_ deliver: @escaping @Sendable ([InotifyEvent]) -> Void) throws(WatchError) {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let box = Unmanaged.passRetained(ReaderBox { [self] in readLoop(deliver) }).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { argument in
            let body = Unmanaged<ReaderBox>.fromOpaque(argument!).takeRetainedValue()
            body.run()
            return nil
        }, box)
        if result != 0 {
            Unmanaged<ReaderBox>.fromOpaque(box).release()
            throw Syscall.failure("pthread_create", path: nil, errno: result)
        }
        thread = handle
    }

    /// Gives the reader one more batch of room; called after each delivered batch is processed.
    func batchConsumed() { credits.signal() }

    /// Wakes the reader thread and waits until it has exited. Safe to call more than once.
    func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        credits.signal()
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }

    private func readLoop(_ deliver: @Sendable ([InotifyEvent]) -> Void) {
        readerThreadProcPath.withLock { $0 = Self.currentThreadProcPath() }
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        while !stopping.load(ordering: .relaxed) {
            credits.wait()
            if stopping.load(ordering: .relaxed) { break }
            var descriptors = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&descriptors, 2, -1)
            readerWakeups.add(1, ordering: .relaxed)
            if ready < 0 {
                credits.signal()
                if Glibc.errno == EINTR { continue }
                break
            }
            if descriptors[1].revents != 0 { break }
            // Let a burst accumulate for a moment: a thread handoff per batch of dozens of events
            // instead of one per file is most of the CPU under load, and 10 ms is nothing next to settling.
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            _ = nanosleep(&pause, nil)
            var batch: [InotifyEvent] = []
            // Drain a few buffers per wakeup so a burst costs few thread handoffs, but bound the batch.
            for _ in 0..<8 {
                let count = read(fd, buffer, capacity)
                if count <= 0 { break }
                Self.parse(buffer, count: count, into: &batch)
            }
            if batch.isEmpty {
                credits.signal()
            } else {
                deliver(batch)
            }
        }
    }

    static func parse(_ buffer: UnsafeMutableRawPointer, count: Int, into batch: inout [InotifyEvent]) {
        var offset = 0
        let header = 16
        while offset + header <= count {
            let wd = buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let cookie = buffer.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            let length = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            var name = ""
            var undecodable = false
            if length > 0 {
                let start = buffer.advanced(by: offset + header).assumingMemoryBound(to: UInt8.self)
                var end = 0
                while end < length, start[end] != 0 { end += 1 }
                // Validated, not repaired: a repaired name would be another file's name.
                if let valid = String(validating: UnsafeBufferPointer(start: start, count: end), as: UTF8.self) {
                    name = valid
                } else {
                    undecodable = true
                }
            }
            batch.append(InotifyEvent(wd: wd, mask: mask, cookie: cookie, name: name, undecodableName: undecodable))
            offset += header + length
        }
    }

    private static func currentThreadProcPath() -> String? {
        var target = [UInt8](repeating: 0, count: 128)
        let length = target.withUnsafeMutableBufferPointer { pointer in
            pointer.withMemoryRebound(to: CChar.self) { readlink("/proc/thread-self", $0.baseAddress!, $0.count) }
        }
        guard length > 0 else { return nil }
        return "/proc/" + String(decoding: target[0..<length], as: UTF8.self)
    }
}

private final class ReaderBox {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
