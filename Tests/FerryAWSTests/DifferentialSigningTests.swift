import Foundation
import Testing
@testable import FerryAWS

/// A small deterministic generator, so a failing case can be reproduced from its index.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct GeneratedRequest {
    var service: String
    var region: String
    var method: String
    var host: String
    var path: String
    var query: [(String, String)]
    var headers: [(String, String)]
    var body: String
    var credentials: AWSCredentials
    var epoch: Int

    var json: [String: Any] {
        var j: [String: Any] = ["service": service, "region": region, "method": method, "host": host, "path": path,
                                "query": query.map { [$0.0, $0.1] }, "headers": headers.map { [$0.0, $0.1] },
                                "body": body, "access_key_id": credentials.accessKeyId,
                                "secret_access_key": credentials.secretAccessKey, "epoch": epoch]
        if let t = credentials.sessionToken { j["session_token"] = t }
        return j
    }
}

enum RequestGenerator {
    static let pieces = ["a", "Z", "0", "-", "_", ".", "~", " ", "+", "%", "?", "#", "&", "=", ";", ",", "@", "$", "!", "'",
                         "(", ")", "*", ":", "[", "]", "ü", "ሴ", "日本", "😀", "é", "/", "data", "file.txt"]

    static func word(_ rng: inout SplitMix64, max: Int = 6, slash: Bool = true) -> String {
        var s = ""
        for _ in 0..<Int.random(in: 1...max, using: &rng) {
            let p = pieces.randomElement(using: &rng)!
            if !slash && p == "/" { continue }
            s += p
        }
        return s.isEmpty ? "x" : s
    }

    static func headerValue(_ rng: inout SplitMix64) -> String {
        let chars = Array("abcXYZ019 -_.:;,/=\"'()\t")
        var v = ""
        for _ in 0..<Int.random(in: 0...20, using: &rng) { v.append(chars.randomElement(using: &rng)!) }
        let padding = ["", " ", "  ", "\t", " \t "]
        return padding.randomElement(using: &rng)! + v + padding.randomElement(using: &rng)!
    }

    static func generate(_ index: Int) -> GeneratedRequest {
        var rng = SplitMix64(state: UInt64(index) &* 7919 &+ 17)
        let isS3 = Bool.random(using: &rng)
        let service = isS3 ? "s3" : ["transfer", "sts", "service"].randomElement(using: &rng)!
        let region = ["us-east-1", "eu-west-2", "ap-southeast-2"].randomElement(using: &rng)!
        let method = ["GET", "PUT", "POST", "DELETE", "HEAD"].randomElement(using: &rng)!
        let host = ["example.amazonaws.com", "127.0.0.1:9000", "bucket.s3.\(region).amazonaws.com", "localhost:4566"].randomElement(using: &rng)!
        var path: String
        if isS3 {
            let key = (0..<Int.random(in: 1...4, using: &rng)).map { _ in word(&rng) }.joined(separator: "/")
            path = "/bucket/" + URIEncoding.encode(key, keepSlash: true)
        } else {
            let segments = (0..<Int.random(in: 0...5, using: &rng)).map { _ -> String in
                switch Int.random(in: 0..<8, using: &rng) {
                case 0: return "."
                case 1: return ".."
                case 2: return ""
                default: return URIEncoding.encode(word(&rng, slash: false))
                }
            }
            path = "/" + segments.joined(separator: "/")
            if Bool.random(using: &rng) { path += "/" }
        }
        var query: [(String, String)] = []
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            query.append((word(&rng, max: 3), Int.random(in: 0..<4, using: &rng) == 0 ? "" : word(&rng, max: 4)))
        }
        var headers: [(String, String)] = []
        let names = ["X-Custom", "x-amz-meta-note", "Content-Type", "X-Multi", "user-agent", "Expect", "If-None-Match", "x-amz-target"]
        for _ in 0..<Int.random(in: 0...5, using: &rng) {
            headers.append((names.randomElement(using: &rng)!, headerValue(&rng)))
        }
        let body = Int.random(in: 0..<3, using: &rng) == 0 ? "" : word(&rng, max: 30)
        let token: String? = Bool.random(using: &rng) ? "FwoGZXIvYXdzEBYaD+session/token=\(index)" : nil
        let credentials = AWSCredentials(accessKeyId: "AKIDDIFF\(index)", secretAccessKey: "secret/+key\(index)", sessionToken: token)
        let epoch = 1_500_000_000 + Int.random(in: 0..<300_000_000, using: &rng)
        return GeneratedRequest(service: service, region: region, method: method, host: host, path: path, query: query,
                                headers: headers, body: body, credentials: credentials, epoch: epoch)
    }
}

@Test func signaturesAgreeWithBotocoreOnGeneratedRequests() throws {
    let count = 1_200
    let requests = (0..<count).map(RequestGenerator.generate)
    let input = try JSONSerialization.data(withJSONObject: requests.map(\.json))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", projectRoot + "/Tests/FerryAWSTests/Scripts/botocore_sign.py"]
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let writer = Thread { stdin.fileHandleForWriting.write(input); try? stdin.fileHandleForWriting.close() }
    writer.start()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let errors = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try #require(process.terminationStatus == 0,
                 "botocore_sign.py failed (install botocore: `pip install boto3` / `make deps`): \(String(decoding: errors, as: UTF8.self))")
    let theirs = try #require(try JSONSerialization.jsonObject(with: output) as? [[String: String]])
    try #require(theirs.count == count)
    var mismatches = 0
    for (index, request) in requests.enumerated() {
        let signer = SigV4Signer(service: request.service, region: request.region)
        let hash = Crypto.hex(Crypto.sha256(Array(request.body.utf8)))
        let signable = SignableRequest(method: request.method, path: request.path, query: request.query.map { ($0.0, $0.1) },
                                       headers: [("host", request.host)] + request.headers.map { ($0.0, $0.1) }, payloadHash: hash)
        let ours = signer.signHeaders(signable, credentials: request.credentials, date: Date(timeIntervalSince1970: TimeInterval(request.epoch)))
        let authorization = ours.request.headers.last { $0.name == "Authorization" }!.value
        if authorization != theirs[index]["authorization"] {
            mismatches += 1
            if mismatches <= 3 {
                Issue.record("request \(index) differs.\nours:\n\(ours.canonicalRequest)\nbotocore:\n\(theirs[index]["canonical"] ?? "")")
            }
        }
    }
    #expect(mismatches == 0, "\(mismatches) of \(count) signatures differ from botocore's")
}
