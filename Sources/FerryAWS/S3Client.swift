import FerrySystem
import Foundation

/// Result of an upload.
public struct PutObjectResult: Sendable, Equatable {
    public var eTag: String
    /// The CRC-32C S3 checked and keeps with the object (`x-amz-checksum-crc32c`, base64): the whole
    /// file's for a single PUT; for a multipart upload S3's composite form, the CRC-32C of the parts'
    /// CRC-32Cs followed by `-<parts>`, which is what `head-object --checksum-mode ENABLED` shows.
    public var checksumCRC32C: String
    public var versionId: String?
    /// 0 for a single PUT, else the number of parts.
    public var parts: Int
    public var size: Int64

    public init(eTag: String, checksumCRC32C: String = "", versionId: String? = nil, parts: Int = 0, size: Int64) {
        self.eTag = eTag
        self.checksumCRC32C = checksumCRC32C
        self.versionId = versionId
        self.parts = parts
        self.size = size
    }
}

/// What HeadObject/GetObject tell about an object.
public struct ObjectInfo: Sendable, Equatable {
    public var size: Int64
    public var eTag: String
    public var lastModified: Date?
    public var contentType: String?
    public var versionId: String?

    public init(size: Int64, eTag: String, lastModified: Date? = nil, contentType: String? = nil, versionId: String? = nil) {
        self.size = size
        self.eTag = eTag
        self.lastModified = lastModified
        self.contentType = contentType
        self.versionId = versionId
    }
}

/// One entry of a listing.
public struct ObjectSummary: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var eTag: String
    public var lastModified: Date?

    public init(key: String, size: Int64, eTag: String, lastModified: Date? = nil) {
        self.key = key
        self.size = size
        self.eTag = eTag
        self.lastModified = lastModified
    }
}

/// Syscalls with EINTR retried and failures turned into `AWSError(kind: .localFile)`.
enum FileIO {
    static func check<T: BinaryInteger>(_ what: String, _ path: String, _ call: () -> T) throws(AWSError) -> T {
        try SystemError.retryingInterrupts(call) { AWSError(localFile: SystemError(what, path: path, errno: $0)) }
    }

    static func openForReading(_ path: String) throws -> (fd: Int32, size: Int64) {
        let fd = try check("open", path) { path.withCString { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) } }
        var info = stat()
        do { _ = try check("stat", path) { fstat(fd, &info) } } catch { close(fd); throw error }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw AWSError(kind: .localFile, code: "NotARegularFile", message: "\(path) is not a regular file")
        }
        return (fd, Int64(info.st_size))
    }

    /// The first `length` bytes of a file, or an error if it is shorter now.
    static func readAll(fd: Int32, length: Int, path: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        var done = 0
        while done < length {
            let n = try bytes.withUnsafeMutableBytes { buffer in
                try check("read", path) { pread(fd, buffer.baseAddress! + done, length - done, off_t(done)) }
            }
            if n == 0 { throw AWSError(kind: .localFile, code: "FileShrank", message: "\(path) became shorter while it was uploaded") }
            done += n
        }
        return bytes
    }

    /// `hashes`, with a large range read and hashed on the global concurrent executor: tens of
    /// milliseconds of hashing must not hold up the HTTP thread when the caller prefers it.
    static func hashesOffLoop(fd: Int32, offset: Int64, length: Int64, path: String) async throws -> (sha256: String, crc32c: String) {
        if length <= 1 << 20 { return try hashes(fd: fd, offset: offset, length: length, path: path) }
        return try await withTaskExecutorPreference(globalConcurrentExecutor) {
            try hashes(fd: fd, offset: offset, length: length, path: path)
        }
    }

    /// SHA-256 (hex, for the signature) and CRC-32C (base64, `x-amz-checksum-crc32c`) of a byte range, in one read.
    static func hashes(fd: Int32, offset: Int64, length: Int64, path: String) throws -> (sha256: String, crc32c: String) {
        let sha = Digest(.sha256)
        var crc: UInt32 = 0
        // Small files get a small buffer: a 1 MiB allocation per 4 KiB file is an mmap/munmap pair.
        let chunk = Int(max(1, min(Int64(1 << 20), length)))
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < length {
            let want = Int(min(Int64(chunk), length - done))
            let n = try check("read", path) { pread(fd, buffer, want, off_t(offset + done)) }
            if n == 0 { throw AWSError(kind: .localFile, code: "FileShrank", message: "\(path) became shorter while it was uploaded") }
            sha.update(buffer, count: n)
            crc = Crypto.crc32c(UnsafeRawBufferPointer(start: buffer, count: n), continuing: crc)
            done += Int64(n)
        }
        return (Crypto.hex(sha.finish()), Crypto.crc32cBase64(crc))
    }
}

/// Amazon S3 operations on top of an `AWSClient`.
public struct S3Client: Sendable {
    let client: AWSClient

    public init(client: AWSClient) { self.client = client }

    /// The executor of the client's connection pool thread (see `AWSClient.executor`).
    public var executor: any TaskExecutor { client.executor }

    /// Uploads up to this size are read into memory and sent with their headers in one write (libcurl
    /// sends a body of up to 64 KiB given in memory together with the request headers).
    static let inMemoryBodyLimit: Int64 = 64 << 10

    static func keyPath(_ key: String) -> String { "/" + URIEncoding.encode(key, keepSlash: true) }

    static func parseDate(_ text: String?) -> Date? {
        guard let text else { return nil }
        return CredentialContext.parseDate(text) ?? ClockSkew.parseHTTPDate(text)
    }

    /// Uploads a file: one PUT with its CRC-32C (`x-amz-checksum-crc32c`, which S3 checks and keeps with
    /// the object) below the multipart threshold, else a multipart upload whose parts each carry their
    /// CRC-32C (aborted if any part fails). `ifNoneMatch` makes it fail with
    /// `PreconditionFailed` when the key exists; `ifMatch` when the object's ETag differs.
    public func putObject(bucket: String, key: String, fileAt path: String, ifNoneMatch: Bool = false,
                          ifMatch: String? = nil, contentType: String = "application/octet-stream") async throws -> PutObjectResult {
        let (fd, size) = try FileIO.openForReading(path)
        defer { close(fd) }
        return try await putObject(bucket: bucket, key: key, fileDescriptor: fd, size: size, describedAs: path,
                                   ifNoneMatch: ifNoneMatch, ifMatch: ifMatch, contentType: contentType)
    }

    /// Uploads `size` bytes from an open file the caller owns (and keeps open), as `putObject(fileAt:)`
    /// does: for callers that opened and checked the file themselves, so the bytes sent are those of
    /// exactly that file even if its name is replaced meanwhile. `describedAs` names it in errors.
    public func putObject(bucket: String, key: String, fileDescriptor fd: Int32, size: Int64, describedAs path: String,
                          ifNoneMatch: Bool = false, ifMatch: String? = nil,
                          contentType: String = "application/octet-stream") async throws -> PutObjectResult {
        var conditions: [(name: String, value: String)] = []
        if ifNoneMatch { conditions.append(("If-None-Match", "*")) }
        if let ifMatch { conditions.append(("If-Match", ifMatch)) }
        if size >= client.configuration.multipartThreshold && size > client.configuration.partSize {
            return try await multipartUpload(bucket: bucket, key: key, fd: fd, size: size, path: path, conditions: conditions, contentType: contentType)
        }
        let body: HTTPBody
        let sha: String, crc: String
        if size <= Self.inMemoryBodyLimit {
            // A small file is read once: hashed and sent from the same bytes, headers and body in one write.
            let bytes = try FileIO.readAll(fd: fd, length: Int(size), path: path)
            (sha, crc) = (Crypto.hex(Crypto.sha256(bytes)), Crypto.crc32cBase64(Crypto.crc32c(bytes)))
            body = .bytes(bytes)
        } else {
            (sha, crc) = try await FileIO.hashesOffLoop(fd: fd, offset: 0, length: size, path: path)
            body = .file(descriptor: fd, offset: 0, length: size)
        }
        let response = try await client.send(AWSOperationRequest(
            service: "s3", operation: "PutObject", method: "PUT", bucket: bucket, path: Self.keyPath(key),
            headers: [("x-amz-checksum-crc32c", crc), ("Content-Type", contentType)] + conditions,
            body: body, payloadHash: sha))
        return PutObjectResult(eTag: response.header("etag") ?? "", checksumCRC32C: crc, versionId: response.header("x-amz-version-id"),
                               parts: 0, size: size)
    }

    private func multipartUpload(bucket: String, key: String, fd: Int32, size: Int64, path: String,
                                 conditions: [(name: String, value: String)], contentType: String) async throws -> PutObjectResult {
        let created = try await client.send(AWSOperationRequest(
            service: "s3", operation: "CreateMultipartUpload", method: "POST", bucket: bucket, path: Self.keyPath(key),
            query: [("uploads", "")], headers: [("Content-Type", contentType), ("x-amz-checksum-algorithm", "CRC32C")]))
        guard let uploadId = XMLElement.parse(created.body)?.string("UploadId") else {
            throw AWSError(kind: .invalidResponse, code: "InvalidResponse", message: "CreateMultipartUpload answered without an UploadId")
        }
        let partSize = client.configuration.partSize
        let count = Int((size + partSize - 1) / partSize)
        do {
            var etags = [String](repeating: "", count: count)
            var checksums = [String](repeating: "", count: count)
            try await withThrowingTaskGroup(of: (Int, String, String).self) { group in
                var next = 0
                func addPart() {
                    let number = next + 1
                    let offset = Int64(next) * partSize
                    let length = min(partSize, size - offset)
                    next += 1
                    group.addTask {
                        let (sha, crc) = try await FileIO.hashesOffLoop(fd: fd, offset: offset, length: length, path: path)
                        let response = try await client.send(AWSOperationRequest(
                            service: "s3", operation: "UploadPart", method: "PUT", bucket: bucket, path: Self.keyPath(key),
                            query: [("partNumber", String(number)), ("uploadId", uploadId)], headers: [("x-amz-checksum-crc32c", crc)],
                            body: .file(descriptor: fd, offset: offset, length: length), payloadHash: sha))
                        return (number, response.header("etag") ?? "", crc)
                    }
                }
                for _ in 0..<min(client.configuration.partConcurrency, count) { addPart() }
                while let (number, etag, crc) = try await group.next() {
                    etags[number - 1] = etag
                    checksums[number - 1] = crc
                    if next < count { addPart() }
                }
            }
            let xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + etags.indices.map { "<Part><PartNumber>\($0 + 1)</PartNumber><ETag>\(XMLElement.escape(etags[$0]))</ETag>"
                    + "<ChecksumCRC32C>\(checksums[$0])</ChecksumCRC32C></Part>" }.joined()
                + "</CompleteMultipartUpload>"
            let body = Array(xml.utf8)
            let done = try await client.send(AWSOperationRequest(
                service: "s3", operation: "CompleteMultipartUpload", method: "POST", bucket: bucket, path: Self.keyPath(key),
                query: [("uploadId", uploadId)], headers: [("Content-Type", "application/xml")] + conditions,
                body: .bytes(body), payloadHash: Crypto.hex(Crypto.sha256(body))))
            let root = XMLElement.parse(done.body)
            let partCRCs = checksums.flatMap { Array(Data(base64Encoded: $0) ?? Data()) }
            let composite = root?.string("ChecksumCRC32C") ?? (Crypto.crc32cBase64(Crypto.crc32c(partCRCs)) + "-\(count)")
            return PutObjectResult(eTag: root?.string("ETag") ?? done.header("etag") ?? "", checksumCRC32C: composite,
                                   versionId: done.header("x-amz-version-id"), parts: count, size: size)
        } catch {
            // Parts already stored cost money until aborted; the original error is what the caller needs.
            _ = try? await client.send(AWSOperationRequest(service: "s3", operation: "AbortMultipartUpload", method: "DELETE",
                                                           bucket: bucket, path: Self.keyPath(key), query: [("uploadId", uploadId)]))
            throw error
        }
    }

    /// Downloads an object into `path` (created or truncated), streaming to disk.
    public func getObject(bucket: String, key: String, toFileAt path: String) async throws -> ObjectInfo {
        let fd = try FileIO.check("create", path) { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644) }
        defer { close(fd) }
        let response = try await client.send(AWSOperationRequest(
            service: "s3", operation: "GetObject", method: "GET", bucket: bucket, path: Self.keyPath(key), sink: .file(descriptor: fd),
            beforeAttempt: { _ = try FileIO.check("truncate", path) { ftruncate(fd, 0) } }))
        let info = Self.info(response)
        guard response.bytesWritten == info.size else {
            throw AWSError(kind: .invalidResponse, code: "IncompleteBody",
                           message: "GetObject \(key): received \(response.bytesWritten) of \(info.size) bytes")
        }
        return info
    }

    static func info(_ response: HTTPResponse) -> ObjectInfo {
        ObjectInfo(size: Int64(response.header("content-length") ?? "") ?? Int64(response.bytesWritten),
                   eTag: response.header("etag") ?? "", lastModified: parseDate(response.header("last-modified")),
                   contentType: response.header("content-type"), versionId: response.header("x-amz-version-id"))
    }

    /// The object's metadata, or nil when it does not exist.
    public func headObject(bucket: String, key: String) async throws -> ObjectInfo? {
        let response = try await client.send(AWSOperationRequest(service: "s3", operation: "HeadObject", method: "HEAD",
                                                                 bucket: bucket, path: Self.keyPath(key)))
        if response.status == 404 { return nil }
        return Self.info(response)
    }

    /// Deletes an object (succeeds when it is already gone).
    /// Deletes up to 1,000 keys with one DeleteObjects request (quiet mode). Returns the keys S3 could
    /// not delete, with the error it gave for each; an empty dictionary means all are gone.
    public func deleteObjects(bucket: String, keys: [String]) async throws -> [String: AWSError] {
        guard !keys.isEmpty else { return [:] }
        precondition(keys.count <= 1000, "DeleteObjects takes at most 1,000 keys")
        let xml = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            + keys.map { "<Object><Key>\(XMLElement.escape($0))</Key></Object>" }.joined() + "</Delete>"
        let body = Array(xml.utf8)
        let md5 = Digest(.md5)
        md5.update(body)
        let response = try await client.send(AWSOperationRequest(
            service: "s3", operation: "DeleteObjects", method: "POST", bucket: bucket, path: "/",
            query: [("delete", "")], headers: [("Content-MD5", Crypto.base64(md5.finish())), ("Content-Type", "application/xml")],
            body: .bytes(body), payloadHash: Crypto.hex(Crypto.sha256(body))))
        var failures: [String: AWSError] = [:]
        // Quiet mode lists only the keys that failed; most answers have none and need no parsing.
        guard XMLElement.mayContainError(response.body) else { return [:] }
        for error in XMLElement.parse(response.body)?.all("Error") ?? [] {
            guard let key = error.string("Key") else { continue }
            failures[key] = AWSError(kind: .service, code: error.string("Code") ?? "InternalError",
                                     message: error.string("Message") ?? "DeleteObjects did not delete \(key)", httpStatus: 200)
        }
        return failures
    }

    public func deleteObject(bucket: String, key: String) async throws {
        _ = try await client.send(AWSOperationRequest(service: "s3", operation: "DeleteObject", method: "DELETE",
                                                      bucket: bucket, path: Self.keyPath(key)))
    }

    /// Every object under `prefix`, following continuation tokens through all pages.
    public func listObjectsV2(bucket: String, prefix: String) async throws -> [ObjectSummary] {
        var result: [ObjectSummary] = []
        var token: String?
        repeat {
            var query: [(name: String, value: String)] = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try await client.send(AWSOperationRequest(service: "s3", operation: "ListObjectsV2", method: "GET",
                                                                     bucket: bucket, path: "/", query: query))
            guard let root = XMLElement.parse(response.body), root.name == "ListBucketResult" else {
                throw AWSError(kind: .invalidResponse, code: "InvalidResponse", message: "ListObjectsV2 answered with something that is not a ListBucketResult")
            }
            for item in root.all("Contents") {
                result.append(ObjectSummary(key: item.string("Key") ?? "", size: Int64(item.string("Size") ?? "") ?? 0,
                                            eTag: item.string("ETag") ?? "", lastModified: Self.parseDate(item.string("LastModified"))))
            }
            token = root.string("IsTruncated") == "true" ? root.string("NextContinuationToken") : nil
        } while token != nil
        return result
    }
}
