import Foundation

/// Field access over a request body that refuses anything but what the API defines.
struct RequestFields {
    /// Longest model name accepted: long enough for `owner/app/path` ids, short enough to index.
    static let maxModelLength = 256
    let members: [String: JSONValue]

    /// `what` names the object in errors: a request's body, or (read by a worker or client) an answer or a member of one.
    init(_ json: JSONValue, of what: String = "request body") throws(SpoolError) {
        guard let members = json.objectValue else {
            throw .invalidRequest("The \(what) must be a JSON object, not \(json.typeName).", code: "invalid_body")
        }
        self.members = members
    }

    /// A missing member's refusal.
    private func missing(_ name: String) -> SpoolError { .invalidRequest("'\(name)' is required.", code: "missing_field", param: name) }

    func requiredInt32(_ name: String) throws(SpoolError) -> Int32 {
        guard let value = try optionalInt32(name) else { throw missing(name) }
        return value
    }

    func requiredBool(_ name: String) throws(SpoolError) -> Bool {
        guard let value = try optionalBool(name) else { throw missing(name) }
        return value
    }

    func requiredArray(_ name: String) throws(SpoolError) -> [JSONValue] {
        guard let value = try optionalArray(name) else { throw missing(name) }
        return value
    }

    /// A string member naming a case of `Value`.
    func optionalRawValue<Value: RawRepresentable<String>>(_ name: String, as type: Value.Type) throws(SpoolError) -> Value? {
        guard let text = try optionalString(name, maxLength: .max) else { return nil }
        guard let value = Value(rawValue: text) else {
            throw .invalidRequest("'\(name)' is not a known \(Value.self): '\(text)'.", code: "invalid_field", param: name)
        }
        return value
    }

    func model() throws(SpoolError) -> String {
        let model = try requiredString("model")
        guard model.unicodeScalars.count <= Self.maxModelLength else {
            throw .invalidRequest("'model' is longer than \(Self.maxModelLength) characters.", code: "invalid_field", param: "model")
        }
        return model
    }

    func requiredString(_ name: String) throws(SpoolError) -> String {
        guard let value = members[name], value != .null else {
            throw .invalidRequest("'\(name)' is required.", code: "missing_field", param: name)
        }
        guard case .string(let string) = value else {
            throw .invalidRequest("'\(name)' must be a string, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard !string.isEmpty else {
            throw .invalidRequest("'\(name)' must not be empty.", code: "invalid_field", param: name)
        }
        return string
    }

    func requiredObject(_ name: String) throws(SpoolError) -> [String: JSONValue] {
        guard let value = members[name], value != .null else {
            throw .invalidRequest("'\(name)' is required and must be a JSON object.", code: "missing_field", param: name)
        }
        guard let object = value.objectValue else {
            throw .invalidRequest("'\(name)' must be a JSON object, not \(value.typeName).", code: "invalid_type", param: name)
        }
        return object
    }

    func optionalObject(_ name: String) throws(SpoolError) -> [String: JSONValue]? {
        guard let value = members[name], value != .null else { return nil }
        return try requiredObject(name)
    }

    func optionalString(_ name: String, maxLength: Int = 1024) throws(SpoolError) -> String? {
        guard let value = members[name], value != .null else { return nil }
        let string = try requiredString(name)
        guard string.unicodeScalars.count <= maxLength else {
            throw .invalidRequest("'\(name)' is longer than \(maxLength) characters.", code: "invalid_field", param: name)
        }
        return string
    }

    func optionalBool(_ name: String) throws(SpoolError) -> Bool? {
        guard let value = members[name], value != .null else { return nil }
        guard case .bool(let bool) = value else {
            throw .invalidRequest("'\(name)' must be true or false, not \(value.typeName).", code: "invalid_type", param: name)
        }
        return bool
    }

    /// A number of seconds within `range`; integers and fractions alike.
    func optionalSeconds(_ name: String, in range: ClosedRange<Double>) throws(SpoolError) -> Double? {
        guard let value = members[name], value != .null else { return nil }
        let seconds: Double
        switch value {
        case .int(let int): seconds = Double(int)
        case .double(let double): seconds = double
        default: throw .invalidRequest("'\(name)' must be a number of seconds, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard range.contains(seconds) else {
            throw .invalidRequest(
                "'\(name)' must be between \(range.lowerBound.formatted()) and \(range.upperBound.formatted()) seconds, got \(seconds.formatted()).",
                code: "invalid_field", param: name)
        }
        return seconds
    }

    /// An integer within `range`.
    func optionalInt(_ name: String, in range: ClosedRange<Int>) throws(SpoolError) -> Int? {
        guard let value = members[name], value != .null else { return nil }
        guard case .int(let int) = value else {
            throw .invalidRequest("'\(name)' must be an integer, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard let small = Int(exactly: int), range.contains(small) else {
            throw .invalidRequest(
                "'\(name)' must be between \(range.lowerBound) and \(range.upperBound), got \(int).", code: "invalid_field", param: name)
        }
        return small
    }

    /// A non-empty array of non-empty strings, at most `maxCount` of them.
    func requiredStringArray(_ name: String, maxCount: Int) throws(SpoolError) -> [String] {
        guard let value = members[name], value != .null else {
            throw .invalidRequest("'\(name)' is required.", code: "missing_field", param: name)
        }
        guard case .array(let elements) = value else {
            throw .invalidRequest("'\(name)' must be an array of strings, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard (1...maxCount).contains(elements.count) else {
            throw .invalidRequest("'\(name)' must hold 1 to \(maxCount) entries, got \(elements.count).", code: "invalid_field", param: name)
        }
        var strings: [String] = []
        for element in elements {
            guard case .string(let string) = element, !string.isEmpty, string.unicodeScalars.count <= Self.maxModelLength else {
                throw .invalidRequest(
                    "Every entry of '\(name)' must be a non-empty string of at most \(Self.maxModelLength) characters.",
                    code: "invalid_field", param: name)
            }
            strings.append(string)
        }
        return strings
    }

    func optionalArray(_ name: String) throws(SpoolError) -> [JSONValue]? {
        guard let value = members[name], value != .null else { return nil }
        guard case .array(let elements) = value else {
            throw .invalidRequest("'\(name)' must be an array, not \(value.typeName).", code: "invalid_type", param: name)
        }
        return elements
    }

    func optionalInt32(_ name: String) throws(SpoolError) -> Int32? {
        guard let value = members[name], value != .null else { return nil }
        guard case .int(let int) = value else {
            throw .invalidRequest("'\(name)' must be an integer, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard let small = Int32(exactly: int) else {
            throw .invalidRequest("'\(name)' must be between \(Int32.min) and \(Int32.max).", code: "invalid_field", param: name)
        }
        return small
    }
}
