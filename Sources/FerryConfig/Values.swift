/// Parsers for the rules file's value syntaxes; each returns the value or a reason a user can act on.
public enum ValueSyntax {
    /// `500ms`, `2s`, `5m`, `1h`, `1d`, or combinations in descending order such as `1h30m`.
    public static func duration(_ text: String) -> Result<Duration, ValueError> {
        let example = "use a whole number and a unit (ms, s, m, h, d), like 500ms, 2s, 5m, 1h or 1h30m"
        guard !text.isEmpty else { return .failure(ValueError("a duration cannot be empty; \(example)")) }
        let units: [(String, Int64)] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        var milliseconds: Int64 = 0
        var rest = Substring(text)
        var lastRank = -1
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let number = Int64(digits), number < 1_000_000_000 else {
                return .failure(ValueError("'\(text)' is not a duration; \(example)"))
            }
            rest = rest.dropFirst(digits.count)
            let unitText = rest.prefix { $0.isASCII && $0.isLetter }
            guard !unitText.isEmpty || !rest.isEmpty else {
                return .failure(ValueError("'\(text)' has no unit; \(example)"))
            }
            guard !unitText.isEmpty, let rank = units.firstIndex(where: { $0.0 == unitText }), rank > lastRank else {
                return .failure(ValueError("'\(text)' is not a duration; \(example)"))
            }
            lastRank = rank
            milliseconds += number * units[rank].1
            rest = rest.dropFirst(unitText.count)
        }
        return .success(.milliseconds(milliseconds))
    }

    /// `64MiB`, `1GiB`, `500KB`, `1024` (bytes): binary units are powers of 1024, decimal ones of 1000.
    public static func size(_ text: String) -> Result<Int64, ValueError> {
        let units: [(String, Int64)] = [("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
                                        ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000)]
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let unit = text.dropFirst(digits.count).trimmingSpaces()
        guard !digits.isEmpty, let number = Int64(digits) else {
            return .failure(ValueError("'\(text)' is not a size; use a whole number and a unit, like 64MiB or 1GiB"))
        }
        let factor: Int64
        if unit.isEmpty {
            factor = 1
        } else if let match = units.first(where: { $0.0 == unit }) {
            factor = match.1
        } else {
            return .failure(ValueError("'\(text)' has an unknown unit '\(unit)'; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"))
        }
        let (product, overflow) = number.multipliedReportingOverflow(by: factor)
        if overflow { return .failure(ValueError("'\(text)' is too large")) }
        return .success(product)
    }

    /// `s3://bucket/prefix/` or `/bucket/prefix/`, with a bucket name S3 accepts.
    public static func s3Location(_ text: String) -> Result<S3Location, ValueError> {
        let rest: Substring
        if text.hasPrefix("s3://") {
            rest = text.dropFirst(5)
        } else if text.hasPrefix("/") {
            rest = text.dropFirst()
        } else {
            return .failure(ValueError("'\(text)' is not an S3 location; write s3://bucket/prefix/ or /bucket/prefix/"))
        }
        let bucket = String(rest.prefix { $0 != "/" })
        if let problem = bucketNameProblem(bucket) {
            return .failure(ValueError("'\(text)' names an invalid S3 bucket '\(bucket)': \(problem)"))
        }
        let prefix = String(rest.dropFirst(bucket.count))
        if prefix.contains("//") {
            return .failure(ValueError("'\(text)' has an empty folder ('//') in its prefix"))
        }
        return .success(S3Location(bucket: bucket, prefix: prefix))
    }

    /// Why `name` is not a valid S3 general purpose bucket name, or nil if it is.
    public static func bucketNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "the bucket name is missing" }
        if name.count < 3 || name.count > 63 { return "a bucket name has 3 to 63 characters" }
        let allowed = name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }
        if !allowed { return "a bucket name uses only lowercase letters, digits, '.' and '-'" }
        let edges = [name.unicodeScalars.first!, name.unicodeScalars.last!]
        if edges.contains(where: { $0 == "." || $0 == "-" }) { return "a bucket name begins and ends with a letter or digit" }
        if name.contains("..") { return "a bucket name cannot contain '..'" }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) {
            return "a bucket name cannot look like an IP address"
        }
        for reserved in ["xn--", "sthree-", "amzn-s3-demo-"] where name.hasPrefix(reserved) {
            return "bucket names cannot start with '\(reserved)'"
        }
        for reserved in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] where name.hasSuffix(reserved) {
            return "bucket names cannot end with '\(reserved)'"
        }
        return nil
    }

    /// `c-` and 17 lowercase hexadecimal digits, as AWS assigns them.
    public static func isConnectorId(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count == 19, text.hasPrefix("c-") else { return false }
        return scalars.dropFirst(2).allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }
}

/// Why a value could not be parsed, in words a user can act on.
public struct ValueError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The explanation.
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Path arithmetic on `/`-separated absolute paths, without touching the file system.
enum PathRules {
    /// Drops trailing slashes and `.` segments and folds repeated `/`; `..` is kept as written.
    static func normalize(_ path: String) -> String {
        let segments = path.split(separator: "/").filter { $0 != "." }
        let joined = segments.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : joined
    }

    /// `path` relative to folder `base` ("" for the folder itself), or nil when it lies outside.
    static func relative(_ path: String, to base: String) -> String? {
        let path = normalize(path), base = normalize(base)
        if path == base { return "" }
        let prefix = base == "/" ? "/" : base + "/"
        guard path.hasPrefix(prefix) else { return nil }
        return String(path.dropFirst(prefix.count))
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self
        while result.first == " " { result.removeFirst() }
        while result.last == " " { result.removeLast() }
        return result
    }
}
