internal import CCrypto

/// Hashing and HMAC through OpenSSL, so signing costs what the C library costs.
enum Crypto {
    /// Digest implementations fetched once: OpenSSL 3 otherwise looks the algorithm up on every use
    /// (`EVP_sha256()` and the one-shot `HMAC()` both do), which cost more than hashing a small request.
    nonisolated(unsafe) static let sha256Algorithm: OpaquePointer = EVP_MD_fetch(nil, "SHA256", nil)
    nonisolated(unsafe) static let md5Algorithm: OpaquePointer = EVP_MD_fetch(nil, "MD5", nil)

    static func sha256(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let done: [UInt8]? = bytes.withContiguousStorageIfAvailable { oneShot(sha256Algorithm, UnsafeRawBufferPointer($0)) }
        return done ?? Array(bytes).withUnsafeBytes { oneShot(sha256Algorithm, $0) }
    }

    static func md5(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let done: [UInt8]? = bytes.withContiguousStorageIfAvailable { oneShot(md5Algorithm, UnsafeRawBufferPointer($0)) }
        return done ?? Array(bytes).withUnsafeBytes { oneShot(md5Algorithm, $0) }
    }

    private static func oneShot(_ algorithm: OpaquePointer, _ data: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Int(EVP_MAX_MD_SIZE)) { buffer, count in
            var length: UInt32 = 0
            EVP_Digest(data.baseAddress, data.count, buffer.baseAddress, &length, algorithm, nil)
            count = Int(length)
        }
    }

    static func sha256Hex(_ string: String) -> String {
        var string = string
        return string.withUTF8 { hex(oneShot(sha256Algorithm, UnsafeRawBufferPointer($0))) }
    }

    /// HMAC-SHA256 as RFC 2104 defines it, on the pre-fetched digest: H((K ^ opad) || H((K ^ ipad) || data)).
    static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        let longKey = key.count > 64 ? sha256(key) : nil
        let k = longKey ?? key
        // One buffer holds the padded key and then the data (inner) or the inner digest (outer).
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64 + max(data.count, 32)) { buffer in
            let base = buffer.baseAddress!
            for i in 0..<64 { base[i] = (i < k.count ? k[i] : 0) ^ 0x36 }
            data.withUnsafeBufferPointer { if let source = $0.baseAddress { (base + 64).update(from: source, count: $0.count) } }
            let inner = oneShot(sha256Algorithm, UnsafeRawBufferPointer(start: base, count: 64 + data.count))
            for i in 0..<64 { base[i] = (i < k.count ? k[i] : 0) ^ 0x5C }
            inner.withUnsafeBufferPointer { (base + 64).update(from: $0.baseAddress!, count: $0.count) }
            return oneShot(sha256Algorithm, UnsafeRawBufferPointer(start: base, count: 64 + inner.count))
        }
    }

    /// CRC-32C of `bytes`, continuing from `crc` (0 to start): what S3 checks as `x-amz-checksum-crc32c`.
    static func crc32c(_ bytes: some Collection<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        let done: UInt32? = bytes.withContiguousStorageIfAvailable { ferry_crc32c(crc, $0.baseAddress, $0.count) }
        return done ?? Array(bytes).withUnsafeBufferPointer { ferry_crc32c(crc, $0.baseAddress, $0.count) }
    }

    /// A CRC-32C as S3's checksum headers and XML carry it: base64 of its four bytes, most significant first.
    static func crc32cBase64(_ crc: UInt32) -> String {
        base64([UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends the lower-case hex form of `bytes`.
    static func appendHex(_ bytes: [UInt8], to out: inout [UInt8]) {
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0xf)])
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (i, b) in bytes.enumerated() {
                out[2 * i] = hexDigits[Int(b >> 4)]
                out[2 * i + 1] = hexDigits[Int(b & 0xf)]
            }
            return bytes.count * 2
        }
    }

    private static let base64Digits: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func base64(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: (bytes.count + 2) / 3 * 4) { out in
            let table = base64Digits
            var i = 0
            var o = 0
            while i + 2 < bytes.count {
                let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                out[o] = table[Int(n >> 18 & 63)]
                out[o + 1] = table[Int(n >> 12 & 63)]
                out[o + 2] = table[Int(n >> 6 & 63)]
                out[o + 3] = table[Int(n & 63)]
                i += 3
                o += 4
            }
            let rest = bytes.count - i
            if rest > 0 {
                let n = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
                out[o] = table[Int(n >> 18 & 63)]
                out[o + 1] = table[Int(n >> 12 & 63)]
                out[o + 2] = rest == 2 ? table[Int(n >> 6 & 63)] : UInt8(ascii: "=")
                out[o + 3] = UInt8(ascii: "=")
                o += 4
            }
            return o
        }
    }

    /// Cryptographically random bytes (multipart boundaries are not secret, jitter is not either,
    /// but one source keeps it simple).
    static func randomUnit() -> Double {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { _ = RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 8) }
        return Double(value >> 11) / Double(1 << 53)
    }
}

/// One owner of an OpenSSL digest context, fed incrementally while a file is read.
final class Digest {
    enum Algorithm { case sha256, md5 }
    private let context: OpaquePointer

    init(_ algorithm: Algorithm) {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, algorithm == .sha256 ? Crypto.sha256Algorithm : Crypto.md5Algorithm, nil)
    }

    func update(_ bytes: some Collection<UInt8>) {
        let done: Bool? = bytes.withContiguousStorageIfAvailable { buffer in
            EVP_DigestUpdate(context, buffer.baseAddress, buffer.count) == 1
        }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBufferPointer { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        }
    }

    func update(_ pointer: UnsafeRawPointer, count: Int) {
        _ = EVP_DigestUpdate(context, pointer, count)
    }

    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &out, &length)
        return Array(out.prefix(Int(length)))
    }

    deinit { EVP_MD_CTX_free(context) }
}
