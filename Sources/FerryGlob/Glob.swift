/// A compiled glob pattern, matched against a path relative to a watched folder (or a bare file name).
///
/// Syntax: `*` any run of characters within one path segment, `?` one character other than `/`,
/// `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one character from (or not from) a set, `**` any run of
/// characters across segments (`**/` also matches no folder at all), `\x` the character `x` itself.
/// A pattern without `/` is matched against the last path segment only, so `*.edi` selects EDI files
/// at any depth, as users of `.gitignore` expect; a pattern with `/` is matched against the whole path.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as written.
    public let pattern: String
    /// Whether the pattern is matched against the last segment only.
    public let matchesBaseName: Bool
    private let tokens: [Token]

    /// Why a pattern was refused, with the character position (1-based) where the problem is.
    public struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        /// 1-based character offset in the pattern.
        public var position: Int
        /// What is wrong, in words a user can act on.
        public var reason: String
        /// Creates an error at `position` (1-based) with `reason`.
        public init(position: Int, reason: String) {
            self.position = position
            self.reason = reason
        }
        public var description: String { "invalid glob at character \(position): \(reason)" }
    }

    enum Token: Sendable, Hashable {
        case literal(Unicode.Scalar)
        case anyOne
        case anyInSegment
        case anyAcrossSegments
        /// `**/`: zero or more whole folders.
        case anyFolders
        case set(ranges: [ClosedRange<UInt32>], negated: Bool)
    }

    /// Compiles `pattern`, throwing `SyntaxError` with the reason if it is malformed.
    public init(_ pattern: String) throws(SyntaxError) {
        self.pattern = pattern
        let scalars = Array(pattern.unicodeScalars)
        if scalars.isEmpty { throw SyntaxError(position: 1, reason: "the pattern is empty") }
        var tokens: [Token] = []
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar {
            case "*":
                if index + 1 < scalars.count, scalars[index + 1] == "*" {
                    let startsSegment = index == 0 || scalars[index - 1] == "/"
                    if startsSegment, index + 2 < scalars.count, scalars[index + 2] == "/" {
                        tokens.append(.anyFolders)
                        index += 3
                    } else {
                        tokens.append(.anyAcrossSegments)
                        index += 2
                        while index < scalars.count, scalars[index] == "*" { index += 1 }
                    }
                } else {
                    tokens.append(.anyInSegment)
                    index += 1
                }
            case "?":
                tokens.append(.anyOne)
                index += 1
            case "\\":
                guard index + 1 < scalars.count else {
                    throw SyntaxError(position: index + 1, reason: "a trailing '\\' escapes nothing; write '\\\\' for a backslash")
                }
                tokens.append(.literal(scalars[index + 1]))
                index += 2
            case "[":
                let (token, next) = try Self.parseSet(scalars, from: index)
                tokens.append(token)
                index = next
            default:
                tokens.append(.literal(scalar))
                index += 1
            }
        }
        self.tokens = tokens
        self.matchesBaseName = !pattern.unicodeScalars.contains("/")
    }

    private static func parseSet(_ scalars: [Unicode.Scalar], from start: Int) throws(SyntaxError) -> (Token, Int) {
        var index = start + 1
        var negated = false
        if index < scalars.count, scalars[index] == "!" || scalars[index] == "^" {
            negated = true
            index += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while true {
            guard index < scalars.count else {
                throw SyntaxError(position: start + 1, reason: "'[' is never closed with ']'; write '\\[' for a literal bracket")
            }
            var scalar = scalars[index]
            if scalar == "]" && !first { return (.set(ranges: ranges, negated: negated), index + 1) }
            first = false
            if scalar == "\\" {
                guard index + 1 < scalars.count else {
                    throw SyntaxError(position: index + 1, reason: "a trailing '\\' escapes nothing")
                }
                index += 1
                scalar = scalars[index]
            }
            if scalar == "/" {
                throw SyntaxError(position: index + 1, reason: "'/' cannot appear inside [...]: a set matches one character of a name")
            }
            var upper = scalar
            if index + 2 < scalars.count, scalars[index + 1] == "-", scalars[index + 2] != "]" {
                upper = scalars[index + 2]
                if upper.value < scalar.value {
                    throw SyntaxError(position: index + 1, reason: "range '\(scalar)-\(upper)' is reversed; write '\(upper)-\(scalar)'")
                }
                index += 2
            }
            ranges.append(scalar.value...upper.value)
            index += 1
        }
    }

    public var description: String { pattern }

    /// Whether `path` (relative, `/`-separated, no leading `/`) matches.
    public func matches(_ path: String) -> Bool {
        var subject = Substring(path)
        if matchesBaseName, let slash = path.lastIndex(of: "/") {
            subject = path[path.index(after: slash)...]
        }
        let text = Array(subject.unicodeScalars)
        // One row of "can tokens[t...] match text[c...]" memoised, so `*` runs cannot go exponential.
        var memo = [Int8](repeating: -1, count: (tokens.count + 1) * (text.count + 1))
        return match(0, 0, text, &memo)
    }

    private func match(_ t: Int, _ c: Int, _ text: [Unicode.Scalar], _ memo: inout [Int8]) -> Bool {
        let slot = t * (text.count + 1) + c
        if memo[slot] >= 0 { return memo[slot] == 1 }
        let result: Bool
        if t == tokens.count {
            result = c == text.count
        } else {
            switch tokens[t] {
            case .literal(let scalar):
                result = c < text.count && text[c] == scalar && match(t + 1, c + 1, text, &memo)
            case .anyOne:
                result = c < text.count && text[c] != "/" && match(t + 1, c + 1, text, &memo)
            case .set(let ranges, let negated):
                if c < text.count, text[c] != "/" {
                    let inSet = ranges.contains { $0.contains(text[c].value) }
                    result = inSet != negated && match(t + 1, c + 1, text, &memo)
                } else {
                    result = false
                }
            case .anyInSegment:
                var end = c
                var found = match(t + 1, c, text, &memo)
                while !found, end < text.count, text[end] != "/" {
                    end += 1
                    found = match(t + 1, end, text, &memo)
                }
                result = found
            case .anyAcrossSegments:
                var end = c
                var found = match(t + 1, c, text, &memo)
                while !found, end < text.count {
                    end += 1
                    found = match(t + 1, end, text, &memo)
                }
                result = found
            case .anyFolders:
                // Zero folders, or skip to just after any later '/'.
                var found = match(t + 1, c, text, &memo)
                var end = c
                while !found, end < text.count {
                    if text[end] == "/" { found = match(t + 1, end + 1, text, &memo) }
                    end += 1
                }
                result = found
            }
        }
        memo[slot] = result ? 1 : 0
        return result
    }
}

/// The include/exclude decision shared by outbound watching and inbound listing.
public struct FileFilter: Sendable, Hashable {
    /// Names ferry never sends, whatever the rule says: hidden files, editors' and uploaders' temporaries.
    public static let defaultIgnores: [String] = [".*", "*.tmp", "*.part", "*.filepart", "*.swp", "~*"]

    /// Patterns a path must match one of; empty means everything.
    public let include: [Glob]
    /// Patterns that exclude a path, the default ignores included.
    public let exclude: [Glob]

    /// Builds a filter; the default ignore list is added to `exclude` unless `addDefaultIgnores` is false.
    public init(include: [String], exclude: [String], addDefaultIgnores: Bool = true) throws(Glob.SyntaxError) {
        var includes: [Glob] = []
        for pattern in include { includes.append(try Glob(pattern)) }
        var excludes: [Glob] = []
        for pattern in (addDefaultIgnores ? Self.defaultIgnores : []) + exclude { excludes.append(try Glob(pattern)) }
        self.include = includes
        self.exclude = excludes
    }

    /// Why a relative path is not selected: the exclude pattern that matched it (or one of its folders),
    /// or no include pattern matching it.
    public enum Refusal: Sendable, Equatable {
        case excluded(by: String)
        case folderExcluded(folder: String, by: String)
        case notIncluded
    }

    /// Whether the relative path is selected. Any folder segment starting with `.` (such as ferry's own
    /// `.ferry/`) excludes everything under it when the default ignores are on.
    public func accepts(_ relativePath: String) -> Bool { refusal(of: relativePath) == nil }

    /// Why `accepts` refuses the relative path (the first pattern that does, in the order it checks),
    /// or nil when it is selected: what `ferry explain` names.
    public func refusal(of relativePath: String) -> Refusal? {
        if let glob = exclude.first(where: { $0.matches(relativePath) }) { return .excluded(by: glob.pattern) }
        if relativePath.contains("/") {
            let folders = relativePath.split(separator: "/").dropLast()
            for folder in folders {
                let segment = String(folder)
                if let glob = exclude.first(where: { $0.matchesBaseName && $0.matches(segment) }) {
                    return .folderExcluded(folder: segment, by: glob.pattern)
                }
            }
        }
        return include.isEmpty || include.contains(where: { $0.matches(relativePath) }) ? nil : .notIncluded
    }
}
