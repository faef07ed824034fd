import Foundation

/// What an API key may do. A request outside its key's scopes is refused with 403.
public enum KeyScope: String, Sendable, CaseIterable, Comparable {
    /// Submit, status, stream, cancel, files and batches (the Together, fal, files and batch APIs).
    case client
    /// The worker protocol, for the models the key's patterns allow.
    case worker
    /// Keys, audit, clearing queues, the workers list; every tenant.
    case admin

    public static func < (lhs: KeyScope, rhs: KeyScope) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// Scopes named in a list such as `client,worker`; throws naming what is unknown.
    public static func parse(_ names: [String]) throws(SpoolError) -> Set<KeyScope> {
        var scopes: Set<KeyScope> = []
        for name in names {
            guard let scope = KeyScope(rawValue: name.trimmingCharacters(in: .whitespaces).lowercased()) else {
                throw .invalidRequest(
                    "Unknown scope '\(name)': scopes are client, worker and admin.", code: "invalid_field", param: "scopes")
            }
            scopes.insert(scope)
        }
        guard !scopes.isEmpty else {
            throw .invalidRequest("A key needs at least one scope: client, worker or admin.", code: "invalid_field", param: "scopes")
        }
        return scopes
    }
}

/// Model patterns of a worker key: a name (`acme/video`) or a prefix ending in `*` (`acme/*`).
public enum ModelPattern {
    /// Most patterns one key may carry.
    public static let maxCount = 100

    public static func matches(_ pattern: String, model: String) -> Bool {
        if pattern.hasSuffix("*") { return model.hasPrefix(pattern.dropLast()) }
        return model == pattern
    }

    /// Whether any of `patterns` allows `model`; nil patterns allow every model.
    public static func allows(_ patterns: [String]?, model: String) -> Bool {
        guard let patterns else { return true }
        return patterns.contains { matches($0, model: model) }
    }

    /// Throws unless every pattern is a model name, or a prefix with one `*` at its end.
    public static func validate(_ patterns: [String]) throws(SpoolError) {
        guard (1...maxCount).contains(patterns.count) else {
            throw .invalidRequest("'models' must hold 1 to \(maxCount) patterns, got \(patterns.count).", code: "invalid_field", param: "models")
        }
        for pattern in patterns {
            let star = pattern.firstIndex(of: "*")
            guard !pattern.isEmpty, pattern.unicodeScalars.count <= 256, star == nil || star == pattern.index(before: pattern.endIndex) else {
                throw .invalidRequest(
                    "Model pattern '\(pattern)' is not a model name or a prefix ending in '*' (such as 'acme/*').",
                    code: "invalid_field", param: "models")
            }
        }
    }
}

/// `POST /v1/admin/keys`: `{name, scopes, tenant?, models?, expires_at?}`.
public struct CreateKeyRequest: Sendable, Equatable {
    public var name: String
    public var scopes: Set<KeyScope>
    public var tenant: String?
    public var models: [String]?
    public var expiresAt: Date?

    public init(name: String, scopes: Set<KeyScope>, tenant: String? = nil, models: [String]? = nil, expiresAt: Date? = nil) {
        self.name = name
        self.scopes = scopes
        self.tenant = tenant
        self.models = models
        self.expiresAt = expiresAt
    }

    /// A key from command-line words (`spool keys create`, `spool-broker keys create`): scopes and
    /// model patterns comma-separated, the expiry a duration from now (`90d`, `12h`, `30m`, `45s`)
    /// or an RFC 3339 time.
    public init(name: String, scopes: String, tenant: String?, models: String?, expires: String?, now: Date = Date()) throws(SpoolError) {
        self.name = name
        self.scopes = try KeyScope.parse(scopes.split(separator: ",").map(String.init))
        self.tenant = tenant
        self.models = models.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let expires {
            if let date = RFC3339.date(from: expires) {
                expiresAt = date
            } else {
                let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
                guard let unit = expires.last.flatMap({ units[$0] }), let count = Double(expires.dropLast()), count > 0 else {
                    throw .invalidRequest(
                        "The expiry takes a duration such as 90d, 12h or 30m, or an RFC 3339 time; got '\(expires)'.", code: "invalid_field",
                        param: "expires_at")
                }
                expiresAt = now.addingTimeInterval(count * unit)
            }
        }
        try validate(now: now)
    }

    public init(json: JSONValue) throws(SpoolError) {
        let fields = try RequestFields(json)
        name = try fields.requiredString("name")
        guard name.unicodeScalars.count <= 200 else {
            throw .invalidRequest("'name' is longer than 200 characters.", code: "invalid_field", param: "name")
        }
        let scopeNames = try fields.requiredStringArray("scopes", maxCount: KeyScope.allCases.count)
        scopes = try KeyScope.parse(scopeNames)
        tenant = try fields.optionalString("tenant", maxLength: 100)
        if try fields.optionalArray("models") != nil {
            models = try fields.requiredStringArray("models", maxCount: ModelPattern.maxCount)
        }
        if let text = try fields.optionalString("expires_at", maxLength: 64) {
            guard let date = RFC3339.date(from: text) else {
                throw .invalidRequest(
                    "'expires_at' must be an RFC 3339 time such as 2027-01-31T00:00:00Z.", code: "invalid_field", param: "expires_at")
            }
            expiresAt = date
        }
        try validate()
    }

    /// The rules every way of creating a key shares (the admin API and `spool-broker keys create`).
    public func validate(now: Date = Date()) throws(SpoolError) {
        if let tenant {
            guard !tenant.isEmpty, tenant.unicodeScalars.count <= 100,
                tenant.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_.".unicodeScalars.contains($0) })
            else {
                throw .invalidRequest(
                    "'tenant' must be 1 to 100 letters, digits, '-', '_' or '.'.", code: "invalid_field", param: "tenant")
            }
        }
        if let models {
            guard scopes.contains(.worker) else {
                throw .invalidRequest(
                    "'models' limits what a worker key serves: give it with the worker scope.", code: "invalid_field", param: "models")
            }
            try ModelPattern.validate(models)
        }
        if let expiresAt, expiresAt <= now {
            throw .invalidRequest("'expires_at' is in the past.", code: "invalid_field", param: "expires_at")
        }
    }
}

/// A key as the admin API and `keys list` show it: never the key itself, which only its create
/// answer holds (in `key`).
public struct KeyView: Sendable, Equatable, JSONValueEncodable, Encodable {
    public var id: String
    public var name: String
    public var scopes: [String]
    public var tenant: String?
    public var models: [String]?
    public var createdAt: Date
    public var expiresAt: Date?
    public var createdBy: String?
    /// Only in the answer to a create.
    public var key: String?

    public init(
        id: String, name: String, scopes: [String], tenant: String?, models: [String]?, createdAt: Date, expiresAt: Date?, createdBy: String?,
        key: String? = nil
    ) {
        self.id = id
        self.name = name
        self.scopes = scopes
        self.tenant = tenant
        self.models = models
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.createdBy = createdBy
        self.key = key
    }

    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = [
            "object": "api_key", "id": .string(id), "name": .string(name), "scopes": .array(scopes.map { .string($0) }),
            "tenant": tenant.map(JSONValue.string) ?? .null, "models": models.map { .array($0.map(JSONValue.string)) } ?? .null,
            "created_at": .string(RFC3339.string(from: createdAt)), "expires_at": expiresAt.map { .string(RFC3339.string(from: $0)) } ?? .null,
            "created_by": createdBy.map(JSONValue.string) ?? .null,
        ]
        if let key { object["key"] = .string(key) }
        return .object(object)
    }

    public func encode(to encoder: any Encoder) throws { try jsonValue.encode(to: encoder) }
}

/// One line of the audit trail: who (a key id) did what, to what, when.
public struct AuditEvent: Sendable, Equatable, JSONValueEncodable, Encodable {
    public var id: Int64
    public var at: Date
    public var actor: String
    public var action: String
    public var target: String?
    public var details: [String: JSONValue]

    public init(id: Int64, at: Date, actor: String, action: String, target: String?, details: [String: JSONValue]) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.target = target
        self.details = details
    }

    public var jsonValue: JSONValue {
        .object([
            "id": .int(id), "at": .string(RFC3339.string(from: at)), "actor": .string(actor), "action": .string(action),
            "target": target.map(JSONValue.string) ?? .null, "details": .object(details),
        ])
    }

    public func encode(to encoder: any Encoder) throws { try jsonValue.encode(to: encoder) }
}
