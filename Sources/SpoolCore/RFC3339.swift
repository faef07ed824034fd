import Foundation

/// RFC 3339 timestamps in UTC with milliseconds, as the SDKs parse them.
public enum RFC3339 {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)

    /// Written by hand: the format style cost more than the rest of a status answer.
    public static func string(from date: Date) -> String {
        // From the reference date, as Date keeps it: converting to 1970 first can move the last digit.
        let sinceReference = date.timeIntervalSinceReferenceDate
        let wholeSeconds = sinceReference.rounded(.down)
        let millis = min(999, Int32((sinceReference - wholeSeconds) * 1000))
        var time = time_t(Int64(wholeSeconds) + 978_307_200)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil, parts.tm_year + 1900 >= 0, parts.tm_year + 1900 <= 9999 else { return date.formatted(style) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        func digits(_ value: Int32, _ count: Int) {
            var divisor: Int32 = 1
            for _ in 1..<count { divisor *= 10 }
            var value = value
            while divisor > 0 {
                bytes.append(UInt8(48 + value / divisor))
                value %= divisor
                divisor /= 10
            }
        }
        digits(parts.tm_year + 1900, 4)
        bytes.append(UInt8(ascii: "-"))
        digits(parts.tm_mon + 1, 2)
        bytes.append(UInt8(ascii: "-"))
        digits(parts.tm_mday, 2)
        bytes.append(UInt8(ascii: "T"))
        digits(parts.tm_hour, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(parts.tm_min, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(parts.tm_sec, 2)
        bytes.append(UInt8(ascii: "."))
        digits(millis, 3)
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The format style's own writing, which `string(from:)` must match.
    static func formatStyleString(from date: Date) -> String { date.formatted(style) }

    public static func date(from string: String) -> Date? { try? style.parse(string) }

    /// The time in a form PostgreSQL's `timestamptz` accepts exactly as meant, or nil when it is
    /// not an RFC 3339 date-time PostgreSQL can store: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`,
    /// year 0001–9999, a day that exists, a UTC offset within ±15:59 (Foundation accepts more).
    public static func normalized(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        guard (20...35).contains(bytes.count) else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else { return nil }
                value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), bytes[4] == UInt8(ascii: "-"), let month = number(5..<7), bytes[7] == UInt8(ascii: "-"),
            let day = number(8..<10), [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(bytes[10]),
            let hour = number(11..<13), bytes[13] == UInt8(ascii: ":"), let minute = number(14..<16), bytes[16] == UInt8(ascii: ":"),
            let second = number(17..<19)
        else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...9999).contains(year), (1...12).contains(month), (1...monthDays[month - 1]).contains(day), hour < 24, minute < 60,
            second <= 60
        else { return nil }
        var index = 19
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            let digits = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            guard (1...9).contains(index - digits) else { return nil }
        }
        guard index < bytes.count else { return nil }
        let zone: String
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard index + 1 == bytes.count else { return nil }
            zone = "Z"
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, let offsetHours = number(index + 1..<index + 3), bytes[index + 3] == UInt8(ascii: ":"),
                let offsetMinutes = number(index + 4..<index + 6), offsetHours <= 15, offsetMinutes < 60
            else { return nil }
            zone = String(decoding: bytes[index...], as: UTF8.self)
        default:
            return nil
        }
        return String(decoding: bytes[0..<10], as: UTF8.self) + "T" + String(decoding: bytes[11..<index], as: UTF8.self) + zone
    }
}
