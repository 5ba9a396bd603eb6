import Foundation
internal import CCurl

/// What is sent as a request body. File bodies are read with `pread` as libcurl asks for them,
/// so a 5 GiB upload never sits in memory, and every attempt re-reads from `offset`.
enum HTTPBody: Sendable {
    case empty
    case bytes([UInt8])
    case file(descriptor: Int32, offset: Int64, length: Int64)

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
}

struct HTTPResponse: Sendable {
    var status: Int
    /// Names lower-cased.
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// Bytes written to a file sink.
    var bytesWritten: Int64

    func header(_ name: String) -> String? {
        let key = name.lowercased()
        return headers.last { $0.name == key }?.value
    }
}

/// A transport failure: no HTTP response arrived (or it broke off).
struct HTTPTransportError: Error, CustomStringConvertible {
    var curlCode: Int
    var message: String
    var isTimeout: Bool
    var description: String { message }
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
    var responseHeaders: [(name: String, value: String)] = []
    var responseBody: [UInt8] = []
    var written: Int64 = 0
    var localError: String?

    init(request: HTTPRequest) throws {
        guard let easy = curl_easy_init() else {
            throw HTTPTransportError(curlCode: -1, message: "libcurl could not create a handle (out of memory?)", isTimeout: false)
        }
        self.easy = easy
        self.request = request
    }

    deinit {
        curl_slist_free_all(headerList)
        curl_easy_cleanup(easy)
    }

    var status: Int {
        var code: Int = 0
        _ = ferry_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &code)
        return code
    }
}

private func transfer(from userdata: UnsafeMutableRawPointer?) -> CurlTransfer {
    Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
}

private let readCallback: ferry_curl_data_callback = { buffer, size, count, userdata in
    let t = transfer(from: userdata)
    let capacity = size * count
    switch t.request.body {
    case .empty:
        return 0
    case .bytes(let bytes):
        let n = min(capacity, bytes.count - Int(t.readOffset))
        if n <= 0 { return 0 }
        bytes.withUnsafeBufferPointer { src in
            UnsafeMutableRawPointer(buffer!).copyMemory(from: src.baseAddress! + Int(t.readOffset), byteCount: n)
        }
        t.readOffset += Int64(n)
        return n
    case .file(let fd, let offset, let length):
        let want = min(Int64(capacity), length - t.readOffset)
        if want <= 0 { return 0 }
        while true {
            let n = pread(fd, buffer, Int(want), off_t(offset + t.readOffset))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                t.localError = n < 0 ? "reading the upload body failed: \(String(cString: strerror(errno)))"
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
                t.localError = "writing the download failed: \(String(cString: strerror(errno)))"
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
    // Byte-level parsing: Foundation's trimming bridges through NSString and showed up in profiles.
    let bytes = UnsafeRawBufferPointer(start: buffer, count: total)
    func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
    if total >= 5 && bytes[0] == UInt8(ascii: "H") && bytes[1] == UInt8(ascii: "T") && bytes[2] == UInt8(ascii: "T") && bytes[3] == UInt8(ascii: "P") && bytes[4] == UInt8(ascii: "/") {
        t.responseHeaders = []  // a new status line (after 100 Continue) starts a new header block
    } else if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
        var start = colon + 1
        var end = total
        while start < end && isSpace(bytes[start]) { start += 1 }
        while end > start && isSpace(bytes[end - 1]) { end -= 1 }
        let name = String(decoding: bytes[0..<colon].map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
        t.responseHeaders.append((name, String(decoding: bytes[start..<end], as: UTF8.self)))
    }
    return total
}

/// HTTP over one libcurl multi handle: a single connection pool shared by every request, driven on
/// its own thread, handing results back to async callers through continuations.
final class HTTPClient: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let settings: HTTPClientSettings
    private let lock = NSLock()
    private var pending: [CurlTransfer] = []
    private var cancelled: [CurlTransfer] = []
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]
    private var stopping = false
    private var thread: Thread?
    private let stopped = DispatchSemaphore(value: 0)

    init(settings: HTTPClientSettings) {
        _ = curlGlobalInit
        self.settings = settings
        multi = curl_multi_init()
        _ = ferry_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, settings.maxConcurrentRequests)
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "ferry-curl"
        self.thread = thread
        thread.start()
    }

    deinit {
        curl_multi_cleanup(multi)
    }

    /// Stops the driver thread; requests still queued fail.
    func shutdown() {
        lock.lock()
        if stopping { lock.unlock(); return }
        stopping = true
        lock.unlock()
        curl_multi_wakeup(multi)
        stopped.wait()
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
                    continuation.resume(throwing: HTTPTransportError(curlCode: -1, message: "the AWS client was shut down", isTimeout: false))
                    t.continuation = nil
                    return
                }
                pending.append(t)
                lock.unlock()
                curl_multi_wakeup(multi)
            }
        } onCancel: {
            lock.lock()
            cancelled.append(t)
            lock.unlock()
            curl_multi_wakeup(multi)
        }
    }

    private func proxy(for url: String) -> String? {
        let env = settings.proxyEnvironment
        if url.hasPrefix("https:") { return env["https_proxy"] ?? env["HTTPS_PROXY"] ?? env["all_proxy"] ?? env["ALL_PROXY"] }
        return env["http_proxy"] ?? env["HTTP_PROXY"] ?? env["all_proxy"] ?? env["ALL_PROXY"]
    }

    private func configure(_ t: CurlTransfer) throws {
        let h = t.easy
        let r = t.request
        _ = ferry_easy_setopt_string(h, CURLOPT_URL, r.url)
        _ = ferry_easy_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        // S3 keys may hold "..", "." and "//": libcurl must send the path exactly as signed.
        _ = ferry_easy_setopt_long(h, CURLOPT_PATH_AS_IS, 1)
        _ = ferry_easy_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
        _ = ferry_easy_setopt_long(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)
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
        if let ca = settings.caBundle { _ = ferry_easy_setopt_string(h, CURLOPT_CAINFO, ca) }
        // libcurl ignores upper-case HTTP_PROXY on purpose; the AWS SDKs honour it, so set the proxy ourselves.
        _ = ferry_easy_setopt_string(h, CURLOPT_PROXY, proxy(for: r.url) ?? "")
        if let noProxy = settings.proxyEnvironment["no_proxy"] ?? settings.proxyEnvironment["NO_PROXY"] {
            _ = ferry_easy_setopt_string(h, CURLOPT_NOPROXY, noProxy)
        }
        let me = Unmanaged.passUnretained(t).toOpaque()
        _ = ferry_easy_setopt_pointer(h, CURLOPT_PRIVATE, me)
        _ = ferry_easy_setopt_callback(h, CURLOPT_WRITEFUNCTION, writeCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_WRITEDATA, me)
        _ = ferry_easy_setopt_callback(h, CURLOPT_HEADERFUNCTION, headerCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_HEADERDATA, me)
        _ = ferry_easy_setopt_callback(h, CURLOPT_READFUNCTION, readCallback)
        _ = ferry_easy_setopt_pointer(h, CURLOPT_READDATA, me)
        switch r.method {
        case "GET": break
        case "HEAD": _ = ferry_easy_setopt_long(h, CURLOPT_NOBODY, 1)
        case "PUT":
            _ = ferry_easy_setopt_long(h, CURLOPT_UPLOAD, 1)
            _ = ferry_easy_setopt_offset(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(r.body.length))
        case "POST":
            _ = ferry_easy_setopt_long(h, CURLOPT_POST, 1)
            _ = ferry_easy_setopt_offset(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(r.body.length))
        default:
            _ = ferry_easy_setopt_string(h, CURLOPT_CUSTOMREQUEST, r.method)
        }
        var list: UnsafeMutablePointer<curl_slist>?
        // An empty "Expect:" stops the 100-continue round trip; "Accept:" and a content type that libcurl
        // would invent for POST are removed so only what was signed describes the body.
        for line in r.headers.map({ "\($0.name): \($0.value)" }) + ["Expect:", "Accept:"] {
            list = curl_slist_append(list, line)
        }
        if r.method == "POST", !r.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
            list = curl_slist_append(list, "Content-Type:")
        }
        t.headerList = list
        _ = ferry_easy_setopt_slist(h, CURLOPT_HTTPHEADER, list)
    }

    private func loop() {
        while true {
            lock.lock()
            let stop = stopping
            let toCancel = cancelled
            cancelled = []
            var toAdd: [CurlTransfer] = []
            if !stop {
                while !pending.isEmpty && active.count + toAdd.count < settings.maxConcurrentRequests {
                    toAdd.append(pending.removeFirst())
                }
            }
            lock.unlock()
            if stop { break }
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
                curl_multi_add_handle(multi, t.easy)
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var queued: Int32 = 0
            while let message = curl_multi_info_read(multi, &queued) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let code = ferry_curlmsg_result(message)
                curl_multi_remove_handle(multi, easy)
                guard let t = active.removeValue(forKey: easy) else { continue }
                finish(t, code: code)
            }
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        // Shutting down: fail everything still queued or in flight.
        lock.lock()
        let leftovers = pending
        pending = []
        lock.unlock()
        for t in leftovers + Array(active.values) {
            curl_multi_remove_handle(multi, t.easy)
            t.continuation?.resume(throwing: HTTPTransportError(curlCode: -1, message: "the AWS client was shut down", isTimeout: false))
        }
        active = [:]
        stopped.signal()
    }

    private func finish(_ t: CurlTransfer, code: CURLcode) {
        let continuation = t.continuation
        t.continuation = nil
        if code == CURLE_OK {
            continuation?.resume(returning: HTTPResponse(status: t.status, headers: t.responseHeaders, body: t.responseBody, bytesWritten: t.written))
        } else {
            let text = t.localError ?? String(cString: curl_easy_strerror(code))
            continuation?.resume(throwing: HTTPTransportError(curlCode: Int(code.rawValue), message: text,
                                                              isTimeout: code == CURLE_OPERATION_TIMEDOUT))
        }
    }
}
