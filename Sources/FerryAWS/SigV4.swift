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

    private static let hex: [UInt8] = Array("0123456789ABCDEF".utf8)

    static func encode(_ string: String, keepSlash: Bool = false) -> String {
        String(unsafeUninitializedCapacity: string.utf8.count * 3) { out in
            var count = 0
            for b in string.utf8 {
                if isUnreserved(b) || (keepSlash && b == 0x2F) {
                    out[count] = b
                    count += 1
                } else {
                    out[count] = 0x25
                    out[count + 1] = hex[Int(b >> 4)]
                    out[count + 2] = hex[Int(b & 0xF)]
                    count += 3
                }
            }
            return count
        }
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

/// Byte-level ASCII helpers for header names and values (HTTP tokens are ASCII): shared by the signer,
/// response header lookup and the header list handed to libcurl, none of which should allocate.
enum ASCII {
    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
    static func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

    /// `a` and `b` compared as their lower-case forms, without making them: <0, 0 or >0.
    static func compareLowercased(_ a: String, _ b: String) -> Int {
        var ia = a.utf8.makeIterator()
        var ib = b.utf8.makeIterator()
        while true {
            switch (ia.next(), ib.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case let (x?, y?):
                let (lx, ly) = (lower(x), lower(y))
                if lx != ly { return lx < ly ? -1 : 1 }
            }
        }
    }

    static func equalIgnoringCase(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && compareLowercased(a, b) == 0
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

    /// `YYYYMMDDTHHMMSSZ` in UTC, as the signature and `X-Amz-Date` carry it.
    static func timestamp(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(unsafeUninitializedCapacity: 16) { out in
            func put(_ value: Int32, _ width: Int, at index: Int) {
                var v = value
                for i in stride(from: index + width - 1, through: index, by: -1) {
                    out[i] = 0x30 + UInt8(v % 10)
                    v /= 10
                }
            }
            put(parts.tm_year + 1900, 4, at: 0)
            put(parts.tm_mon + 1, 2, at: 4)
            put(parts.tm_mday, 2, at: 6)
            out[8] = UInt8(ascii: "T")
            put(parts.tm_hour, 2, at: 9)
            put(parts.tm_min, 2, at: 11)
            put(parts.tm_sec, 2, at: 13)
            out[15] = UInt8(ascii: "Z")
            return 16
        }
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

    /// Appends `value` with leading and trailing whitespace removed and inner runs collapsed to one space.
    static func appendTrimmed(_ value: String, to out: inout [UInt8]) {
        var pendingSpace = false
        var wrote = false
        for b in value.utf8 {
            if ASCII.isSpace(b) {
                pendingSpace = wrote
            } else {
                if pendingSpace { out.append(0x20) }
                pendingSpace = false
                out.append(b)
                wrote = true
            }
        }
    }

    /// A header value with leading and trailing whitespace removed and inner runs collapsed to one space.
    static func trimmedValue(_ value: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        appendTrimmed(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func isUnsigned(_ name: String) -> Bool {
        unsignedHeaderList.contains { ASCII.equalIgnoringCase($0, name) }
    }
    private static let unsignedHeaderList = Array(unsignedHeaders)

    /// Appends the canonical header block (each line ending in "\n") to `block` and the signed header
    /// list to `signed`: names lower-cased and sorted, values trimmed, a repeated name's values joined
    /// with "," in their order.
    static func appendCanonicalHeaders(_ headers: [(name: String, value: String)], block: inout [UInt8], signed: inout [UInt8]) {
        var order: [Int] = []
        order.reserveCapacity(headers.count)
        for index in headers.indices where !isUnsigned(headers[index].name) {
            // Insertion sort, stable: a request has a handful of headers.
            var at = order.count
            while at > 0 && ASCII.compareLowercased(headers[order[at - 1]].name, headers[index].name) > 0 { at -= 1 }
            order.insert(index, at: at)
        }
        var previous: String?
        for index in order {
            let (name, value) = headers[index]
            if let previous, ASCII.compareLowercased(previous, name) == 0 {
                block.removeLast()  // the "\n" of the previous line: values of one name share a line
                block.append(UInt8(ascii: ","))
            } else {
                if previous != nil { signed.append(UInt8(ascii: ";")) }
                for b in name.utf8 {
                    block.append(ASCII.lower(b))
                    signed.append(ASCII.lower(b))
                }
                block.append(UInt8(ascii: ":"))
                previous = name
            }
            appendTrimmed(value, to: &block)
            block.append(0x0A)
        }
    }

    /// (canonical header block, signed header list)
    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (String, String) {
        var block: [UInt8] = []
        var signed: [UInt8] = []
        appendCanonicalHeaders(headers, block: &block, signed: &signed)
        return (String(decoding: block, as: UTF8.self), String(decoding: signed, as: UTF8.self))
    }

    /// The canonical request's bytes and the signed header list.
    func canonicalRequestBytes(_ request: SignableRequest) -> (canonical: [UInt8], signedHeaders: [UInt8]) {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        for b in request.method.utf8 { out.append(b >= 0x61 && b <= 0x7A ? b - 0x20 : b) }
        out.append(0x0A)
        if normalizePath || doubleEncodePath || request.path.isEmpty {
            out.append(contentsOf: canonicalPath(request.path).utf8)
        } else {
            out.append(contentsOf: request.path.utf8)
        }
        out.append(0x0A)
        if !request.query.isEmpty { out.append(contentsOf: Self.canonicalQuery(request.query).utf8) }
        out.append(0x0A)
        var signed: [UInt8] = []
        signed.reserveCapacity(96)
        Self.appendCanonicalHeaders(request.headers, block: &out, signed: &signed)
        out.append(0x0A)
        out.append(contentsOf: signed)
        out.append(0x0A)
        out.append(contentsOf: request.payloadHash.utf8)
        return (out, signed)
    }

    func canonicalRequest(_ request: SignableRequest) -> (canonical: String, signedHeaders: String) {
        let (canonical, signed) = canonicalRequestBytes(request)
        return (String(decoding: canonical, as: UTF8.self), String(decoding: signed, as: UTF8.self))
    }

    func scope(_ amzDate: String) -> String { "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request" }

    private func appendScope(_ amzDate: String, to out: inout [UInt8]) {
        out.append(contentsOf: amzDate.utf8.prefix(8))
        out.append(UInt8(ascii: "/"))
        out.append(contentsOf: region.utf8)
        out.append(UInt8(ascii: "/"))
        out.append(contentsOf: service.utf8)
        out.append(contentsOf: "/aws4_request".utf8)
    }

    /// "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex SHA-256 of the canonical request>"
    func stringToSignBytes(canonicalRequest: [UInt8], amzDate: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160)
        out.append(contentsOf: "AWS4-HMAC-SHA256\n".utf8)
        out.append(contentsOf: amzDate.utf8)
        out.append(0x0A)
        appendScope(amzDate, to: &out)
        out.append(0x0A)
        Crypto.appendHex(Crypto.sha256(canonicalRequest), to: &out)
        return out
    }

    func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        String(decoding: stringToSignBytes(canonicalRequest: Array(canonicalRequest.utf8), amzDate: amzDate), as: UTF8.self)
    }

    func signature(stringToSign: [UInt8], secret: String, amzDate: String) -> String {
        let key = SigningKeys.shared.key(secret: secret, day: amzDate.utf8.prefix(8), region: region, service: service)
        return Crypto.hex(Crypto.hmacSHA256(key: key, data: stringToSign))
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
        var canonicalRequestBytes: [UInt8]
        var stringToSignBytes: [UInt8]
        var signature: String
        var canonicalRequest: String { String(decoding: canonicalRequestBytes, as: UTF8.self) }
        var stringToSign: String { String(decoding: stringToSignBytes, as: UTF8.self) }
    }

    /// Adds `X-Amz-Date`, the session token, the content hash (S3) and `Authorization`.
    func signHeaders(_ input: SignableRequest, credentials: AWSCredentials, date: Date) -> Result {
        var request = input
        let amzDate = Self.timestamp(date)
        request.headers.reserveCapacity(request.headers.count + 4)
        request.headers.append(("X-Amz-Date", amzDate))
        if let token = credentials.sessionToken { request.headers.append(("X-Amz-Security-Token", token)) }
        if addContentSHA256Header { request.headers.append(("x-amz-content-sha256", request.payloadHash)) }
        let (canonical, signed) = canonicalRequestBytes(request)
        let sts = stringToSignBytes(canonicalRequest: canonical, amzDate: amzDate)
        let sig = signature(stringToSign: sts, secret: credentials.secretAccessKey, amzDate: amzDate)
        var authorization: [UInt8] = []
        authorization.reserveCapacity(200 + signed.count)
        authorization.append(contentsOf: "AWS4-HMAC-SHA256 Credential=".utf8)
        authorization.append(contentsOf: credentials.accessKeyId.utf8)
        authorization.append(UInt8(ascii: "/"))
        appendScope(amzDate, to: &authorization)
        authorization.append(contentsOf: ", SignedHeaders=".utf8)
        authorization.append(contentsOf: signed)
        authorization.append(contentsOf: ", Signature=".utf8)
        authorization.append(contentsOf: sig.utf8)
        request.headers.append(("Authorization", String(decoding: authorization, as: UTF8.self)))
        return Result(request: request, canonicalRequestBytes: canonical, stringToSignBytes: sts, signature: sig)
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
        let (canonical, _) = canonicalRequestBytes(request)
        let sts = stringToSignBytes(canonicalRequest: canonical, amzDate: amzDate)
        let sig = signature(stringToSign: sts, secret: credentials.secretAccessKey, amzDate: amzDate)
        request.query.append(("X-Amz-Signature", sig))
        return Result(request: request, canonicalRequestBytes: canonical, stringToSignBytes: sts, signature: sig)
    }
}

/// Signing keys derived so far, so that a request costs one HMAC instead of five. Keyed by everything
/// the derivation covers; a handful of entries at most (one per service and day, per secret).
final class SigningKeys: @unchecked Sendable {
    static let shared = SigningKeys()
    private struct Entry {
        var secret: String
        var day: String
        var region: String
        var service: String
        var key: [UInt8]
    }
    private let lock = NSLock()
    private var entries: [Entry] = []

    func key(secret: String, day: String.UTF8View.SubSequence, region: String, service: String) -> [UInt8] {
        lock.lock()
        // Compared field by field: joining them into one dictionary key cost an allocation per request.
        if let entry = entries.first(where: { $0.service == service && $0.region == region && $0.day.utf8.elementsEqual(day) && $0.secret == secret }) {
            lock.unlock()
            return entry.key
        }
        lock.unlock()
        let dayString = String(decoding: day, as: UTF8.self)
        let key = SigV4Signer.signingKey(secret: secret, day: dayString, region: region, service: service)
        lock.lock()
        if entries.count >= 32 { entries.removeAll() }  // rotated secrets and past days are not needed again
        entries.append(Entry(secret: secret, day: dayString, region: region, service: service, key: key))
        lock.unlock()
        return key
    }
}
