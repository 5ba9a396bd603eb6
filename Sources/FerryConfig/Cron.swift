import Foundation

/// A 5-field cron expression — minute, hour, day of month, month, day of week — with Vixie cron's
/// meaning: `*`, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n`, month names `jan`…`dec`, day names
/// `sun`…`sat` (0 and 7 are Sunday), and the shorthands `@hourly`, `@daily`, `@weekly`, `@monthly`,
/// `@yearly`. When both day fields are restricted, a day matches if either does (as in Vixie cron).
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The expression as written.
    public let text: String
    /// Allowed values per field, as bit sets.
    let minutes: UInt64, hours: UInt64, daysOfMonth: UInt64, months: UInt64, daysOfWeek: UInt64
    /// Whether the day fields start with `*`: then both must match instead of either.
    let dayOfMonthStar: Bool, dayOfWeekStar: Bool

    private struct Field {
        let name: String
        let range: ClosedRange<Int>
        let names: [String]
        let nameBase: Int
    }

    private static let fields = [
        Field(name: "minute", range: 0...59, names: [], nameBase: 0),
        Field(name: "hour", range: 0...23, names: [], nameBase: 0),
        Field(name: "day-of-month", range: 1...31, names: [], nameBase: 1),
        Field(name: "month", range: 1...12, names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], nameBase: 1),
        Field(name: "day-of-week", range: 0...7, names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"], nameBase: 0),
    ]

    private static let shorthands = [
        "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
    ]

    /// Parses `text`, throwing the first problem with the field it is in.
    public init(_ text: String) throws(ValueError) {
        self.text = text
        let expanded = Self.shorthands[text.lowercased()] ?? text
        let parts = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 5 else {
            throw ValueError("a cron expression has 5 fields (minute hour day-of-month month day-of-week), '\(text)' has \(parts.count)")
        }
        var sets: [UInt64] = []
        for (part, field) in zip(parts, Self.fields) {
            sets.append(try Self.parse(String(part), field))
        }
        minutes = sets[0]
        hours = sets[1]
        daysOfMonth = sets[2]
        months = sets[3]
        // 7 is another name for Sunday.
        daysOfWeek = sets[4] & 0x80 != 0 ? (sets[4] | 1) & 0x7F : sets[4]
        dayOfMonthStar = parts[2].hasPrefix("*")
        dayOfWeekStar = parts[4].hasPrefix("*")
        if dayOfWeekStar {
            // The day of month alone decides: it must exist in some selected month.
            let longest = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            let reachable = (1...12).contains { month in
                months & (1 << UInt64(month)) != 0 && (1...longest[month - 1]).contains { daysOfMonth & (1 << UInt64($0)) != 0 }
            }
            if !reachable { throw ValueError("it never fires: none of the selected months has the selected day of the month") }
        }
    }

    private static func parse(_ text: String, _ field: Field) throws(ValueError) -> UInt64 {
        var set: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let where_ = "\(field.name) field '\(text)'"
            guard !item.isEmpty else { throw ValueError("\(where_) has an empty list item") }
            let pieces = item.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw ValueError("\(where_) has more than one '/' in '\(item)'") }
            var step = 1
            if pieces.count == 2 {
                guard let value = Int(pieces[1]) else { throw ValueError("\(where_): step '\(pieces[1])' is not a number") }
                guard value >= 1 else { throw ValueError("\(where_): step must be at least 1") }
                step = value
            }
            var low: Int, high: Int
            if pieces[0] == "*" {
                low = field.range.lowerBound
                high = field.range.upperBound
            } else {
                let bounds = pieces[0].split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2 else { throw ValueError("\(where_): '\(pieces[0])' is not a value or a range") }
                low = try value(String(bounds[0]), field, where_)
                if bounds.count == 2 {
                    high = try value(String(bounds[1]), field, where_)
                    guard low <= high else { throw ValueError("\(where_): range \(bounds[0])-\(bounds[1]) is reversed") }
                } else {
                    // `a/n` means from a to the end, as in Vixie cron.
                    high = pieces.count == 2 ? field.range.upperBound : low
                }
            }
            var current = low
            while current <= high {
                set |= 1 << UInt64(current)
                current += step
            }
        }
        return set
    }

    private static func value(_ text: String, _ field: Field, _ where_: String) throws(ValueError) -> Int {
        if let index = field.names.firstIndex(of: text.lowercased()) { return index + field.nameBase }
        guard let number = Int(text) else {
            let hint = field.names.isEmpty ? "" : " or a name (\(field.names.first!)…\(field.names.last!))"
            throw ValueError("\(where_): '\(text)' is not a number\(hint)")
        }
        guard field.range.contains(number) else {
            throw ValueError("\(where_): \(number) is out of range \(field.range.lowerBound)-\(field.range.upperBound)")
        }
        return number
    }

    public var description: String { text }

    private func dayMatches(day: Int, weekday: Int) -> Bool {
        let domHit = daysOfMonth & (1 << UInt64(day)) != 0
        let dowHit = daysOfWeek & (1 << UInt64(weekday)) != 0
        return dayOfMonthStar || dayOfWeekStar ? domHit && dowHit : domHit || dowHit
    }

    /// The first minute strictly after `date` that the expression selects, in `timeZone`. Minutes that
    /// a daylight-saving jump skips are skipped; should nothing match within eight years (which validation
    /// prevents), `Date.distantFuture` is returned.
    public func next(after date: Date, in timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        // Start at the next whole minute.
        var candidate = Date(timeIntervalSince1970: (floor(date.timeIntervalSince1970 / 60) + 1) * 60)
        let limit = date.addingTimeInterval(8 * 366 * 86_400)
        while candidate < limit {
            let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .weekday], from: candidate)
            guard let year = parts.year, let month = parts.month, let day = parts.day, let hour = parts.hour,
                  let minute = parts.minute, let weekday = parts.weekday else { return .distantFuture }
            let advanced: Date?
            if months & (1 << UInt64(month)) == 0 {
                advanced = calendar.date(from: DateComponents(year: year, month: month + 1, day: 1, hour: 0, minute: 0))
            } else if !dayMatches(day: day, weekday: weekday - 1) {
                advanced = calendar.date(from: DateComponents(year: year, month: month, day: day + 1, hour: 0, minute: 0))
            } else if hours & (1 << UInt64(hour)) == 0 {
                advanced = calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour + 1, minute: 0))
            } else if minutes & (1 << UInt64(minute)) == 0 {
                advanced = candidate.addingTimeInterval(60)
            } else {
                return candidate
            }
            // Around a daylight-saving change the computed date can fall behind; always move forward.
            if let advanced, advanced > candidate {
                candidate = advanced
            } else {
                candidate = candidate.addingTimeInterval(60)
            }
        }
        return .distantFuture
    }
}
