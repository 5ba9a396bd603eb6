import Foundation

/// An access key pair, with a session token for temporary credentials.
///
/// `description` never shows the secret or the token, so a credentials value can be logged safely.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// When temporary credentials stop working; nil for long-term keys.
    public var expiration: Date?
    /// Which provider of the chain produced them (for messages, e.g. "environment", "imds").
    public var source: String

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil,
                expiration: Date? = nil, source: String = "static") {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    public var description: String {
        "AWSCredentials(accessKeyId: \(accessKeyId), source: \(source)\(expiration.map { ", expires: \($0)" } ?? ""))"
    }
}

/// Percent-encoding as SigV4 defines it: only A-Z a-z 0-9 - _ . ~ are left alone.
enum URIEncoding {
    static func isUnreserved(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
            || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
    }

    static func encode(_ string: String, keepSlash: Bool = false) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(string.utf8.count)
        for b in string.utf8 {
            if isUnreserved(b) || (keepSlash && b == 0x2F) {
                out.append(b)
            } else {
                out += [0x25, hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ string: String) -> String {
        var out = [UInt8]()
        let bytes = Array(string.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x25, i + 2 < bytes.count, let v = UInt8(String(decoding: bytes[i + 1...i + 2], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The parts of an HTTP request that SigV4 covers.
struct SignableRequest: Sendable {
    var method: String
    /// The path exactly as it goes on the wire (already percent-encoded).
    var path: String
    /// Query parameters, not encoded.
    var query: [(name: String, value: String)]
    /// Headers in order; duplicates allowed. `host` must be among them.
    var headers: [(name: String, value: String)]
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    var payloadHash: String

    /// The query string as sent: same encoding as the signature covers.
    var encodedQuery: String {
        query.map { URIEncoding.encode($0.name) + "=" + URIEncoding.encode($0.value) }.joined(separator: "&")
    }
}

/// AWS Signature Version 4 for one service in one region.
///
/// S3 signs the path as sent (no dot-segment removal, no second encoding) and always carries
/// `x-amz-content-sha256`; every other service signs the normalised, encoded-again path.
struct SigV4Signer: Sendable {
    static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// Headers an intermediary or libcurl may add or rewrite: signing them would break the signature.
    static let unsignedHeaders: Set<String> = ["user-agent", "expect", "transfer-encoding", "x-amzn-trace-id", "authorization", "connection"]

    var service: String
    var region: String
    var normalizePath: Bool
    var doubleEncodePath: Bool
    /// Whether the payload hash travels as `x-amz-content-sha256` (S3 requires it).
    var addContentSHA256Header: Bool

    init(service: String, region: String) {
        self.service = service
        self.region = region
        let isS3 = service == "s3"
        normalizePath = !isS3
        doubleEncodePath = !isS3
        addContentSHA256Header = isS3
    }

    static func timestamp(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"

    }

    static func removeDotSegments(_ path: String) -> String {
        if path.isEmpty { return "/" }
        var output: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == ".." { if !output.isEmpty { output.removeLast() }; continue }
            output.append(segment)
        }
        let lead = path.hasPrefix("/") ? "/" : ""
        let trail = path.hasSuffix("/") && !output.isEmpty ? "/" : ""
        return lead + output.joined(separator: "/") + trail
    }

    func canonicalPath(_ path: String) -> String {
        var p = path.isEmpty ? "/" : path
        if normalizePath { p = Self.removeDotSegments(p) }
        if doubleEncodePath { p = URIEncoding.encode(p, keepSlash: true) }
        return p
    }

    static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        query.map { (URIEncoding.encode($0.name), URIEncoding.encode($0.value)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// A header value with leading and trailing whitespace removed and inner runs collapsed to one space.
    static func trimmedValue(_ value: String) -> String {
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
        // Nearly every value is already trimmed: check that without allocating.
        var clean = true
        var previousSpace = true  // a leading space counts as a run
        for b in value.utf8 {
            let space = isSpace(b)
            if space && (previousSpace || b != 0x20) { clean = false; break }
            previousSpace = space
        }
        if clean && !previousSpace || value.isEmpty { return value }
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        var pendingSpace = false
        for b in value.utf8 {
            if isSpace(b) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(0x20) }
                pendingSpace = false
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lower-cases ASCII letters (header names are ASCII tokens); returns `name` itself when it has none.
    static func lowercasedName(_ name: String) -> String {
        guard name.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else { return name }
        return String(decoding: name.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// (canonical header block, signed header list)
    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (String, String) {
        var entries: [(name: String, value: String)] = []
        entries.reserveCapacity(headers.count)
        for (name, value) in headers {
            let key = lowercasedName(name)
            if unsignedHeaders.contains(key) { continue }
            entries.append((key, trimmedValue(value)))
        }
        // Stable by name, so repeated headers keep their order when joined with ",".
        let order = entries.indices.sorted { entries[$0].name != entries[$1].name ? entries[$0].name < entries[$1].name : $0 < $1 }
        var block = ""
        var signed = ""
        var previous: String?
        for index in order {
            let (name, value) = entries[index]
            if name == previous {
                block.removeLast()  // the "\n" of the previous line: values of one name share a line
                block += "," + value + "\n"
                continue
            }
            if previous != nil { signed += ";" }
            signed += name
            block += name + ":" + value + "\n"
            previous = name
        }
        return (block, signed)
    }

    func canonicalRequest(_ request: SignableRequest) -> (canonical: String, signedHeaders: String) {
        let (block, signed) = Self.canonicalHeaders(request.headers)
        let canonical = [request.method.uppercased(), canonicalPath(request.path), Self.canonicalQuery(request.query),
                         block, signed, request.payloadHash].joined(separator: "\n")
        return (canonical, signed)
    }

    func scope(_ amzDate: String) -> String { "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request" }

    func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope(amzDate))\n\(Crypto.sha256Hex(canonicalRequest))"
    }

    func signature(stringToSign: String, secret: String, amzDate: String) -> String {
        let key = SigningKeys.shared.key(secret: secret, day: String(amzDate.prefix(8)), region: region, service: service)
        return Crypto.hex(Crypto.hmacSHA256(key: key, data: Array(stringToSign.utf8)))
    }

    /// The signing key: four HMACs over the day, region and service, the same for every request of a day.
    static func signingKey(secret: String, day: String, region: String, service: String) -> [UInt8] {
        var key = Crypto.hmacSHA256(key: Array("AWS4\(secret)".utf8), data: Array(day.utf8))
        key = Crypto.hmacSHA256(key: key, data: Array(region.utf8))
        key = Crypto.hmacSHA256(key: key, data: Array(service.utf8))
        return Crypto.hmacSHA256(key: key, data: Array("aws4_request".utf8))
    }

    /// Everything one header signing produced, kept apart so tests can compare each step.
    struct Result {
        var request: SignableRequest
        var canonicalRequest: String
        var stringToSign: String
        var signature: String
    }

    /// Adds `X-Amz-Date`, the session token, the content hash (S3) and `Authorization`.
    func signHeaders(_ input: SignableRequest, credentials: AWSCredentials, date: Date) -> Result {
        var request = input
        let amzDate = Self.timestamp(date)
        request.headers.append(("X-Amz-Date", amzDate))
        if let token = credentials.sessionToken { request.headers.append(("X-Amz-Security-Token", token)) }
        if addContentSHA256Header { request.headers.append(("x-amz-content-sha256", request.payloadHash)) }
        let (canonical, signed) = canonicalRequest(request)
        let sts = stringToSign(canonicalRequest: canonical, amzDate: amzDate)
        let sig = signature(stringToSign: sts, secret: credentials.secretAccessKey, amzDate: amzDate)
        request.headers.append(("Authorization",
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope(amzDate)), SignedHeaders=\(signed), Signature=\(sig)"))
        return Result(request: request, canonicalRequest: canonical, stringToSign: sts, signature: sig)
    }

    /// A presigned request: the signature travels in the query string, valid for `expires` seconds.
    func presign(_ input: SignableRequest, credentials: AWSCredentials, date: Date, expires: Int) -> Result {
        var request = input
        let amzDate = Self.timestamp(date)
        let (_, signed) = Self.canonicalHeaders(request.headers)
        request.query += [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                          ("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope(amzDate))"),
                          ("X-Amz-Date", amzDate), ("X-Amz-Expires", String(expires)),
                          ("X-Amz-SignedHeaders", signed)]
        if let token = credentials.sessionToken { request.query.append(("X-Amz-Security-Token", token)) }
        let (canonical, _) = canonicalRequest(request)
        let sts = stringToSign(canonicalRequest: canonical, amzDate: amzDate)
        let sig = signature(stringToSign: sts, secret: credentials.secretAccessKey, amzDate: amzDate)
        request.query.append(("X-Amz-Signature", sig))
        return Result(request: request, canonicalRequest: canonical, stringToSign: sts, signature: sig)
    }
}

/// Signing keys derived so far, so that a request costs one HMAC instead of five. Keyed by everything
/// the derivation covers; a handful of entries at most (one per service and day, per secret).
final class SigningKeys: @unchecked Sendable {
    static let shared = SigningKeys()
    private let lock = NSLock()
    private var keys: [String: [UInt8]] = [:]

    func key(secret: String, day: String, region: String, service: String) -> [UInt8] {
        let id = secret + "\u{0}" + day + "\u{0}" + region + "\u{0}" + service
        lock.lock()
        if let key = keys[id] { lock.unlock(); return key }
        lock.unlock()
        let key = SigV4Signer.signingKey(secret: secret, day: day, region: region, service: service)
        lock.lock()
        if keys.count >= 32 { keys.removeAll() }  // rotated secrets and past days are not needed again
        keys[id] = key
        lock.unlock()
        return key
    }
}
