import Foundation

/// POSTs small JSON documents to an HTTP(S) endpoint over the same libcurl driver the AWS clients use
/// (its own connection pool and driver thread, so a hanging receiver never delays an AWS request).
/// Knows nothing of what is posted: ferry's alerts use it for `notify.webhook`.
public final class WebhookClient: Sendable {
    private let http: HTTPClient

    /// Creates a client; `caBundle` replaces the system's CA certificates when given.
    public init(caBundle: String? = nil) {
        var settings = HTTPClientSettings()
        settings.maxConcurrentRequests = 4
        settings.caBundle = caBundle
        http = HTTPClient(settings: settings)
    }

    /// POSTs `body` with `headers` (plus `Content-Type: application/json` unless given); returns the
    /// status when it is 2xx and throws `WebhookError` otherwise (a non-2xx answer, a timeout, a refused
    /// connection). `timeout` bounds the whole request, connecting included.
    public func post(url: String, headers: [(name: String, value: String)], body: [UInt8], timeout: Duration) async throws -> Int {
        var all = headers
        if !all.contains(where: { $0.name.lowercased() == "content-type" }) { all.append(("Content-Type", "application/json")) }
        if !all.contains(where: { $0.name.lowercased() == "user-agent" }) { all.append(("User-Agent", "ferry")) }
        let request = HTTPRequest(method: "POST", url: url, headers: all, body: .bytes(body), timeout: timeout)
        let response: HTTPResponse
        do {
            response = try await http.execute(request)
        } catch let error as HTTPTransportError {
            throw WebhookError(message: error.isTimeout ? "no answer within \(timeout)" : error.message, isTimeout: error.isTimeout)
        }
        guard (200..<300).contains(response.status) else {
            let text = String(decoding: response.body.prefix(300), as: UTF8.self)
            throw WebhookError(message: "HTTP \(response.status)\(text.isEmpty ? "" : ": \(text)")", isTimeout: false)
        }
        return response.status
    }

    /// Stops the driver thread; requests in flight fail.
    public func shutdown() { http.shutdown() }
}

/// A webhook POST that did not get a 2xx answer.
public struct WebhookError: Error, CustomStringConvertible, Sendable {
    /// What happened, e.g. `HTTP 503: …` or `no answer within 10 seconds`.
    public var message: String
    /// Whether the request ran out of time (the receiver may still have acted on it).
    public var isTimeout: Bool
    public var description: String { message }
}
