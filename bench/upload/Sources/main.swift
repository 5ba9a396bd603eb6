import FerryAWS
import Foundation
import Logging
import Synchronization

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

/// Regular files under `root` (relative paths), found with readdir as ferry's watcher finds them.
func regularFiles(under root: String, relative: String = "") -> [String] {
    guard let directory = opendir(relative.isEmpty ? root : root + "/" + relative) else { return [] }
    defer { closedir(directory) }
    var files: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name == "." || name == ".." { continue }
        let path = relative.isEmpty ? name : relative + "/" + name
        switch Int32(entry.pointee.d_type) {
        case Int32(DT_REG): files.append(path)
        case Int32(DT_DIR): files += regularFiles(under: root, relative: path)
        default: break
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

// As ferry's upload workers do: `concurrency` workers take the next file until none is left, each
// running on the connection pool's thread (see AWSClient.executor).
let nextFile = Atomic<Int>(0)
let failures = await withTaskGroup(of: Int.self) { group in
    for _ in 0..<min(concurrency, uploadFiles.count) {
        group.addTask(executorPreference: client.executor) {
            var failed = 0
            while true {
                let index = nextFile.add(1, ordering: .relaxed).oldValue
                guard index < uploadFiles.count else { return failed }
                let relative = uploadFiles[index]
                do {
                    _ = try await s3.putObject(bucket: bucket, key: prefix + relative, fileAt: root + "/" + relative)
                } catch {
                    FileHandle.standardError.write(Data("\(relative): \(error)\n".utf8))
                    failed += 1
                }
            }
        }
    }
    var total = 0
    for await failed in group { total += failed }
    return total
}
client.shutdown()
print("uploaded \(files.count - failures) of \(files.count) files")
exit(failures == 0 ? 0 : 1)
