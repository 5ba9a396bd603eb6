import Foundation
import Testing
@testable import FerryAWS

/// The project root, found from this file's path (Tests/FerryAWSTests/<file>).
let projectRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
/// The shared conformance data: `$FERRY_SHARED_TESTDATA`, else the `shared/` folder beside the project.
let sharedTestData: String = {
    if let explicit = ProcessInfo.processInfo.environment["FERRY_SHARED_TESTDATA"] { return explicit }
    return ((projectRoot + "/../shared/testdata") as NSString).standardizingPath
}()

struct SuiteCase {
    let name: String
    let directory: String
    let context: [String: Any]
    let request: SignableRequest
    let body: [UInt8]

    static func load(_ name: String) throws -> SuiteCase {
        let dir = sharedTestData + "/aws-signing-test-suite/v4/" + name
        let context = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/context.json"))) as! [String: Any]
        let raw = try String(contentsOfFile: dir + "/request.txt", encoding: .utf8)
        var lines = raw.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        // "METHOD <target with possible spaces> HTTP/1.1"
        let method = String(requestLine.prefix { $0 != " " })
        var target = String(requestLine.dropFirst(method.count + 1))
        if let range = target.range(of: " HTTP/", options: .backwards) { target = String(target[..<range.lowerBound]) }
        var headers: [(name: String, value: String)] = []
        var bodyLines: [String] = []
        var inBody = false
        for line in lines {
            if inBody { bodyLines.append(line); continue }
            if line.isEmpty { inBody = true; continue }
            if line.first == " " || line.first == "\t" {
                headers[headers.count - 1].value += "\n" + line
                continue
            }
            let colon = line.firstIndex(of: ":")!
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        let body = Array(bodyLines.joined(separator: "\n").utf8)
        var path = target
        var query: [(name: String, value: String)] = []
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            for pair in target[target.index(after: q)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((URIEncoding.decode(String(parts[0])), URIEncoding.decode(parts.count > 1 ? String(parts[1]) : "")))
            }
        }
        let signBody = context["sign_body"] as? Bool ?? false
        let hash = signBody ? Crypto.hex(Crypto.sha256(body)) : SigV4Signer.emptyHash
        return SuiteCase(name: name, directory: dir, context: context,
                         request: SignableRequest(method: method, path: path, query: query, headers: headers, payloadHash: hash),
                         body: body)
    }

    var signer: SigV4Signer {
        var s = SigV4Signer(service: context["service"] as! String, region: context["region"] as! String)
        s.normalizePath = context["normalize"] as? Bool ?? true
        // request.txt holds the path before encoding, so "encode again" is the single encoding the suite expects.
        s.doubleEncodePath = true
        s.addContentSHA256Header = context["sign_body"] as? Bool ?? false
        return s
    }

    var credentials: AWSCredentials {
        let c = context["credentials"] as! [String: Any]
        let omit = context["omit_session_token"] as? Bool ?? false
        return AWSCredentials(accessKeyId: c["access_key_id"] as! String, secretAccessKey: c["secret_access_key"] as! String,
                              sessionToken: omit ? nil : c["token"] as? String)
    }

    var date: Date { ISO8601DateFormatter().date(from: context["timestamp"] as! String)! }

    func expected(_ file: String) throws -> String {
        try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
    }
}

let suiteCaseNames: [String] = (try? FileManager.default.contentsOfDirectory(atPath: sharedTestData + "/aws-signing-test-suite/v4"))?.sorted() ?? []

@Test func signingSuiteIsPresent() {
    #expect(suiteCaseNames.count == 38, "expected the 38 SigV4 cases in \(sharedTestData)/aws-signing-test-suite/v4 (the shared/ folder beside the project)")
}

@Test(arguments: suiteCaseNames)
func headerSigningMatchesSuite(_ name: String) throws {
    let c = try SuiteCase.load(name)
    let result = c.signer.signHeaders(c.request, credentials: c.credentials, date: c.date)
    #expect(result.canonicalRequest == (try c.expected("header-canonical-request.txt")))
    #expect(result.stringToSign == (try c.expected("header-string-to-sign.txt")))
    #expect(result.signature == (try c.expected("header-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
}

@Test(arguments: suiteCaseNames)
func querySigningMatchesSuite(_ name: String) throws {
    let c = try SuiteCase.load(name)
    var signer = c.signer
    signer.addContentSHA256Header = false
    let expires = c.context["expiration_in_seconds"] as? Int ?? 3600
    let result = signer.presign(c.request, credentials: c.credentials, date: c.date, expires: expires)
    #expect(result.canonicalRequest == (try c.expected("query-canonical-request.txt")))
    #expect(result.stringToSign == (try c.expected("query-string-to-sign.txt")))
    #expect(result.signature == (try c.expected("query-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
}
