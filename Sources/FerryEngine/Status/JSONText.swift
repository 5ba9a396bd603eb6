import Foundation

/// Writes JSON text directly, for outputs with thousands of records (`ferry history --json` on a busy
/// day): JSONEncoder with snake_case keys, sorted keys and ISO 8601 dates spent ~100 µs per record
/// converting keys and formatting dates, 10× the query. Keys are given in their final form and order.
struct JSONText {
    private(set) var text = ""
    private var indent = 0
    /// Whether the container being written has an element yet (one entry per open container).
    private var started: [Bool] = []

    /// One value of an object or array, as JSON.
    enum Value {
        case string(String?)
        case int(Int64?)
        case bool(Bool)
        case date(Date?)
    }

    mutating func beginObject() { open("{") }
    mutating func endObject() { close("}") }
    mutating func beginArray() { open("[") }
    mutating func endArray() { close("]") }

    /// Starts the next entry of the object being written (the value follows).
    mutating func key(_ name: String) {
        separate()
        text += "\"" + name + "\" : "
    }

    /// The next element of the array being written, or the value of the key just written.
    mutating func value(_ value: Value) {
        if text.hasSuffix(" : ") == false { separate() }
        switch value {
        case .string(let string): text += string.map(Self.quoted) ?? "null"
        case .int(let number): text += number.map { String($0) } ?? "null"
        case .bool(let flag): text += flag ? "true" : "false"
        case .date(let date): text += date.map { "\"" + Self.iso8601($0) + "\"" } ?? "null"
        }
    }

    /// An object of `fields`, in the order given, as an element of the array being written.
    mutating func record(_ fields: KeyValuePairs<String, Value>) {
        beginObject()
        for (name, field) in fields {
            key(name)
            value(field)
        }
        endObject()
    }

    private mutating func open(_ bracket: String) {
        if !text.isEmpty && !text.hasSuffix(" : ") { separate() }
        text += bracket
        indent += 1
        started.append(false)
    }

    private mutating func close(_ bracket: String) {
        indent -= 1
        if started.removeLast() { text += "\n" + String(repeating: "  ", count: indent) }
        text += bracket
    }

    private mutating func separate() {
        guard !started.isEmpty else { return }
        text += started[started.count - 1] ? ",\n" : "\n"
        started[started.count - 1] = true
        text += String(repeating: "  ", count: indent)
    }

    /// `value` as a JSON string (the log handler's encoding: quotes, backslashes, control characters).
    static func quoted(_ value: String) -> String { FerryLogHandler.JSON.string(value) }

    /// `2026-12-07T04:20:03Z`, as JSONEncoder's `.iso8601` writes it (whole seconds, UTC).
    static func iso8601(_ date: Date) -> String { FerryLogHandler.Timestamp.iso8601(date, fractional: false) }
}
