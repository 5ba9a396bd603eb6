import FerryAWS
import Foundation
import Logging

// Uploads every regular file under a folder to s3://BUCKET/PREFIX<relative path> with FerryAWS, as
// ferry's outbound pipeline does: one shared AWSClient, many uploads in flight.
// Usage: ferry-upload-bench --endpoint URL --region R --bucket B --prefix P [--concurrency N] DIR
// Credentials come from the usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).

var options: [String: String] = [:]
var positional: [String] = []
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    if argument.hasPrefix("--") { options[String(argument.dropFirst(2))] = arguments.popFirst() ?? "" } else { positional.append(argument) }
}
guard let root = positional.first, let bucket = options["bucket"] else {
    FileHandle.standardError.write(Data("usage: ferry-upload-bench --endpoint URL --bucket B [--prefix P] [--region R] [--concurrency N] DIR\n".utf8))
    exit(64)
}
let prefix = options["prefix"] ?? ""
let concurrency = Int(options["concurrency"] ?? "") ?? 16

/// Kept out of the async top level: the 6.3 optimizer crashes on an NSEnumerator loop there.
func regularFiles(under root: String) -> [String] {
    var files: [String] = []
    let walker = FileManager.default.enumerator(atPath: root)
    while let relative = walker?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
            files.append(relative)
        }
    }
    return files
}

let files = regularFiles(under: root)

var configuration = AWSClientConfiguration(region: options["region"] ?? "us-east-1", endpointURL: options["endpoint"])
configuration.maxConcurrentRequests = max(concurrency, 8)
var logger = Logger(label: "ferry.bench.upload")
logger.logLevel = .warning
let client = try AWSClient(configuration: configuration, logger: logger)
let s3 = S3Client(client: client)
let uploadFiles = files

let failures = try await withThrowingTaskGroup(of: Int.self) { group in
    var next = 0
    var failed = 0
    func add() {
        let relative = uploadFiles[next]
        next += 1
        group.addTask {
            do {
                _ = try await s3.putObject(bucket: bucket, key: prefix + relative, fileAt: root + "/" + relative)
                return 0
            } catch {
                FileHandle.standardError.write(Data("\(relative): \(error)\n".utf8))
                return 1
            }
        }
    }
    for _ in 0..<min(concurrency, uploadFiles.count) { add() }
    while let result = try await group.next() {
        failed += result
        if next < uploadFiles.count { add() }
    }
    return failed
}
client.shutdown()
print("uploaded \(files.count - failures) of \(files.count) files")
exit(failures == 0 ? 0 : 1)
