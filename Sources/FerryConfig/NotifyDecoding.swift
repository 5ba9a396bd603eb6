import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension RulesBuilder {
    /// A `notify:` section (top level or a rule's override). Everything that would only fail when the
    /// first alert is due — a relative command, a URL curl cannot POST to, a headers file that is missing
    /// or malformed — is an error now, at `ferry validate`.
    mutating func notifySettings(_ node: YAMLNode?, in what: String) -> NotifySettings? {
        guard let node else { return nil }
        guard let fields = decoder.fields(node, "'notify' of \(what)", known: RulesSchema.notify, nested: ["webhook": RulesSchema.webhook]) else { return nil }
        let command = notifyCommand(fields["command"])
        let commandTimeout = decoder.duration(fields["command_timeout"], "command_timeout", default: RulesDefaults.notifyCommandTimeout)
        if fields["command_timeout"] != nil && fields["command"] == nil, let position = fields.keyPosition("command_timeout") {
            decoder.sink.warning(position, "'command_timeout' is ignored because 'notify' has no 'command'")
        }
        var webhook: NotifySettings.Webhook?
        if let node = fields["webhook"], let hook = decoder.fields(node, "'webhook'", known: RulesSchema.webhook) {
            webhook = self.webhook(hook)
        }
        if fields["command"] == nil && fields["webhook"] == nil {
            decoder.sink.error(node.position, "'notify' of \(what) needs a 'command', a 'webhook', or both")
            return nil
        }
        if (fields["command"] != nil && command == nil) || (fields["webhook"] != nil && webhook == nil) { return nil }
        return NotifySettings(command: command, commandTimeout: commandTimeout, webhook: webhook)
    }

    /// `command:` — one absolute path, or a list whose first item is one (the rest are its arguments).
    /// No shell ever reads it, so `$VAR`, pipes and quotes mean nothing.
    private mutating func notifyCommand(_ node: YAMLNode?) -> [String]? {
        guard let node else { return nil }
        var argv: [String] = []
        switch node.content {
        case .scalar:
            guard let text = decoder.string(node, "command") else { return nil }
            argv = [text]
        case .sequence(let items):
            for item in items {
                guard let text = item.scalar else {
                    decoder.sink.error(item.position, "each item of 'command' must be a string (the program, then its arguments), got \(item.kindDescription)")
                    return nil
                }
                argv.append(text)
            }
        case .mapping:
            decoder.sink.error(node.position, "'command' must be an absolute path or a list [program, arguments…], got a mapping")
            return nil
        }
        guard let program = argv.first, !program.isEmpty else {
            decoder.sink.error(node.position, "'command' needs a program: an absolute path such as /usr/local/bin/ferry-alert")
            return nil
        }
        guard program.hasPrefix("/") else {
            decoder.sink.error(node.position, "'command' must start with an absolute path (no shell or PATH lookup is used), got '\(program)'; write e.g. /usr/local/bin/\(program)")
            return nil
        }
        if program.contains(" "), argv.count == 1 {
            decoder.sink.warning(node.position, "'command' '\(program)' contains a space and is run as one program name without a shell; to pass arguments write a list: [\"/path/to/program\", \"--flag\"]")
        }
        return argv
    }

    private mutating func webhook(_ fields: Fields) -> NotifySettings.Webhook? {
        var url: String?
        if let node = decoder.required(fields, "url", in: "'webhook'"), let text = decoder.string(node, "url") {
            let parsed = URLComponents(string: text)
            if let parsed, ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""), !(parsed.host ?? "").isEmpty {
                url = text
            } else {
                decoder.sink.error(node.position, "'url' must be an http:// or https:// URL with a host, got '\(text)'")
            }
        }
        var headersFile: String?
        if let node = fields["headers_file"], let path = decoder.absolutePath(node, "headers_file") {
            if let problem = NotifyHeaders.problem(readingFileAt: path) {
                decoder.sink.error(node.position, "'headers_file' \(path): \(problem)")
            } else {
                headersFile = path
            }
        }
        let timeout = decoder.duration(fields["timeout"], "timeout", default: RulesDefaults.webhookTimeout)
        guard let url, fields["headers_file"] == nil || headersFile != nil else { return nil }
        return NotifySettings.Webhook(url: url, headersFile: headersFile, timeout: timeout)
    }
}

/// The `headers_file` of a webhook: `Name: value` lines; blank lines and lines starting with `#` are
/// ignored. It usually holds a secret, so no message ever quotes a value from it.
public enum NotifyHeaders {
    /// A header file problem, worded for the operator without the file's contents.
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// The headers in the file at `path`.
    public static func read(path: String) throws(Problem) -> [(name: String, value: String)] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            switch errno {
            case ENOENT: throw Problem(message: "the file does not exist; create it with lines such as 'Authorization: Bearer <token>'")
            case EACCES: throw Problem(message: "it cannot be read by this user; make it readable by the user ferry runs as (e.g. chgrp ferry, chmod 640)")
            default: throw Problem(message: "it cannot be opened: \(String(cString: strerror(errno)))")
            }
        }
        defer { close(descriptor) }
        var info = stat()
        if fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw Problem(message: "it is a directory, not a file of header lines")
        }
        // Small by nature; a huge one is a mistake (a wrong path), not headers.
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= 65_536 {
            let count = Glibc.read(descriptor, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw Problem(message: "it cannot be read: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        guard bytes.count <= 65_536 else { throw Problem(message: "it is larger than 64 KiB, too large for a file of header lines") }
        let data = Data(bytes)
        guard let text = String(data: data, encoding: .utf8) else {
            throw Problem(message: "it is not UTF-8 text; it must hold 'Name: value' lines")
        }
        var headers: [(name: String, value: String)] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine)
            let trimmed = line.trimmingCharacters(in: " \t")
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw Problem(message: "line \(index + 1) is not a 'Name: value' header line (its contents are not shown, it may hold a secret)")
            }
            let name = String(line[..<colon]).trimmingCharacters(in: " \t")
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
            let validName = !name.isEmpty && name.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 32 && $0.value < 127 && $0 != ":" }
            guard validName, !value.unicodeScalars.contains(where: { $0.value < 32 && $0 != "\t" }) else {
                throw Problem(message: "line \(index + 1) is not a valid 'Name: value' header line (its contents are not shown, it may hold a secret)")
            }
            headers.append((name, value))
        }
        return headers
    }

    /// Why the file cannot be used, or nil when it can.
    static func problem(readingFileAt path: String) -> String? {
        do {
            _ = try read(path: path)
            return nil
        } catch {
            return error.message
        }
    }
}
