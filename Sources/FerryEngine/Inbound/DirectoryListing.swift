import Foundation

/// The JSON document StartDirectoryListing writes to S3, parsed leniently: AWS's own documentation shows
/// `truncated` both as a boolean and as a string, and `size` and `modifiedTimestamp` may be missing.
/// Unknown fields are ignored so that a field AWS adds later does not stop retrieval.
public struct DirectoryListing: Sendable, Equatable {
    /// One file of the listing.
    public struct Entry: Sendable, Equatable {
        /// The full remote path, as AWS gives it (and as RetrieveFilePaths expects it back).
        public var filePath: String
        /// Bytes, if the server reported them.
        public var size: Int64?
        /// `modifiedTimestamp` exactly as given (the dedupe key keeps the text, not a reparsed date).
        public var modifiedText: String?
        /// `modifiedTimestamp` as a date, when it could be read.
        public var modified: Date?

        public init(filePath: String, size: Int64? = nil, modifiedText: String? = nil, modified: Date? = nil) {
            self.filePath = filePath
            self.size = size
            self.modifiedText = modifiedText
            self.modified = modified
        }
    }

    public var files: [Entry]
    /// Sub-folders (StartDirectoryListing lists one level; these are not descended into).
    public var directories: [String]
    /// True when the folder held more entries than MaxItems: some files are not in this listing.
    public var truncated: Bool

    public init(files: [Entry], directories: [String] = [], truncated: Bool = false) {
        self.files = files
        self.directories = directories
        self.truncated = truncated
    }

    /// Parses the listing object's bytes.
    public static func parse(_ data: Data) throws(InboundError) -> DirectoryListing {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw InboundError(code: "ListingUnreadable", message: "the directory listing is not JSON (\(data.count) bytes): \(error.localizedDescription)")
        }
        guard let document = object as? [String: Any] else {
            throw InboundError(code: "ListingUnreadable", message: "the directory listing is not a JSON object")
        }
        var files: [Entry] = []
        for item in document["files"] as? [Any] ?? [] {
            guard let fields = item as? [String: Any], let path = fields["filePath"] as? String else { continue }
            var entry = Entry(filePath: path, size: integer(fields["size"]))
            switch fields["modifiedTimestamp"] {
            case let text as String:
                entry.modifiedText = text
                entry.modified = date(text)
            case let number as NSNumber:
                entry.modifiedText = number.stringValue
                entry.modified = Date(timeIntervalSince1970: number.doubleValue)
            default: break
            }
            files.append(entry)
        }
        let directories = (document["paths"] as? [Any] ?? []).compactMap { ($0 as? [String: Any])?["path"] as? String }
        return DirectoryListing(files: files, directories: directories, truncated: boolean(document["truncated"]))
    }

    private static func integer(_ value: Any?) -> Int64? {
        switch value {
        case let number as NSNumber: return number.int64Value >= 0 ? number.int64Value : nil
        case let text as String: return Int64(text.trimmingCharacters(in: .whitespaces)).flatMap { $0 >= 0 ? $0 : nil }
        default: return nil
        }
    }

    private static func boolean(_ value: Any?) -> Bool {
        switch value {
        case let number as NSNumber: return number.boolValue
        case let text as String: return text.trimmingCharacters(in: .whitespaces).lowercased() == "true"
        default: return false
        }
    }

    /// ISO 8601 with or without fractional seconds, `Z` or an offset; also a bare epoch-seconds string.
    static func date(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let date = try? Date(trimmed, strategy: .iso8601) { return date }
        if let date = try? Date(trimmed, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let seconds = Double(trimmed), seconds > 0 { return Date(timeIntervalSince1970: seconds) }
        return nil
    }
}

/// An inbound failure with a code and a message that says what to do.
public struct InboundError: Error, Sendable, CustomStringConvertible {
    /// A short stable code, for logs and metrics (`ListingTimeout`, `ListingUnreadable`, `DownloadFailed`).
    public var code: String
    /// What happened and what to do about it.
    public var message: String

    public var description: String { "\(code): \(message)" }

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}
