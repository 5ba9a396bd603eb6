/// A 1-based position in the rules file.
public struct SourcePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 1-based line.
    public var line: Int
    /// 1-based column, counted in characters.
    public var column: Int

    /// Creates a position from 1-based line and column.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// The start of the file, where file-wide diagnostics point.
    public static let start = SourcePosition(line: 1, column: 1)

    public static func < (lhs: SourcePosition, rhs: SourcePosition) -> Bool {
        (lhs.line, lhs.column) < (rhs.line, rhs.column)
    }

    public var description: String { "\(line):\(column)" }
}

/// One node of the YAML document, with the position of its first character.
struct YAMLNode: Sendable {
    enum ScalarStyle: Sendable { case plain, quoted, block }

    enum Content: Sendable {
        case scalar(String, ScalarStyle)
        case sequence([YAMLNode])
        /// Keys in file order; duplicates are reported while composing and only the first is kept.
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    var content: Content
    var position: SourcePosition

    /// The scalar text, if this node is a scalar.
    var scalar: String? {
        if case .scalar(let text, _) = content { return text }
        return nil
    }

    /// Plain `null`, `~` or nothing at all mean "no value", as YAML 1.1 says; quoted "null" is a string.
    var isNull: Bool {
        if case .scalar(let text, .plain) = content { return text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL" }
        return false
    }

    /// The kind of node in words, for "must be X, got Y" messages.
    var kindDescription: String {
        switch content {
        case .scalar(let text, _): return isNull ? "nothing" : "'\(text)'"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}
