internal import CYAML

/// A YAML syntax error as libyaml reports it, with libyaml's position.
struct YAMLSyntaxError: Error, Sendable {
    var position: SourcePosition
    var message: String
}

/// Owns one libyaml parser and the bytes it reads; both are released in `deinit`.
final class YAMLEventParser {
    /// Heap-allocated so that its address is stable for libyaml across calls.
    private let parser: UnsafeMutablePointer<yaml_parser_t>
    private let input: UnsafeMutableBufferPointer<UInt8>
    /// libyaml's initializer fails only when it cannot allocate its buffers.
    private let initialized: Bool

    init(bytes: [UInt8]) {
        // libyaml keeps a pointer to the input for its whole life, so the bytes get a stable home here.
        input = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bytes.count, 1))
        _ = input.initialize(from: bytes)
        parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        initialized = yaml_parser_initialize(parser) == 1
        if initialized { yaml_parser_set_input_string(parser, input.baseAddress, bytes.count) }
    }

    deinit {
        if initialized { yaml_parser_delete(parser) }
        parser.deallocate()
        input.deallocate()
    }

    /// Hands the next event to `body`, then frees it; throws libyaml's error with its position.
    func next<T>(_ body: (inout yaml_event_t) -> T) throws(YAMLSyntaxError) -> T {
        guard initialized else { throw YAMLSyntaxError(position: .start, message: "cannot read YAML: libyaml could not allocate memory") }
        var event = yaml_event_t()
        guard yaml_parser_parse(parser, &event) == 1 else { throw currentError() }
        defer { yaml_event_delete(&event) }
        return body(&event)
    }

    private func currentError() -> YAMLSyntaxError {
        let parser = self.parser.pointee
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown problem"
        if parser.error == YAML_READER_ERROR {
            // The reader reports a byte offset, not a mark: turn it into line and column ourselves.
            let position = Self.position(ofByte: Int(parser.problem_offset), in: input)
            var message = "invalid YAML: \(problem)"
            if parser.problem_value >= 0 {
                let hex = String(parser.problem_value, radix: 16, uppercase: false)
                message += " (byte 0x\(hex.count < 2 ? "0" + hex : hex))"
            }
            return YAMLSyntaxError(position: position, message: message)
        }
        var message = "invalid YAML: \(problem)"
        if let context = parser.context {
            let context = String(cString: context)
            message += " (\(context) at \(Int(parser.context_mark.line) + 1):\(Int(parser.context_mark.column) + 1))"
            if context == "while scanning an alias" {
                // The usual cause is an unquoted cron expression such as */5 * * * *.
                message += "; a value starting with '*' must be quoted, like \"*/5 * * * *\""
            }
        }
        return YAMLSyntaxError(position: Self.position(parser.problem_mark), message: message)
    }

    static func position(_ mark: yaml_mark_t) -> SourcePosition {
        SourcePosition(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    private static func position(ofByte offset: Int, in bytes: UnsafeMutableBufferPointer<UInt8>) -> SourcePosition {
        var line = 1, column = 1
        var index = 0
        while index < min(offset, bytes.count) {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
            index += 1
        }
        return SourcePosition(line: line, column: column)
    }
}

/// Builds the node tree from libyaml's events, keeping every node's position, and reports duplicate keys.
enum YAMLComposer {
    /// Nesting deeper than this is refused so that a hostile or mangled file cannot exhaust memory.
    static let maxDepth = 64

    private enum Frame {
        case sequence(items: [YAMLNode], position: SourcePosition, anchor: String?)
        case mapping(pairs: [(key: YAMLNode, value: YAMLNode)], pendingKey: YAMLNode?, seen: [String: SourcePosition],
                     position: SourcePosition, anchor: String?)
    }

    private enum Step {
        case streamStart, streamEnd, documentStart(SourcePosition), documentEnd
        case scalar(String, YAMLNode.ScalarStyle, SourcePosition, anchor: String?)
        case alias(String, SourcePosition)
        case sequenceStart(SourcePosition, anchor: String?), sequenceEnd
        case mappingStart(SourcePosition, anchor: String?), mappingEnd
        case other
    }

    /// Returns the document's root, or nil for an empty file; duplicate keys go to `sink`.
    static func compose(_ bytes: [UInt8], into sink: inout DiagnosticSink) throws(YAMLSyntaxError) -> YAMLNode? {
        let parser = YAMLEventParser(bytes: bytes)
        var stack: [Frame] = []
        var anchors: [String: YAMLNode] = [:]
        var root: YAMLNode?
        var documents = 0

        while true {
            let step = try parser.next(Self.step(of:))
            var finished: YAMLNode?
            switch step {
            case .streamStart, .other, .documentEnd:
                continue
            case .streamEnd:
                return root
            case .documentStart(let position):
                documents += 1
                if documents > 1 {
                    throw YAMLSyntaxError(position: position, message: "a second YAML document starts here; the rules file must hold exactly one")
                }
                continue
            case .scalar(let text, let style, let position, let anchor):
                let node = YAMLNode(content: .scalar(text, style), position: position)
                if let anchor { anchors[anchor] = node }
                finished = node
            case .alias(let name, let position):
                guard let target = anchors[name] else {
                    throw YAMLSyntaxError(position: position, message: "invalid YAML: alias '*\(name)' refers to no anchor '&\(name)' defined before it")
                }
                // The copy points at the alias, so that a problem with it is reported where it is used.
                var copy = target
                copy.position = position
                finished = copy
            case .sequenceStart(let position, let anchor):
                guard stack.count < maxDepth else {
                    throw YAMLSyntaxError(position: position, message: "the rules file nests deeper than \(maxDepth) levels")
                }
                stack.append(.sequence(items: [], position: position, anchor: anchor))
                continue
            case .mappingStart(let position, let anchor):
                guard stack.count < maxDepth else {
                    throw YAMLSyntaxError(position: position, message: "the rules file nests deeper than \(maxDepth) levels")
                }
                stack.append(.mapping(pairs: [], pendingKey: nil, seen: [:], position: position, anchor: anchor))
                continue
            case .sequenceEnd, .mappingEnd:
                guard let frame = stack.popLast() else { continue }
                switch frame {
                case .sequence(let items, let position, let anchor):
                    let node = YAMLNode(content: .sequence(items), position: position)
                    if let anchor { anchors[anchor] = node }
                    finished = node
                case .mapping(let pairs, _, _, let position, let anchor):
                    let node = YAMLNode(content: .mapping(pairs), position: position)
                    if let anchor { anchors[anchor] = node }
                    finished = node
                }
            }
            guard let node = finished else { continue }
            guard let top = stack.popLast() else {
                root = node
                continue
            }
            switch top {
            case .sequence(var items, let position, let anchor):
                items.append(node)
                stack.append(.sequence(items: items, position: position, anchor: anchor))
            case .mapping(var pairs, let pendingKey, var seen, let position, let anchor):
                if let key = pendingKey {
                    let name = key.scalar ?? ""
                    if let first = seen[name] {
                        sink.error(key.position, "duplicate key '\(name)' (first defined at \(first.line):\(first.column))")
                    } else {
                        seen[name] = key.position
                        pairs.append((key: key, value: node))
                    }
                    stack.append(.mapping(pairs: pairs, pendingKey: nil, seen: seen, position: position, anchor: anchor))
                } else {
                    if node.scalar == nil {
                        sink.error(node.position, "a key must be a plain name, not \(node.kindDescription)")
                    }
                    stack.append(.mapping(pairs: pairs, pendingKey: node, seen: seen, position: position, anchor: anchor))
                }
            }
        }
    }

    private static func step(of event: inout yaml_event_t) -> Step {
        let position = YAMLEventParser.position(event.start_mark)
        switch event.type {
        case YAML_STREAM_START_EVENT: return .streamStart
        // libyaml answers NO_EVENT once the stream is over; treating it as the end guarantees termination.
        case YAML_STREAM_END_EVENT, YAML_NO_EVENT: return .streamEnd
        case YAML_DOCUMENT_START_EVENT: return .documentStart(position)
        case YAML_DOCUMENT_END_EVENT: return .documentEnd
        case YAML_SCALAR_EVENT:
            let length = Int(ferry_yaml_scalar_length(&event))
            let text: String
            if let value = ferry_yaml_scalar_value(&event) {
                text = String(decoding: UnsafeBufferPointer(start: value, count: length), as: UTF8.self)
            } else {
                text = ""
            }
            let style: YAMLNode.ScalarStyle
            switch yaml_scalar_style_t(UInt32(ferry_yaml_scalar_style(&event))) {
            case YAML_PLAIN_SCALAR_STYLE, YAML_ANY_SCALAR_STYLE: style = .plain
            case YAML_LITERAL_SCALAR_STYLE, YAML_FOLDED_SCALAR_STYLE: style = .block
            default: style = .quoted
            }
            return .scalar(text, style, position, anchor: anchorName(ferry_yaml_scalar_anchor(&event)))
        case YAML_ALIAS_EVENT: return .alias(anchorName(ferry_yaml_alias_anchor(&event)) ?? "", position)
        case YAML_SEQUENCE_START_EVENT: return .sequenceStart(position, anchor: anchorName(ferry_yaml_sequence_anchor(&event)))
        case YAML_SEQUENCE_END_EVENT: return .sequenceEnd
        case YAML_MAPPING_START_EVENT: return .mappingStart(position, anchor: anchorName(ferry_yaml_mapping_anchor(&event)))
        case YAML_MAPPING_END_EVENT: return .mappingEnd
        default: return .other
        }
    }

    private static func anchorName(_ pointer: UnsafePointer<UInt8>?) -> String? {
        pointer.map { String(cString: $0) }
    }
}
