import Foundation
import Logging

/// ferry's swift-log handler: one line per event on standard error, in a form an operator reads.
///
/// Text (the default):
/// `2026-11-27T03:00:00Z info rule=invoices file.path=/srv/ferry/outbox/invoices/a.edi sent`
///
/// Under systemd, when standard error is the journal (`$JOURNAL_STREAM` names it), each line starts
/// with its syslog priority (`<3>` for error … `<7>` for debug) so journald files it at the right level,
/// and the timestamp is left out because the journal records its own.
///
/// JSON lines (`--log-format json`): `{"time":…,"level":…,"logger":…,"message":…,"rule":…}`, one object
/// per line, metadata flattened to dotted keys.
///
/// Secrets never reach the output: a metadata value whose key contains `secret`, `token`, `signature`,
/// `authorization`, `password` or `passphrase` is printed as `<redacted>`, and `key=value` / `"key": value`
/// pairs with such keys inside messages, values and errors (a presigned URL's `X-Amz-Signature=…`, an
/// `Authorization:` header) have their values replaced the same way.
public struct FerryLogHandler: LogHandler {
    /// How each line is written.
    public enum Format: String, Sendable, CaseIterable {
        /// `timestamp level key=value … message`, for people.
        case text
        /// One JSON object per line, for log shippers and `jq`.
        case json
    }

    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    private let label: String
    private let format: Format
    private let journald: Bool
    private let fileDescriptor: Int32
    private let clock: @Sendable () -> Date

    /// A handler for the logger named `label`.
    ///
    /// - Parameters:
    ///   - format: text or JSON lines.
    ///   - journald: prefix each line with its syslog priority and leave out the timestamp; see
    ///     `isJournalStream(environment:fileDescriptor:)` to decide it.
    ///   - fileDescriptor: where lines go (standard error by default); the handler does not close it.
    ///   - clock: the time stamped on each line; tests pass a fixed one.
    public init(label: String, format: Format = .text, journald: Bool = false,
                logLevel: Logger.Level = .info, fileDescriptor: Int32 = STDERR_FILENO,
                metadataProvider: Logger.MetadataProvider? = nil,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.label = label
        self.format = format
        self.journald = journald
        self.logLevel = logLevel
        self.fileDescriptor = fileDescriptor
        self.metadataProvider = metadataProvider
        self.clock = clock
    }

    /// The factory to hand to `LoggingSystem.bootstrap`: every logger writes to standard error in
    /// `format` at `logLevel`, with priority prefixes when standard error is the journal.
    public static func factory(format: Format = .text, logLevel: Logger.Level = .info,
                               environment: [String: String] = ProcessInfo.processInfo.environment)
        -> @Sendable (String) -> any LogHandler {
        let journald = isJournalStream(environment: environment)
        return { label in
            FerryLogHandler(label: label, format: format, journald: journald, logLevel: logLevel)
        }
    }

    /// Whether `fileDescriptor` is connected to journald: `$JOURNAL_STREAM` holds `device:inode` of the
    /// stream systemd connected, and it only counts if the descriptor still is that stream (a child
    /// whose standard error was redirected inherits the variable but not the stream).
    public static func isJournalStream(environment: [String: String],
                                       fileDescriptor: Int32 = STDERR_FILENO) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(fileDescriptor, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        var fields = Fields.flatten(merged)
        if let error = event.error { fields.append(("error", .text(String(describing: error)))) }
        let line: String
        switch format {
        case .text: line = textLine(event, fields)
        case .json: line = jsonLine(event, fields)
        }
        let prefix = journald ? "<\(Self.syslogPriority(event.level))>" : ""
        Output.write(prefix + line + "\n", to: fileDescriptor)
    }

    /// The syslog priority journald files a line under (sd-daemon(3)'s `SD_ERR`…`SD_DEBUG`).
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    private func textLine(_ event: LogEvent, _ fields: [(key: String, value: Fields.Value)]) -> String {
        var line = journald ? "" : Timestamp.iso8601(clock(), fractional: false) + " "
        line += event.level.rawValue
        for (key, value) in fields {
            line += " \(key)=\(value.textForm)"
        }
        line += " " + Fields.oneLine(Redaction.scrub(event.message.description))
        return line
    }

    private func jsonLine(_ event: LogEvent, _ fields: [(key: String, value: Fields.Value)]) -> String {
        var members: [(String, String)] = [
            ("time", JSON.string(Timestamp.iso8601(clock(), fractional: true))),
            ("level", JSON.string(event.level.rawValue)),
            ("logger", JSON.string(label)),
            ("message", JSON.string(Redaction.scrub(event.message.description))),
        ]
        let reserved = Set(members.map(\.0))
        for (key, value) in fields {
            // A metadata key must not shadow the fixed members that log shippers index on.
            members.append((reserved.contains(key) ? "metadata.\(key)" : key, value.jsonForm))
        }
        return "{" + members.map { "\(JSON.string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }
}

extension FerryLogHandler {
    /// Metadata flattened into ordered, already-redacted `key=value` pairs.
    fileprivate enum Fields {
        /// A printable metadata value.
        indirect enum Value {
            case text(String)
            case list([Value])
            case redacted

            var textForm: String {
                switch self {
                case .text(let text): quotedIfNeeded(Redaction.scrub(text))
                case .list(let items): quotedIfNeeded("[" + items.map(\.plainText).joined(separator: ",") + "]")
                case .redacted: Redaction.marker
                }
            }

            private var plainText: String {
                switch self {
                case .text(let text): Redaction.scrub(text)
                case .list(let items): "[" + items.map(\.plainText).joined(separator: ",") + "]"
                case .redacted: Redaction.marker
                }
            }

            var jsonForm: String {
                switch self {
                case .text(let text): JSON.string(Redaction.scrub(text))
                case .list(let items): "[" + items.map(\.jsonForm).joined(separator: ",") + "]"
                case .redacted: JSON.string(Redaction.marker)
                }
            }
        }

        /// Keys an operator looks for first, in this order; the rest follow alphabetically.
        static let leadingKeys = ["rule", "connector", "file.path", "transfer.id"]

        static func flatten(_ metadata: Logger.Metadata) -> [(key: String, value: Value)] {
            var pairs: [(key: String, value: Value)] = []
            func visit(_ key: String, _ value: Logger.MetadataValue) {
                if Redaction.isSensitive(key: key) {
                    pairs.append((key, .redacted))
                    return
                }
                switch value {
                case .dictionary(let nested):
                    for (child, childValue) in nested { visit("\(key).\(child)", childValue) }
                default:
                    pairs.append((key, convert(value)))
                }
            }
            for (key, value) in metadata { visit(key, value) }
            return pairs.sorted { lhs, rhs in
                let left = leadingKeys.firstIndex(of: lhs.key) ?? leadingKeys.count
                let right = leadingKeys.firstIndex(of: rhs.key) ?? leadingKeys.count
                return left != right ? left < right : lhs.key < rhs.key
            }
        }

        private static func convert(_ value: Logger.MetadataValue) -> Value {
            switch value {
            case .string(let text): .text(text)
            case .stringConvertible(let item): .text(item.description)
            case .array(let items): .list(items.map(convert))
            case .dictionary(let nested):
                .list(nested.sorted { $0.key < $1.key }.map { key, item in
                    Redaction.isSensitive(key: key) ? .text("\(key)=\(Redaction.marker)") : .text("\(key)=\(convert(item).textForm)")
                })
            }
        }

        /// Escapes line breaks and other control characters so that one event stays one line.
        static func oneLine(_ text: String) -> String {
            guard text.unicodeScalars.contains(where: isControl) else { return text }
            var result = ""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\n": result += "\\n"
                case "\r": result += "\\r"
                case "\t": result += "\\t"
                case _ where isControl(scalar): result += "\\u{\(String(scalar.value, radix: 16))}"
                default: result.unicodeScalars.append(scalar)
                }
            }
            return result
        }

        /// Values with spaces, quotes, `=` or control characters are quoted so the line splits unambiguously.
        private static func quotedIfNeeded(_ text: String) -> String {
            let needsQuotes = text.isEmpty || text.unicodeScalars.contains { scalar in
                scalar == " " || scalar == "\"" || scalar == "=" || scalar == "\\" || isControl(scalar)
            }
            guard needsQuotes else { return text }
            return "\"" + oneLine(text.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"")) + "\""
        }

        private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
            scalar.value < 0x20 || scalar.value == 0x7F
        }
    }

    /// Keeps secrets out of log lines.
    fileprivate enum Redaction {
        static let marker = "<redacted>"

        /// Words that make a key sensitive wherever they appear in it (`aws.secret_access_key`,
        /// `X-Amz-Security-Token`, `http.authorization`).
        static let sensitiveWords: [[UInt8]] = ["secret", "token", "signature", "authorization", "password", "passphrase"]
            .map { Array($0.utf8) }
        static let authorization = Array("authorization".utf8)
        /// For each byte value: whether some sensitive word starts with it.
        private static let startsSensitiveWord: [Bool] = (0 ..< 256).map { byte in sensitiveWords.contains { Int($0[0]) == byte } }

        static func isSensitive(key: String) -> Bool {
            containsSensitiveWord(asciiLowercased(Array(key.utf8)))
        }

        /// Replaces the value of every `key=value`, `key: value` or `"key": "value"` whose key contains a
        /// sensitive word. An `Authorization` value runs to the end of its line, since its scheme name, not
        /// the secret, comes first.
        static func scrub(_ text: String) -> String {
            let bytes = Array(text.utf8)
            let lowered = asciiLowercased(bytes)
            guard containsSensitiveWord(lowered) else { return text }
            var output: [UInt8] = []
            output.reserveCapacity(bytes.count)
            var index = 0
            while index < bytes.count {
                guard let word = sensitiveWord(in: lowered, at: index),
                      let valueRange = valueAfterKey(bytes, from: index + word.count, runsToLineEnd: word == authorization)
                else {
                    output.append(bytes[index])
                    index += 1
                    continue
                }
                output += bytes[index ..< valueRange.lowerBound]
                output += Array(marker.utf8)
                index = valueRange.upperBound
            }
            return String(decoding: output, as: UTF8.self)
        }

        /// Whether any sensitive word occurs in `lowered` (already lower-cased). A plain byte scan: the
        /// generic `Collection.contains(_:)` of the standard library cost more than the rest of a log line.
        private static func containsSensitiveWord(_ lowered: [UInt8]) -> Bool {
            lowered.indices.contains { sensitiveWord(in: lowered, at: $0) != nil }
        }

        /// The sensitive word that starts at `index` of `lowered`, if one does.
        private static func sensitiveWord(in lowered: [UInt8], at index: Int) -> [UInt8]? {
            let first = lowered[index]
            guard startsSensitiveWord[Int(first)] else { return nil }
            for word in sensitiveWords where word[0] == first && lowered.count - index >= word.count {
                var matches = true
                for offset in 1 ..< word.count where lowered[index + offset] != word[offset] {
                    matches = false
                    break
                }
                if matches { return word }
            }
            return nil
        }

        /// After a sensitive word: the rest of the key, an optional closing quote, `=` or `:`, spaces and an
        /// optional opening quote; returns where the value starts and ends, or nil if no value follows.
        private static func valueAfterKey(_ bytes: [UInt8], from start: Int, runsToLineEnd: Bool) -> Range<Int>? {
            var index = start
            while index < bytes.count, isKeyByte(bytes[index]) { index += 1 }
            if index < bytes.count, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") { index += 1 }
            guard index < bytes.count, bytes[index] == UInt8(ascii: "=") || bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            while index < bytes.count, bytes[index] == UInt8(ascii: " ") { index += 1 }
            var closing: UInt8?
            if index < bytes.count, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") {
                closing = bytes[index]
                index += 1
            }
            let valueStart = index
            while index < bytes.count {
                let byte = bytes[index]
                if let closing, byte == closing { break }
                if closing == nil, !runsToLineEnd, isValueDelimiter(byte) { break }
                if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") { break }
                index += 1
            }
            return valueStart < index ? valueStart ..< index : nil
        }

        private static func isKeyByte(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a") ... UInt8(ascii: "z"), UInt8(ascii: "A") ... UInt8(ascii: "Z"),
                 UInt8(ascii: "0") ... UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                true
            default: false
            }
        }

        private static func isValueDelimiter(_ byte: UInt8) -> Bool {
            " \t&,;\"')]}".utf8.contains(byte)
        }

        /// Lowercases ASCII letters only, so byte offsets stay aligned with the original text.
        private static func asciiLowercased(_ bytes: [UInt8]) -> [UInt8] {
            bytes.map { (UInt8(ascii: "A") ... UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
        }
    }

    /// UTC timestamps without a formatter object, which would cost more than the rest of the line.
    enum Timestamp {
        static func iso8601(_ date: Date, fractional: Bool) -> String {
            let interval = date.timeIntervalSince1970
            var seconds = time_t(interval.rounded(.down))
            var parts = tm()
            gmtime_r(&seconds, &parts)
            func pad(_ value: Int32, _ width: Int) -> String {
                let digits = String(value)
                return String(repeating: "0", count: max(0, width - digits.count)) + digits
            }
            var text = "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
                + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            if fractional {
                let milliseconds = Int32(min(999, ((interval - interval.rounded(.down)) * 1000).rounded(.down)))
                text += ".\(pad(milliseconds, 3))"
            }
            return text + "Z"
        }
    }

    /// Minimal JSON string encoding; ferry's log objects are flat, so no encoder is needed.
    enum JSON {
        static func string(_ text: String) -> String {
            var result = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": result += "\\\""
                case "\\": result += "\\\\"
                case "\n": result += "\\n"
                case "\r": result += "\\r"
                case "\t": result += "\\t"
                case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                    let hex = String(scalar.value, radix: 16)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: result.unicodeScalars.append(scalar)
                }
            }
            return result + "\""
        }
    }

    /// Serialises writes from all loggers so lines from different threads never interleave.
    fileprivate enum Output {
        private static let lock = NSLock()

        static func write(_ line: String, to descriptor: Int32) {
            let bytes = Array(line.utf8)
            lock.lock()
            defer { lock.unlock() }
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { buffer in
                    Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                }
                if written < 0 {
                    // Nowhere left to report a failed log write; drop the line rather than spin.
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
