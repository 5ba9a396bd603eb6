/// A minimal reader for the small XML documents S3 and STS answer with (no DTDs, no namespaces
/// needed): elements, text and the five predefined entities plus numeric references.
struct XMLElement: Sendable {
    var name: String
    var text: String = ""
    var children: [XMLElement] = []

    func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    func all(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
    func string(_ name: String) -> String? { child(name)?.text }
    /// Follows a path of child names.
    func find(_ path: String...) -> XMLElement? {
        var node: XMLElement? = self
        for part in path { node = node?.child(part) }
        return node
    }

    static func parse(_ bytes: [UInt8]) -> XMLElement? {
        var stack: [XMLElement] = [XMLElement(name: "#document")]
        var i = 0
        let n = bytes.count
        while i < n {
            if bytes[i] == UInt8(ascii: "<") {
                guard let close = bytes[i...].firstIndex(of: UInt8(ascii: ">")) else { return nil }
                let tag = bytes[(i + 1)..<close]
                defer { i = close + 1 }
                guard let first = tag.first else { return nil }
                if first == UInt8(ascii: "?") || first == UInt8(ascii: "!") { continue }
                if first == UInt8(ascii: "/") {
                    guard stack.count > 1 else { return nil }
                    let done = stack.removeLast()
                    stack[stack.count - 1].children.append(done)
                    continue
                }
                let selfClosing = tag.last == UInt8(ascii: "/")
                let body = selfClosing ? tag.dropLast() : tag
                let nameEnd = body.firstIndex { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D } ?? body.endIndex
                var name = String(decoding: body[body.startIndex..<nameEnd], as: UTF8.self)
                if let colon = name.firstIndex(of: ":") { name = String(name[name.index(after: colon)...]) }
                if selfClosing {
                    stack[stack.count - 1].children.append(XMLElement(name: name))
                } else {
                    stack.append(XMLElement(name: name))
                }
            } else {
                let end = bytes[i...].firstIndex(of: UInt8(ascii: "<")) ?? n
                stack[stack.count - 1].text += unescape(String(decoding: bytes[i..<end], as: UTF8.self))
                i = end
            }
        }
        return stack.first?.children.first
    }

    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = ""
        var rest = Substring(s)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { out += rest[amp...]; return out }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                var scalar: UInt32?
                if entity.hasPrefix("#x") { scalar = UInt32(entity.dropFirst(2), radix: 16) }
                else if entity.hasPrefix("#") { scalar = UInt32(entity.dropFirst(1)) }
                if let v = scalar, let u = Unicode.Scalar(v) { out.unicodeScalars.append(u) } else { out += rest[amp...semi] }
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}

extension XMLElement {
    private static let errorTag = Array("<Error".utf8)

    /// Whether an S3 answer could hold an `<Error>` element: a byte scan that spares parsing the
    /// (usual) answers without one.
    static func mayContainError(_ body: [UInt8]) -> Bool {
        guard body.count >= errorTag.count else { return false }
        for start in 0 ... body.count - errorTag.count where body[start] == 0x3C {
            var matches = true
            for offset in 1 ..< errorTag.count where body[start + offset] != errorTag[offset] {
                matches = false
                break
            }
            if matches { return true }
        }
        return false
    }
}
