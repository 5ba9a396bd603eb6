import Foundation
import Testing
@testable import FerryAWS
import CCrypto

/// The hand-written encoders that replaced Foundation's on the request path.
struct EncodingTests {
    /// Strings a partner's file names or remote paths may hold.
    static let awkward = ["plain", "", "quote \" and backslash \\", "tab\there\nnewline\r", "\u{1}\u{1F}\u{7F}",
                          "üñíçødé / 請求書 / 🚀", "/staging/out/2026/11/27/42/a b#%+;&=.edi"]

    @Test func transferRequestBodiesParseBackToWhatWasWritten() throws {
        for text in Self.awkward {
            let input: [String: Any] = ["ConnectorId": "c-0123456789abcdef0", "SendFilePaths": [text, "/b/k"],
                                        "RemoteDirectoryPath": text, "MaxItems": 1000, "Flag": true]
            let body = try JSONRequest.encode(input)
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
            #expect(parsed["RemoteDirectoryPath"] as? String == text)
            #expect(parsed["SendFilePaths"] as? [String] == [text, "/b/k"])
            #expect(parsed["MaxItems"] as? Int == 1000)
            #expect(parsed["Flag"] as? Bool == true)
            // Keys are sorted, so the same input always signs the same body.
            #expect(String(decoding: body, as: UTF8.self).hasPrefix("{\"ConnectorId\":"))
        }
        #expect(throws: AWSError.self) { try JSONRequest.encode(["When": Date()]) }
    }

    @Test func digestsAndHMACMatchKnownAnswers() {
        #expect(Crypto.hex(Crypto.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Crypto.hex(Crypto.md5(Array("abc".utf8))) == "900150983cd24fb0d6963f7d28e17f72")
        // RFC 4231 test cases 1 and 6 (a key longer than the block is hashed first).
        #expect(Crypto.hex(Crypto.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), data: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(Crypto.hex(Crypto.hmacSHA256(key: [UInt8](repeating: 0xaa, count: 131),
                                             data: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func base64AndPercentEncodingMatchReferences() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<40 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Crypto.base64(bytes) == Data(bytes).base64EncodedString(), "\(length) bytes")
        }
        for text in ["", "a", "plain.txt", "with space/and+plus.edi", "percent%25/q?x#frag", "ünï/日本/😀.csv", "~-_.", "a//b"] {
            // Reference: every byte but A-Z a-z 0-9 - _ . ~ (and / when kept) as %XX, upper-case.
            let reference = text.utf8.map { b -> String in
                let keep = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || "-_.~".utf8.contains(b)
                return keep ? String(UnicodeScalar(b)) : String(format: "%%%02X", b)
            }.joined()
            #expect(URIEncoding.encode(text) == reference)
            #expect(URIEncoding.encode(text, keepSlash: true) == reference.replacingOccurrences(of: "%2F", with: "/"))
        }
    }

    @Test func crc32cMatchesKnownAnswersAndBothImplementationsAgree() {
        // The CRC-32C check value (RFC 3720 B.4 and every CRC catalogue) and S3's base64 form of it.
        #expect(Crypto.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(Crypto.crc32cBase64(0xE306_9283) == "4waSgw==")
        #expect(Crypto.crc32c([UInt8]()) == 0)
        #expect(Crypto.crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)  // RFC 3720 B.4: 32 bytes of zeros
        #expect(Crypto.crc32c([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)  // and of 0xFF
        // The SSE4.2 path (8 bytes at a time, then single bytes) against the bitwise one, at every
        // alignment and tail length, and in pieces as a file is read.
        var generator = SystemRandomNumberGenerator()
        let data = (0..<4099).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096, 4099] {
            for start in [0, 1, 3] where start + length <= data.count {
                let slice = Array(data[start..<(start + length)])
                let portable = slice.withUnsafeBufferPointer { ferry_crc32c_portable(0, $0.baseAddress, $0.count) }
                #expect(Crypto.crc32c(slice) == portable, "length \(length) at offset \(start)")
            }
        }
        let pieces = Crypto.crc32c(data[2000...], continuing: Crypto.crc32c(data[..<2000]))
        #expect(pieces == Crypto.crc32c(data))
    }

    @Test func headerValuesAreTrimmedAndCollapsedOnlyWhenNeeded() {
        #expect(SigV4Signer.trimmedValue("a b") == "a b")
        #expect(SigV4Signer.trimmedValue("  a   b\t\tc \n") == "a b c")
        #expect(SigV4Signer.trimmedValue("") == "")
        #expect(SigV4Signer.trimmedValue("   ") == "")
        let (block, signed) = SigV4Signer.canonicalHeaders([("X-B", "2"), ("host", "h"), ("x-b", " 1 "), ("User-Agent", "curl")])
        #expect(block == "host:h\nx-b:2,1\n", "repeated headers keep their order, joined by a comma")
        #expect(signed == "host;x-b")
    }
}
