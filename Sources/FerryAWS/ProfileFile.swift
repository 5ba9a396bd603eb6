import Foundation

/// The shared AWS `config` and `credentials` files, parsed as the AWS SDKs parse them.
///
/// Profiles from both files are merged; the credentials file wins on a clash. In the config file
/// `[profile default]` takes precedence over `[default]`, and other names need the `profile ` prefix.
public struct AWSProfileFile: Sendable, Equatable {
    /// Profile name → property (lower-cased) → value.
    public var profiles: [String: [String: String]] = [:]
    /// `[sso-session NAME]` sections of the config file.
    public var ssoSessions: [String: [String: String]] = [:]

    public init() {}

    /// A syntax error, with the file and line so the user can fix it.
    public struct ParseError: Error, CustomStringConvertible {
        public var message: String
        public var file: String
        public var line: Int
        public var description: String { "\(file):\(line): \(message)" }
    }

    enum Kind { case config, credentials }

    /// Parses the two files' contents (either may be nil when the file does not exist).
    public static func parse(config: String?, credentials: String?, configPath: String = "config",
                             credentialsPath: String = "credentials") throws -> AWSProfileFile {
        var result = AWSProfileFile()
        if let config { try result.merge(config, kind: .config, path: configPath) }
        if let credentials { try result.merge(credentials, kind: .credentials, path: credentialsPath) }
        return result
    }

    private static func isValidName(_ name: Substring) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { s in
            (s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s))) || "-/.%@_:+".unicodeScalars.contains(s)
        }
    }

    private static func isWhitespace(_ c: Character) -> Bool { c == " " || c == "\t" }

    private static func trim(_ s: Substring) -> Substring {
        var t = s
        while let f = t.first, isWhitespace(f) { t.removeFirst() }
        while let l = t.last, isWhitespace(l) { t.removeLast() }
        return t
    }

    private enum Section { case profile(String), ssoSession(String), ignored }

    private mutating func merge(_ text: String, kind: Kind, path: String) throws {
        // "\r\n" is one Character in Swift, so normalise line endings before splitting.
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        // In the config file, [profile default] beats [default] wherever either appears.
        let hasPrefixedDefault = kind == .config && lines.contains { line in
            guard line.first == "[", let close = line.firstIndex(of: "]") else { return false }
            let inner = Self.trim(line[line.index(after: line.startIndex)..<close])
            return inner.hasPrefix("profile") && inner.dropFirst(7).first.map(Self.isWhitespace) == true
                && Self.trim(inner.dropFirst(7)) == "default"
        }
        var section: Section?
        var property: String?
        var propertyStartedEmpty = false
        var fileProfiles: [String: [String: String]] = [:]
        var fileSessions: [String: [String: String]] = [:]

        func set(_ key: String, _ value: String, append: Bool) {
            switch section {
            case .profile(let name):
                fileProfiles[name, default: [:]][key] = append ? (fileProfiles[name]?[key] ?? "") + value : value
            case .ssoSession(let name):
                fileSessions[name, default: [:]][key] = append ? (fileSessions[name]?[key] ?? "") + value : value
            case .ignored, nil: break
            }
        }

        for (index, line) in lines.enumerated() {
            let number = index + 1
            let trimmed = Self.trim(line)
            if trimmed.isEmpty || trimmed.first == "#" || trimmed.first == ";" { continue }
            if line.first == "[" {
                guard let close = line.firstIndex(of: "]") else {
                    throw ParseError(message: "Profile definition must end with ']'", file: path, line: number)
                }
                let inner = Self.trim(line[line.index(after: line.startIndex)..<close])
                property = nil
                section = classify(inner, kind: kind, hasPrefixedDefault: hasPrefixedDefault)
                if case .profile(let name) = section { fileProfiles[name, default: [:]] = fileProfiles[name] ?? [:] }
                if case .ssoSession(let name) = section { fileSessions[name, default: [:]] = fileSessions[name] ?? [:] }
                continue
            }
            if Self.isWhitespace(line.first!) {
                guard section != nil else {
                    throw ParseError(message: "Expected a profile definition, found continuation", file: path, line: number)
                }
                guard let key = property else {
                    throw ParseError(message: "Expected a property definition, found continuation", file: path, line: number)
                }
                if propertyStartedEmpty {
                    guard let eq = trimmed.firstIndex(of: "=") else {
                        throw ParseError(message: "Expected an '=' sign defining a sub-property", file: path, line: number)
                    }
                    if Self.trim(trimmed[..<eq]).isEmpty {
                        throw ParseError(message: "Sub-property did not have a name", file: path, line: number)
                    }
                }
                set(key, "\n" + trimmed, append: true)
                continue
            }
            guard section != nil else {
                throw ParseError(message: "Expected a profile definition", file: path, line: number)
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw ParseError(message: "Expected an '=' sign defining a property", file: path, line: number)
            }
            let key = Self.trim(line[..<eq])
            if key.isEmpty { throw ParseError(message: "Property did not have a name", file: path, line: number) }
            var value = line[line.index(after: eq)...]
            // A comment starts at # or ; that follows whitespace; adjacent ones belong to the value.
            var previous: Character = " "
            for i in value.indices {
                let c = value[i]
                if (c == "#" || c == ";") && Self.isWhitespace(previous) { value = value[..<i]; break }
                previous = c
            }
            value = Self.trim(value)
            guard Self.isValidName(key) else { property = nil; continue }
            property = key.lowercased()
            propertyStartedEmpty = value.isEmpty
            set(key.lowercased(), String(value), append: false)
        }
        for (name, props) in fileProfiles { profiles[name, default: [:]].merge(props) { _, new in new } }
        for (name, props) in fileSessions { ssoSessions[name, default: [:]].merge(props) { _, new in new } }
    }

    private func classify(_ inner: Substring, kind: Kind, hasPrefixedDefault: Bool) -> Section {
        func prefixed(_ prefix: String) -> Substring? {
            guard inner.hasPrefix(prefix), let next = inner.dropFirst(prefix.count).first, Self.isWhitespace(next) else { return nil }
            return Self.trim(inner.dropFirst(prefix.count))
        }
        switch kind {
        case .credentials:
            return Self.isValidName(inner) ? .profile(String(inner)) : .ignored
        case .config:
            if let name = prefixed("profile") { return Self.isValidName(name) ? .profile(String(name)) : .ignored }
            if let name = prefixed("sso-session") { return Self.isValidName(name) ? .ssoSession(String(name)) : .ignored }
            if inner == "default" { return hasPrefixedDefault ? .ignored : .profile("default") }
            return .ignored
        }
    }
}
