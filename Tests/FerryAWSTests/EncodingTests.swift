import Foundation
import Testing
@testable import FerryAWS

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
