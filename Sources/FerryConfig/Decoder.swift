import FerryGlob

/// The keys of one YAML mapping, looked up by name, with their positions.
struct Fields {
    let node: YAMLNode
    var entries: [String: (key: YAMLNode, value: YAMLNode)] = [:]

    /// The value of `key`, or nil if it is absent or written as null.
    subscript(_ key: String) -> YAMLNode? {
        guard let value = entries[key]?.value, !value.isNull else { return nil }
        return value
    }

    func keyPosition(_ key: String) -> SourcePosition? { entries[key]?.key.position }
}

/// Walks the node tree into typed values; every problem goes to the sink and decoding carries on,
/// so that one run reports everything.
struct RulesDecoder {
    var sink: DiagnosticSink

    // MARK: Mappings

    /// Reads a mapping, reporting keys that are not in `known` (with a suggestion). `nested` names the
    /// sub-sections whose keys are often written one level too high, so the message can say where they go.
    mutating func fields(_ node: YAMLNode, _ name: String, known: [String], nested: [String: [String]] = [:]) -> Fields? {
        guard case .mapping(let pairs) = node.content else {
            sink.error(node.position, "\(name) must be a mapping of keys to values, got \(node.kindDescription)")
            return nil
        }
        var fields = Fields(node: node)
        for pair in pairs {
            guard let key = pair.key.scalar else { continue }
            if known.contains(key) {
                fields.entries[key] = pair
            } else if let section = nested.first(where: { $0.value.contains(key) })?.key {
                sink.error(pair.key.position, "unknown key '\(key)' in \(name); it belongs inside '\(section):'")
            } else if let guess = RulesSchema.suggestion(for: key, among: known) {
                sink.error(pair.key.position, "unknown key '\(key)' in \(name); did you mean '\(guess)'?")
            } else {
                sink.error(pair.key.position, "unknown key '\(key)' in \(name); expected one of: \(known.joined(separator: ", "))")
            }
        }
        return fields
    }

    mutating func required(_ fields: Fields, _ key: String, in what: String) -> YAMLNode? {
        if let value = fields[key] { return value }
        if let position = fields.keyPosition(key) {
            sink.error(position, "'\(key)' needs a value")
        } else {
            sink.error(fields.node.position, "missing required key '\(key)' in \(what)")
        }
        return nil
    }

    // MARK: Scalars

    mutating func string(_ node: YAMLNode?, _ key: String) -> String? {
        guard let node else { return nil }
        guard let text = node.scalar else {
            sink.error(node.position, "'\(key)' must be a single value, got \(node.kindDescription)")
            return nil
        }
        if text.isEmpty {
            sink.error(node.position, "'\(key)' cannot be empty")
            return nil
        }
        return text
    }

    mutating func integer(_ node: YAMLNode?, _ key: String, range: ClosedRange<Int>, default value: Int, why: String = "") -> Int {
        guard let node else { return value }
        guard let text = node.scalar, let number = Int(text) else {
            sink.error(node.position, "'\(key)' must be a whole number from \(range.lowerBound) to \(range.upperBound), got \(node.kindDescription)")
            return value
        }
        guard range.contains(number) else {
            sink.error(node.position, "'\(key)' must be from \(range.lowerBound) to \(range.upperBound)\(why), got \(number)")
            return value
        }
        return number
    }

    mutating func number(_ node: YAMLNode?, _ key: String, max: Double, default value: Double) -> Double {
        guard let node else { return value }
        guard let text = node.scalar, let number = Double(text), number.isFinite else {
            sink.error(node.position, "'\(key)' must be a number, got \(node.kindDescription)")
            return value
        }
        guard number > 0, number <= max else {
            sink.error(node.position, "'\(key)' must be greater than 0 and at most \(Int(max)), got \(text)")
            return value
        }
        return number
    }

    mutating func boolean(_ node: YAMLNode?, _ key: String, default value: Bool) -> Bool {
        guard let node else { return value }
        switch node.scalar {
        case "true": return true
        case "false": return false
        default:
            sink.error(node.position, "'\(key)' must be true or false, got \(node.kindDescription)")
            return value
        }
    }

    mutating func duration(_ node: YAMLNode?, _ key: String, default value: Duration, allowZero: Bool = false) -> Duration {
        guard let node, let text = string(node, key) else { return value }
        switch ValueSyntax.duration(text) {
        case .failure(let problem):
            sink.error(node.position, "'\(key)': \(problem.message)")
            return value
        case .success(let parsed):
            if parsed == .zero && !allowZero {
                sink.error(node.position, "'\(key)' must be greater than 0")
                return value
            }
            return parsed
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: YAMLNode?, _ key: String, default value: T) -> T where T.RawValue == String {
        guard let node, let text = string(node, key) else { return value }
        if let parsed = T(rawValue: text) { return parsed }
        let options = T.allCases.map(\.rawValue)
        var message = "'\(key)' must be one of \(options.joined(separator: ", ")), got '\(text)'"
        if let guess = RulesSchema.suggestion(for: text, among: options) { message += "; did you mean '\(guess)'?" }
        sink.error(node.position, message)
        return value
    }

    /// An absolute local path; `..` is refused because it makes folder comparisons meaningless.
    mutating func absolutePath(_ node: YAMLNode?, _ key: String) -> String? {
        guard let node, let text = string(node, key) else { return nil }
        guard text.hasPrefix("/") else {
            sink.error(node.position, "'\(key)' must be an absolute path (starting with '/'), got '\(text)'")
            return nil
        }
        if text.split(separator: "/").contains("..") {
            sink.error(node.position, "'\(key)' must not contain '..', got '\(text)'")
            return nil
        }
        return PathRules.normalize(text)
    }

    mutating func s3Location(_ node: YAMLNode?, _ key: String) -> S3Location? {
        guard let node, let text = string(node, key) else { return nil }
        switch ValueSyntax.s3Location(text) {
        case .success(let location): return location
        case .failure(let problem):
            sink.error(node.position, "'\(key)': \(problem.message)")
            return nil
        }
    }

    /// A list of glob patterns (a single pattern is accepted as a one-item list), each compiled.
    mutating func globs(_ node: YAMLNode?, _ key: String) -> [String] {
        guard let node else { return [] }
        let items: [YAMLNode]
        switch node.content {
        case .scalar: items = [node]
        case .sequence(let list): items = list
        case .mapping:
            sink.error(node.position, "'\(key)' must be a list of glob patterns, like [\"*.edi\"], got a mapping")
            return []
        }
        var patterns: [String] = []
        for item in items {
            guard case .scalar(let text, let style) = item.content else {
                sink.error(item.position, "each '\(key)' pattern must be a string, got \(item.kindDescription)")
                continue
            }
            if text.hasPrefix("/") {
                sink.error(item.position, "'\(key)' pattern '\(text)' starts with '/': patterns are relative to the folder")
                continue
            }
            do {
                _ = try Glob(text)
                patterns.append(text)
            } catch {
                // Point at the offending character when the scalar's text maps one-to-one onto the line.
                var position = item.position
                let verbatim = !text.contains("\\") && !text.contains("'") && !text.contains("\n")
                if style == .plain && !text.contains("\n") {
                    position.column += error.position - 1
                } else if style == .quoted && verbatim {
                    position.column += error.position
                }
                sink.error(position, "invalid glob '\(text)': \(error.reason)")
            }
        }
        return patterns
    }

    mutating func name(_ node: YAMLNode?, _ key: String) -> String? {
        guard let node, let text = string(node, key) else { return nil }
        let valid = text.count <= 64 && text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" || $0 == "."
        } && !text.hasPrefix(".") && !text.hasPrefix("-")
        if !valid {
            sink.error(node.position, "\(key) '\(text)' may use only letters, digits, '_', '-' and '.' (not first), at most 64 characters")
            return nil
        }
        return text
    }

    mutating func schedule(_ node: YAMLNode?) -> Schedule {
        guard let node, let text = string(node, "schedule") else { return .every(RulesDefaults.schedule) }
        let trimmed = text.trimmingCharacters(in: " \t")
        if trimmed.hasPrefix("every ") {
            let interval = String(trimmed.dropFirst(6)).trimmingCharacters(in: " ")
            switch ValueSyntax.duration(interval) {
            case .success(let duration) where duration > .zero:
                return .every(duration)
            case .success:
                sink.error(node.position, "'schedule' interval must be greater than 0")
            case .failure(let problem):
                sink.error(node.position, "invalid schedule '\(text)': \(problem.message)")
            }
            return .every(RulesDefaults.schedule)
        }
        let fieldCount = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).count
        if fieldCount == 1 && !trimmed.hasPrefix("@") {
            sink.error(node.position, "'schedule' must be 'every <duration>' (like every 5m) or a 5-field cron expression (like */5 * * * *), got '\(text)'")
            return .every(RulesDefaults.schedule)
        }
        do {
            return .cron(try CronExpression(trimmed))
        } catch {
            sink.error(node.position, "invalid schedule '\(text)': \(error.message)")
            return .every(RulesDefaults.schedule)
        }
    }

    mutating func afterRetrieve(_ node: YAMLNode?) -> AfterRetrieve {
        guard let node, let text = string(node, "after_retrieve") else { return RulesDefaults.afterRetrieve }
        switch text {
        case "keep": return .keep
        case "delete": return .delete
        default:
            if text.hasPrefix("move:") {
                let target = String(text.dropFirst(5)).trimmingCharacters(in: " ")
                if !target.isEmpty { return .move(target) }
                sink.error(node.position, "'after_retrieve' move needs a remote folder, like move:/outbound/archive")
            } else {
                sink.error(node.position, "'after_retrieve' must be keep, delete or move:<remote folder>, got '\(text)'")
            }
            return RulesDefaults.afterRetrieve
        }
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var result = Substring(self)
        while let first = result.first, set.contains(first) { result.removeFirst() }
        while let last = result.last, set.contains(last) { result.removeLast() }
        return String(result)
    }
}
