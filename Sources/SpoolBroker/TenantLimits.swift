import Foundation
import SpoolStore

/// What one tenant may do: its fair-share weight and its quotas. An unset quota is no limit.
package struct TenantLimits: Sendable, Equatable {
    /// Jobs it starts for another tenant's one when both wait at the same priority. Defaults to 1.
    package var weight: Double = 1
    /// Submits per second (a token bucket shared by every replica through the database).
    package var submitsPerSecond: Double?
    /// Submits it may make at once after a quiet spell; defaults to one second's worth (at least 1).
    package var burst: Int?
    /// Jobs it may have waiting at once, over every model.
    package var maxPending: Int?
    /// Jobs of one model it may have running at once; the claim starts no more.
    package var maxRunningPerModel: Int?

    package init() {}

    /// The bucket's size: `burst`, or a second's worth of submits.
    package var bucketSize: Int { burst ?? max(1, Int((submitsPerSecond ?? 1).rounded(.up))) }
}

/// Every tenant's limits: `*` for all, and overrides per tenant name.
///
/// Written `name:field=value,…` (`--tenant`, repeatable; `SPOOL_TENANTS`, separated by `;`), with
/// fields `weight`, `rate` (submits per second), `burst`, `max-pending` and `max-running` (per
/// model); `none` lifts a limit `*` sets. A tenant's fields override `*`'s, the rest it inherits.
package struct TenantSettings: Sendable, Equatable {
    package var everyTenant = TenantLimits()
    package var byTenant: [String: TenantLimits] = [:]

    package init() {}

    package func limits(of tenant: String) -> TenantLimits { byTenant[tenant] ?? everyTenant }

    /// Whether any tenant has a submit quota: without one, submits skip the quota checks entirely.
    var hasSubmitQuotas: Bool {
        ([everyTenant] + byTenant.values).contains { $0.submitsPerSecond != nil || $0.maxPending != nil }
    }

    /// The claim's running limits.
    var runningLimits: RunningLimits {
        RunningLimits(byTenant: byTenant.mapValues(\.maxRunningPerModel), everyTenant: everyTenant.maxRunningPerModel)
    }

    package static func parse(_ specs: [String]) throws(ConfigurationError) -> TenantSettings {
        var parsed: [(name: String, fields: [(String, String)])] = []
        for spec in specs {
            guard let colon = spec.firstIndex(of: ":") else {
                throw ConfigurationError("--tenant '\(spec)' must be name:field=value,… (for example acme:weight=2,rate=10).")
            }
            let name = String(spec[..<colon]).trimmingCharacters(in: .whitespaces)
            guard name == "*" || Self.isTenantName(name) else {
                throw ConfigurationError("--tenant '\(spec)': the name must be '*' or 1 to 100 letters, digits, '-', '_' or '.'.")
            }
            var fields: [(String, String)] = []
            for field in spec[spec.index(after: colon)...].split(separator: ",") {
                let parts = field.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 else { throw ConfigurationError("--tenant '\(spec)': '\(field)' is not field=value.") }
                fields.append((parts[0], parts[1]))
            }
            parsed.append((name, fields))
        }
        var settings = TenantSettings()
        for (name, fields) in parsed where name == "*" { try apply(fields, to: &settings.everyTenant, name: name) }
        for (name, fields) in parsed where name != "*" {
            var limits = settings.byTenant[name] ?? settings.everyTenant
            try apply(fields, to: &limits, name: name)
            settings.byTenant[name] = limits
        }
        return settings
    }

    static func isTenantName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.count <= 100
            && name.unicodeScalars.allSatisfy { ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || "-_.".unicodeScalars.contains($0) }
    }

    private static func apply(_ fields: [(String, String)], to limits: inout TenantLimits, name: String) throws(ConfigurationError) {
        for (field, value) in fields {
            func count() throws(ConfigurationError) -> Int? {
                if value == "none" { return nil }
                guard let number = Int(value), number >= 0 else {
                    throw ConfigurationError("--tenant \(name): \(field) must be a whole number of 0 or more, or none; got '\(value)'.")
                }
                return number
            }
            switch field {
            case "weight":
                guard let weight = Double(value), weight.isFinite, weight >= 0.01, weight <= 1000 else {
                    throw ConfigurationError("--tenant \(name): weight must be a number from 0.01 to 1000, got '\(value)'.")
                }
                limits.weight = weight
            case "rate":
                if value == "none" {
                    limits.submitsPerSecond = nil
                    continue
                }
                guard let rate = Double(value), rate.isFinite, rate > 0 else {
                    throw ConfigurationError("--tenant \(name): rate must be submits per second above 0, or none; got '\(value)'.")
                }
                limits.submitsPerSecond = rate
            case "burst":
                guard let burst = try count(), burst >= 1 else {
                    throw ConfigurationError("--tenant \(name): burst must be at least 1, got '\(value)'.")
                }
                limits.burst = burst
            case "max-pending": limits.maxPending = try count()
            case "max-running": limits.maxRunningPerModel = try count()
            default:
                throw ConfigurationError(
                    "--tenant \(name): unknown field '\(field)'; the fields are weight, rate, burst, max-pending and max-running.")
            }
        }
    }
}
