import FerrySystem
import Foundation
import Synchronization
internal import CCurl

/// What is sent as a request body. File bodies are read with `pread` as libcurl asks for them,
/// so a 5 GiB upload never sits in memory, and every attempt re-reads from `offset`.
enum HTTPBody: Sendable {
    case empty
    case bytes([UInt8])
    case file(descriptor: Int32, offset: Int64, length: Int64)

    var isFile: Bool {
        if case .file = self { return true }
        return false
    }

    var length: Int64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return Int64(b.count)
        case .file(_, _, let length): return length
        }
    }
}

/// Where a successful (2xx) response body goes. Error bodies always stay in memory so they can be decoded.
enum HTTPResponseSink: Sendable {
    case memory
    case file(descriptor: Int32)
}

struct HTTPRequest: Sendable {
    var method: String
    var url: String
    var headers: [(name: String, value: String)]
    var body: HTTPBody = .empty
    var sink: HTTPResponseSink = .memory
    /// Overall limit for this request (metadata endpoints answer fast or not at all).
    var timeout: Duration?
    /// Whether libcurl may send this request a second time by itself. It does so when a pooled
    /// connection it reused dies before any answer byte arrives, which cannot tell "the server closed
    /// an idle connection" from "the server got the request and lost its answer". For a request whose
    /// repeat is not harmless (StartFileTransfer) this is false: it goes out on a new connection, which
    /// libcurl never resends on.
    var mayBeResentByTransport: Bool = true
}

struct HTTPResponse: Sendable {
    var status: Int
    /// The header lines of the final response as received ("Name: value\r\n" each), parsed only when
    /// a header is asked for: most callers want one or two of a dozen.
    var rawHeaders: [UInt8]
    var body: [UInt8]
    /// Bytes written to a file sink.
    var bytesWritten: Int64

    init(status: Int, rawHeaders: [UInt8], body: [UInt8], bytesWritten: Int64) {
        self.status = status
        self.rawHeaders = rawHeaders
        self.body = body
        self.bytesWritten = bytesWritten
    }

    /// The value of the last header called `name` (case-insensitive), trimmed; nil when there is none.
    func header(_ name: String) -> String? {
        var name = name
        return name.withUTF8 { header(named: $0) }
    }

    private func header(named key: UnsafeBufferPointer<UInt8>) -> String? {
        var found: String?
        rawHeaders.withUnsafeBufferPointer { bytes in
            var lineStart = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
                let colon = lineStart + key.count
                if colon < lineEnd && bytes[colon] == UInt8(ascii: ":")
                    && (0..<key.count).allSatisfy({ ASCII.lower(bytes[lineStart + $0]) == ASCII.lower(key[$0]) }) {
                    var start = colon + 1
                    var end = lineEnd
                    while start < end && ASCII.isSpace(bytes[start]) { start += 1 }
                    while end > start && ASCII.isSpace(bytes[end - 1]) { end -= 1 }
                    found = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
                }
                lineStart = lineEnd + 1
            }
        }
        return found
    }
}

/// A transport failure: no HTTP response arrived (or it broke off).
struct HTTPTransportError: Error, CustomStringConvertible {
    var curlCode: Int
    var message: String
    var isTimeout: Bool
    /// False only when it is proven that no byte of the request was written to a connection (it
    /// failed while resolving, connecting or in the TLS handshake, or never left the queue); true
    /// otherwise, including every case where that cannot be told.
    var requestMayHaveBeenSent: Bool = true
    var description: String { message }

    /// The client was shut down before the request was handed to libcurl: asking again cannot help.
    static let shutDown = HTTPTransportError(curlCode: -2, message: "the AWS client was shut down", isTimeout: false,
                                             requestMayHaveBeenSent: false)
    /// The client was shut down while the request was in flight: it may have been sent.
    static let shutDownInFlight = HTTPTransportError(curlCode: -2, message: "the AWS client was shut down while the request was in flight",
                                                     isTimeout: false, requestMayHaveBeenSent: true)
    var isShutDown: Bool { curlCode == Self.shutDown.curlCode }

    /// libcurl results that are only ever returned before a request byte is written: name
    /// resolution, the TCP connect (to the endpoint or the proxy), the proxy handshake, TLS set-up and
    /// certificate checks, and setting up the transfer. Everything else (CURLE_SEND_ERROR, which may
    /// follow a partial write, CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_PARTIAL_FILE, timeouts...) may
    /// come after the request went out.
    static let failsBeforeSending: Set<UInt32> = [
        CURLE_UNSUPPORTED_PROTOCOL, CURLE_FAILED_INIT, CURLE_URL_MALFORMAT, CURLE_NOT_BUILT_IN,
        CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_PROXY,
        CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED,
        CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ENGINE_INITFAILED,
        CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
    ].reduce(into: Set<UInt32>()) { $0.insert($1.rawValue) }
}

/// Settings of the shared connection pool.
struct HTTPClientSettings: Sendable {
    var maxConcurrentRequests: Int = 32
    var connectTimeout: Duration = .seconds(10)
    /// A transfer slower than 1 byte/s for this long is abandoned (and retried).
    var lowSpeedTimeout: Duration = .seconds(60)
    var caBundle: String?
    var proxyEnvironment: [String: String] = ProcessInfo.processInfo.environment
}

private let curlGlobalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

/// One request in flight: owns its curl easy handle and header list, frees them in deinit.
private final class CurlTransfer: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    var headerList: UnsafeMutablePointer<curl_slist>?
    let request: HTTPRequest
    var continuation: CheckedContinuation<HTTPResponse, Error>?
    var readOffset: Int64 = 0
    var responseHeaders: [UInt8] = []
    var responseBody: [UInt8] = []
    var written: Int64 = 0
    var localError: String?

    init(request: HTTPRequest) throws {
        guard let easy = EasyHandles.shared.take() else {
            throw HTTPTransportError(curlCode: -1, message: "libcurl could not create a handle (out of memory?)", isTimeout: false)
        }
        self.easy = easy
        self.request = request
    }

    deinit {
        curl_slist_free_all(headerList)
        EasyHandles.shared.give(easy)
    }

    var status: Int {
        var code: Int = 0
        _ = ferry_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
        return code
    }
}

/// Idle easy handles, reset and reused: creating one per request (and its buffers) showed in profiles.
/// Connections belong to the multi handle's pool, not to easy handles, so reuse carries no state over.
private final class EasyHandles: @unchecked Sendable {
    static let shared = EasyHandles()
    private let lock = NSLock()
    private var idle: [UnsafeMutableRawPointer] = []

    func take() -> UnsafeMutableRawPointer? {
        lock.lock()
        let handle = idle.popLast()
        lock.unlock()
        return handle ?? curl_easy_init()
    }

    func give(_ handle: UnsafeMutableRawPointer) {
        curl_easy_reset(handle)
        lock.lock()
        if idle.count < 64 {
            idle.append(handle)
            lock.unlock()
        } else {
            lock.unlock()
            curl_easy_cleanup(handle)
        }
    }
}

private func transfer(from userdata: UnsafeMutableRawPointer?) -> CurlTransfer {
    Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
}

private let readCallback: ferry_curl_data_callback = { buffer, size, count, userdata in
    let t = transfer(from: userdata)
    let capacity = size * count
    switch t.request.body {
    case .empty, .bytes:
        return 0  // in-memory bodies are handed to libcurl whole (CURLOPT_COPYPOSTFIELDS)
    case .file(let fd, let offset, let length):
        let want = min(Int64(capacity), length - t.readOffset)
        if want <= 0 { return 0 }
        while true {
            let n = pread(fd, buffer, Int(want), off_t(offset + t.readOffset))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                t.localError = n < 0 ? "\(SystemError.last("reading the upload body"))"
                                     : "the file being uploaded shrank while it was sent"
                return size_t(CURL_READFUNC_ABORT)
            }
            t.readOffset += Int64(n)
            return n
        }
    }
}

private let writeCallback: ferry_curl_data_callback = { buffer, size, count, userdata in
    let t = transfer(from: userdata)
    let total = size * count
    if case .file(let fd) = t.request.sink, (200..<300).contains(t.status) {
        var done = 0
        while done < total {
            let n = pwrite(fd, buffer! + done, total - done, off_t(t.written))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                t.localError = "\(SystemError.last("writing the download"))"
                return 0
            }
            done += n
            t.written += Int64(n)
        }
        return total
    }
    // Error bodies are small XML/JSON documents; cap them so a misbehaving server cannot fill memory.
    if t.responseBody.count < 1 << 20 {
        t.responseBody.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: total))
    }
    return total
}

private let headerCallback: ferry_curl_data_callback = { buffer, size, count, userdata in
    let t = transfer(from: userdata)
    let total = size * count
    let bytes = UnsafeRawBufferPointer(start: buffer, count: total)
    if total >= 5 && bytes[0] == UInt8(ascii: "H") && bytes[1] == UInt8(ascii: "T") && bytes[2] == UInt8(ascii: "T") && bytes[3] == UInt8(ascii: "P") && bytes[4] == UInt8(ascii: "/") {
        t.responseHeaders.removeAll(keepingCapacity: true)  // a new status line (after 100 Continue) starts a new header block
        t.responseHeaders.reserveCapacity(512)
    } else if bytes.contains(UInt8(ascii: ":")) {
        t.responseHeaders.append(contentsOf: bytes)  // parsed when asked for: HTTPResponse.header(_:)
    }
    return total
}

private func client(from userp: UnsafeMutableRawPointer?) -> HTTPClient {
    Unmanaged<HTTPClient>.fromOpaque(userp!).takeUnretainedValue()
}

private let socketCallback: ferry_curl_socket_callback = { _, socket, what, userp, _ in
    sockets(from: userp).watch(socket, what: what)
    return 0
}

private func sockets(from pointer: UnsafeMutableRawPointer?) -> SocketTable {
    Unmanaged<SocketTable>.fromOpaque(pointer!).takeUnretainedValue()
}

private let openSocketCallback: ferry_curl_opensocket_callback = { clientp, _, address in
    guard let address else { return CURL_SOCKET_BAD }
    // Close-on-exec: a credential_process child must not hold our connections open.
    let fd = socket(address.pointee.family, address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue), address.pointee.protocol)
    if fd >= 0 { sockets(from: clientp).opened(fd) }
    return fd < 0 ? CURL_SOCKET_BAD : fd
}

private let closeSocketCallback: ferry_curl_closesocket_callback = { clientp, socket in
    sockets(from: clientp).closing(socket)
    return close(socket)
}

private let timerCallback: ferry_curl_timer_callback = { _, timeoutMilliseconds, userp in
    client(from: userp).timerDeadline = timeoutMilliseconds < 0 ? nil : ContinuousClock.now + .milliseconds(timeoutMilliseconds)
    return 0
}

/// libcurl's sockets and the epoll set that watches them, kept by libcurl's callbacks (all called
/// from inside libcurl calls on the HTTP thread, or from `curl_multi_cleanup` once that has stopped).
///
/// A connection socket stays registered while its connection idles in the pool, so the next request
/// on it costs no epoll_ctl. Only sockets libcurl opens and closes through our callbacks are kept so:
/// others (its resolver's socketpair) are closed with plain close(), and a registration believed
/// current for a reused descriptor number would leave a new socket unwatched and its request hung.
private final class SocketTable: @unchecked Sendable {
    let epollFD: Int32
    /// Connection sockets open now (CURLOPT_OPENSOCKETFUNCTION until CURLOPT_CLOSESOCKETFUNCTION).
    private var connections: Set<Int32> = []
    /// The events each socket is registered for in the epoll set.
    private var registered: [Int32: UInt32] = [:]
    /// The sockets libcurl waits on now (CURLMOPT_SOCKETFUNCTION, until CURL_POLL_REMOVE).
    private(set) var wanted: Set<Int32> = []

    init(epollFD: Int32) { self.epollFD = epollFD }

    func opened(_ fd: Int32) { connections.insert(fd) }

    /// libcurl is about to close `fd`: it leaves the set first (a forked child may still share it).
    func closing(_ fd: Int32) {
        connections.remove(fd)
        wanted.remove(fd)
        if registered.removeValue(forKey: fd) != nil { _ = ferry_epoll_set(epollFD, EPOLL_CTL_DEL, fd, 0) }
    }

    /// CURLMOPT_SOCKETFUNCTION: which sockets to wait on, for what.
    func watch(_ fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            wanted.remove(fd)
            if !connections.contains(fd), registered.removeValue(forKey: fd) != nil {
                _ = ferry_epoll_set(epollFD, EPOLL_CTL_DEL, fd, 0)
            }
            return
        }
        var events: UInt32 = 0
        if what == CURL_POLL_IN || what == CURL_POLL_INOUT { events |= EPOLLIN.rawValue }
        if what == CURL_POLL_OUT || what == CURL_POLL_INOUT { events |= EPOLLOUT.rawValue }
        wanted.insert(fd)
        let current = registered[fd]
        if current == events { return }
        registered[fd] = events
        // Should our bookkeeping ever disagree with the kernel's (a descriptor closed and reused
        // unnoticed), the other operation puts it right: a socket left unwatched would hang its request.
        if current == nil {
            if ferry_epoll_set(epollFD, EPOLL_CTL_ADD, fd, events) != 0 && errno == EEXIST {
                _ = ferry_epoll_set(epollFD, EPOLL_CTL_MOD, fd, events)
            }
        } else if ferry_epoll_set(epollFD, EPOLL_CTL_MOD, fd, events) != 0 && errno == ENOENT {
            _ = ferry_epoll_set(epollFD, EPOLL_CTL_ADD, fd, events)
        }
    }

    /// An event on a socket libcurl is not waiting on: an idle pooled connection the server closed
    /// (libcurl notices when it next checks the connection). It leaves the set, or its level-triggered
    /// event would wake the thread again and again.
    func unwanted(_ fd: Int32) {
        registered.removeValue(forKey: fd)
        _ = ferry_epoll_set(epollFD, EPOLL_CTL_DEL, fd, 0)
    }
}

/// HTTP over one libcurl multi handle: a single connection pool shared by every request, driven on
/// its own thread with epoll and `curl_multi_socket_action`.
///
/// That thread is also a `TaskExecutor`. A task that prefers it (`withTaskExecutorPreference`) runs its
/// code between network events on the same thread that drives libcurl: starting a request and resuming
/// the task with its response then cost no thread wake-ups, which on a small machine is most of the CPU
/// a small request costs. Callers that do not prefer it hop here and back, as with any executor.
/// Nothing that blocks may run here: the journal's fsyncs and large hashes go to other executors.
final class HTTPClient: TaskExecutor, @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let settings: HTTPClientSettings
    /// The proxies for http: and https: URLs and the no-proxy list ("" for none), read once.
    private let proxies: (http: String, https: String, none: String)
    private let lock = NSLock()
    private var pending: [CurlTransfer] = []
    private var cancelled: [CurlTransfer] = []
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var stopped = false
    private var thread: Thread?
    private let stoppedSignal = DispatchSemaphore(value: 0)
    /// How many times the driver thread has gone round its loop: a thread that spins shows here.
    private let rounds = Atomic<Int>(0)
    var loopRounds: Int { rounds.load(ordering: .relaxed) }
    /// The driver thread's pthread_t, 0 until it runs.
    private let loopThread = Atomic<UInt>(0)
    /// epoll set of libcurl's sockets and `wakeFD`; only ready sockets cost anything per round.
    private let epollFD: Int32
    /// An eventfd written to wake the driver thread from other threads.
    private let wakeFD: Int32

    // Touched by the driver thread only (libcurl calls the callbacks from inside its calls there).
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    /// libcurl's sockets in the epoll set. Its callbacks point here, not at the client, so that
    /// `curl_multi_cleanup` in deinit never calls into an object being freed.
    private let sockets: SocketTable
    /// When libcurl wants `curl_multi_socket_action(CURL_SOCKET_TIMEOUT)`; nil when it has no timer.
    fileprivate var timerDeadline: ContinuousClock.Instant?

    init(settings: HTTPClientSettings) {
        _ = curlGlobalInit
        self.settings = settings
        let env = settings.proxyEnvironment
        proxies = (http: env["http_proxy"] ?? env["HTTP_PROXY"] ?? env["all_proxy"] ?? env["ALL_PROXY"] ?? "",
                   https: env["https_proxy"] ?? env["HTTPS_PROXY"] ?? env["all_proxy"] ?? env["ALL_PROXY"] ?? "",
                   none: env["no_proxy"] ?? env["NO_PROXY"] ?? "")
        multi = curl_multi_init()
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        precondition(epollFD >= 0 && wakeFD >= 0, "epoll/eventfd unavailable: \(String(cString: strerror(errno)))")
        sockets = SocketTable(epollFD: epollFD)
        _ = ferry_epoll_set(epollFD, EPOLL_CTL_ADD, wakeFD, EPOLLIN.rawValue)
        _ = ferry_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, settings.maxConcurrentRequests)
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = ferry_multi_setopt_socket_callback(multi, socketCallback)
        _ = ferry_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, Unmanaged.passUnretained(sockets).toOpaque())
        _ = ferry_multi_setopt_timer_callback(multi, timerCallback)
        _ = ferry_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, me)
        let thread = Thread { [unowned self] in self.loop() }
        self.thread = thread
        thread.start()
    }

    deinit {
        curl_multi_cleanup(multi)
        close(epollFD)
        close(wakeFD)
    }

    /// Stops the driver thread; requests still queued fail. Tasks that prefer this executor carry on
    /// on the global concurrent executor.
    func shutdown() {
        lock.lock()
        if stopping { lock.unlock(); return }
        stopping = true
        lock.unlock()
        wake()
        stoppedSignal.wait()
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)  // EAGAIN means a wake-up is already pending
    }

    private var onLoopThread: Bool {
        let id = loopThread.load(ordering: .relaxed)
        return id != 0 && pthread_equal(pthread_t(id), pthread_self()) != 0
    }

    // MARK: TaskExecutor

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.lock()
        if stopped {
            lock.unlock()
            globalConcurrentExecutor.enqueue(job)
            return
        }
        jobs.append(job)
        lock.unlock()
        // On the driver thread the job runs before it polls again; from elsewhere it must be woken.
        if !onLoopThread { wake() }
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let t = try CurlTransfer(request: request)
        try configure(t)
        // A cancelled task (SIGTERM, a shutting-down pipeline) must not wait for a 5 GiB upload to end.
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                t.continuation = continuation
                lock.lock()
                if stopping {
                    lock.unlock()
                    continuation.resume(throwing: HTTPTransportError.shutDown)
                    t.continuation = nil
                    return
                }
                pending.append(t)
                lock.unlock()
                if !onLoopThread { wake() }
            }
        } onCancel: {
            lock.lock()
            cancelled.append(t)
            lock.unlock()
            wake()
        }
    }

    private func proxy(for url: String) -> String { url.hasPrefix("https:") ? proxies.https : proxies.http }

    /// Sets a string option. `withCString` hands over a native string's own bytes; the implicit
    /// String-to-pointer conversion of a call argument copied each one into a new array.
    private func setString(_ h: UnsafeMutableRawPointer, _ option: CURLoption, _ value: String) {
        _ = value.withCString { ferry_easy_setopt_string(h, option, $0) }
    }

    /// Appends "name: value" to a header list, assembled on the stack (libcurl copies it).
    private static func append(_ list: UnsafeMutablePointer<curl_slist>?, _ name: String, _ value: String) -> UnsafeMutablePointer<curl_slist>? {
        let length = name.utf8.count + 2 + value.utf8.count
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { line in
            var index = 0
            for byte in name.utf8 { line[index] = CChar(bitPattern: byte); index += 1 }
            line[index] = CChar(UInt8(ascii: ":"))
            line[index + 1] = CChar(UInt8(ascii: " "))
            index += 2
            for byte in value.utf8 { line[index] = CChar(bitPattern: byte); index += 1 }
            line[index] = 0
            return curl_slist_append(list, line.baseAddress)
        }
    }

    private func configure(_ t: CurlTransfer) throws {
        let h = t.easy
        let r = t.request
        setString(h, CURLOPT_URL, r.url)
        _ = ferry_easy_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        // S3 keys may hold "..", "." and "//": libcurl must send the path exactly as signed.
        _ = ferry_easy_setopt_long(h, CURLOPT_PATH_AS_IS, 1)
        _ = ferry_easy_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
        _ = ferry_easy_setopt_long(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)
        // libcurl resends a request by itself only over a reused connection that died (lib/transfer.c,
        // Curl_retry_request; HTTP/2's refused streams aside, and this is HTTP/1.1): a new one never is.
        if !r.mayBeResentByTransport { _ = ferry_easy_setopt_long(h, CURLOPT_FRESH_CONNECT, 1) }
        _ = ferry_easy_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(settings.connectTimeout.components.seconds * 1000))
        _ = ferry_easy_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1)
        _ = ferry_easy_setopt_long(h, CURLOPT_LOW_SPEED_TIME, Int(settings.lowSpeedTimeout.components.seconds))
        // Certificate checks are never switched off; a private CA is added with ca_bundle instead.
        _ = ferry_easy_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1)
        _ = ferry_easy_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2)
        if let timeout = r.timeout {
            _ = ferry_easy_setopt_long(h, CURLOPT_TIMEOUT_MS, Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
            _ = ferry_easy_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        }
        if let ca = settings.caBundle { setString(h, CURLOPT_CAINFO, ca) }
        // libcurl ignores upper-case HTTP_PROXY on purpose; the AWS SDKs honour it, so set the proxy ourselves.
        setString(h, CURLOPT_PROXY, proxy(for: r.url))
        // Always set, even empty: unset, libcurl reads no_proxy/NO_PROXY from the environment on every request.
        setString(h, CURLOPT_NOPROXY, proxies.none)
        let me = Unmanaged.passUnretained(t).toOpaque()
        _ = ferry_easy_setopt_pointer(h, CURLOPT_PRIVATE, me)
        _ = ferry_easy_setopt_callback(h, CURLOPT_WRITEFUNCTION, writeCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_WRITEDATA, me)
        _ = ferry_easy_setopt_callback(h, CURLOPT_HEADERFUNCTION, headerCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_HEADERDATA, me)
        _ = ferry_easy_setopt_callback(h, CURLOPT_READFUNCTION, readCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_READDATA, me)
        let table = Unmanaged.passUnretained(sockets).toOpaque()
        _ = ferry_easy_setopt_opensocket_callback(h, openSocketCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_OPENSOCKETDATA, table)
        _ = ferry_easy_setopt_closesocket_callback(h, closeSocketCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_CLOSESOCKETDATA, table)
        switch r.method {
        case _ where !r.body.isFile && r.body.length > 0:
            // A body in memory goes with the headers in one write (libcurl does that up to 64 KiB).
            if case .bytes(let bytes) = r.body {
                _ = ferry_easy_setopt_offset(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count))
                bytes.withUnsafeBytes { _ = ferry_easy_setopt_pointer(h, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress!)) }
            }
            if r.method != "POST" { setString(h, CURLOPT_CUSTOMREQUEST, r.method) }
        case "GET": break
        case "HEAD": _ = ferry_easy_setopt_long(h, CURLOPT_NOBODY, 1)
        case "PUT":
            _ = ferry_easy_setopt_long(h, CURLOPT_UPLOAD, 1)
            _ = ferry_easy_setopt_offset(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(r.body.length))
        case "POST":
            _ = ferry_easy_setopt_long(h, CURLOPT_POST, 1)
            _ = ferry_easy_setopt_offset(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(r.body.length))
        default:
            setString(h, CURLOPT_CUSTOMREQUEST, r.method)
        }
        var list: UnsafeMutablePointer<curl_slist>?
        var hasContentType = false
        for (name, value) in r.headers {
            list = Self.append(list, name, value)
            if ASCII.equalIgnoringCase(name, "Content-Type") { hasContentType = true }
        }
        // An empty "Expect:" stops the 100-continue round trip; "Accept:" and a content type that libcurl
        // would invent for POST are removed so only what was signed describes the body.
        list = curl_slist_append(list, "Expect:")
        list = curl_slist_append(list, "Accept:")
        if r.method == "POST" || r.body.length > 0, !hasContentType {
            list = curl_slist_append(list, "Content-Type:")
        }
        t.headerList = list
        _ = ferry_easy_setopt_slist(h, CURLOPT_HTTPHEADER, list)
    }

    private func loop() {
        loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        ferry_name_this_thread("ferry-http")
        let executor = asUnownedTaskExecutor()
        var readyFDs = [Int32](repeating: 0, count: 64)
        var readyEvents = [UInt32](repeating: 0, count: 64)
        var running: Int32 = 0
        while true {
            rounds.add(1, ordering: .relaxed)
            lock.lock()
            let stop = stopping
            // On the way out jobs stay queued: the shutdown below hands them to the global executor.
            let toRun = stop ? [] : jobs
            if !stop { jobs = [] }
            lock.unlock()
            if stop { break }
            // Tasks first: they may start requests, which then go out in this same round.
            for job in toRun { job.runSynchronously(on: executor) }
            lock.lock()
            let toCancel = cancelled
            cancelled = []
            var toAdd: [CurlTransfer] = []
            while !pending.isEmpty && active.count + toAdd.count < settings.maxConcurrentRequests {
                toAdd.append(pending.removeFirst())
            }
            lock.unlock()
            for t in toCancel {
                if active.removeValue(forKey: t.easy) != nil {
                    curl_multi_remove_handle(multi, t.easy)
                } else {
                    lock.lock()
                    pending.removeAll { $0 === t }
                    lock.unlock()
                }
                t.continuation?.resume(throwing: CancellationError())
                t.continuation = nil
            }
            for t in toAdd where t.continuation != nil {
                active[t.easy] = t
                curl_multi_add_handle(multi, t.easy)  // sets a timer of 0: started below
            }
            // Sleep until a socket is ready, libcurl's timer is due, or another thread wakes us; not at
            // all when tasks resumed in this round are waiting to run.
            lock.lock()
            let busy = !jobs.isEmpty || !cancelled.isEmpty || (!pending.isEmpty && active.count < settings.maxConcurrentRequests)
            lock.unlock()
            var timeout: Int32 = 1000
            if busy {
                timeout = 0
            } else if let deadline = timerDeadline {
                let left = deadline - ContinuousClock.now
                timeout = left <= .zero ? 0 : Int32(min(1000, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
            }
            let count = ferry_epoll_wait(epollFD, &readyFDs, &readyEvents, 64, timeout)
            for index in 0 ..< max(0, Int(count)) {
                let fd = readyFDs[index]
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                    continue
                }
                if !sockets.wanted.contains(fd) {
                    sockets.unwanted(fd)
                    continue
                }
                let events = readyEvents[index]
                var mask: Int32 = 0
                if events & EPOLLIN.rawValue != 0 { mask |= CURL_CSELECT_IN }
                if events & EPOLLOUT.rawValue != 0 { mask |= CURL_CSELECT_OUT }
                if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { mask |= CURL_CSELECT_ERR }
                curl_multi_socket_action(multi, fd, mask, &running)
            }
            if let deadline = timerDeadline, deadline <= ContinuousClock.now {
                timerDeadline = nil  // libcurl sets the next one from inside the call
                curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running)
            }
            var queued: Int32 = 0
            while let message = curl_multi_info_read(multi, &queued) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let code = ferry_curlmsg_result(message)
                curl_multi_remove_handle(multi, easy)
                guard let t = active.removeValue(forKey: easy) else { continue }
                finish(t, code: code)
            }
        }
        // Shutting down: fail everything still queued or in flight, and hand waiting tasks to the
        // global executor so none is left suspended on a thread that is gone.
        lock.lock()
        let leftovers = pending
        pending = []
        stopped = true
        let orphans = jobs
        jobs = []
        lock.unlock()
        for t in leftovers {
            t.continuation?.resume(throwing: HTTPTransportError.shutDown)
        }
        for t in active.values {
            curl_multi_remove_handle(multi, t.easy)
            t.continuation?.resume(throwing: HTTPTransportError.shutDownInFlight)
        }
        active = [:]
        for job in orphans { globalConcurrentExecutor.enqueue(job) }
        stoppedSignal.signal()
    }

    private func finish(_ t: CurlTransfer, code: CURLcode) {
        let continuation = t.continuation
        t.continuation = nil
        if code == CURLE_OK {
            continuation?.resume(returning: HTTPResponse(status: t.status, rawHeaders: t.responseHeaders, body: t.responseBody, bytesWritten: t.written))
        } else {
            let text = t.localError ?? String(cString: curl_easy_strerror(code))
            continuation?.resume(throwing: HTTPTransportError(curlCode: Int(code.rawValue), message: text,
                                                              isTimeout: code == CURLE_OPERATION_TIMEDOUT,
                                                              requestMayHaveBeenSent: mayHaveBeenSent(t, code)))
        }
    }

    /// Whether any byte of a failed request may have been written (see `HTTPTransportError.requestMayHaveBeenSent`).
    private func mayHaveBeenSent(_ t: CurlTransfer, _ code: CURLcode) -> Bool {
        if HTTPTransportError.failsBeforeSending.contains(code.rawValue) { return false }
        // A timeout during the connect of a new connection (a silent firewall, a full accept queue)
        // is still a failure to connect. Proven only on a connection libcurl had to open for this
        // request: the connect time of a reused one says nothing. All three must agree: connected
        // never, request bytes written none, body bytes written none.
        guard code == CURLE_OPERATION_TIMEDOUT, !t.request.mayBeResentByTransport else { return true }
        var connectMicroseconds: curl_off_t = -1
        var uploaded: curl_off_t = -1
        var requestBytes: Int = -1
        guard ferry_easy_getinfo_offset(t.easy, CURLINFO_CONNECT_TIME_T, &connectMicroseconds) == CURLE_OK,
              ferry_easy_getinfo_offset(t.easy, CURLINFO_SIZE_UPLOAD_T, &uploaded) == CURLE_OK,
              ferry_easy_getinfo_long(t.easy, CURLINFO_REQUEST_SIZE, &requestBytes) == CURLE_OK else { return true }
        return !(connectMicroseconds == 0 && uploaded == 0 && requestBytes == 0)
    }
}
