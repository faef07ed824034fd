import NIOCore
import SpoolCore

/// The OpenAPI document a broker serves: docs/openapi/openapi.json, carried in the binary, as it
/// is when the broker has a webhook secret. Without one the broker takes no webhook, so the
/// document says so: what generate.py marks as needing the secret accepts null only (a member)
/// or is left out (a parameter).
enum OpenAPIDocument {
    static let marker = "x-spool-needs-webhook-secret"
    static let file = ByteBuffer(bytes: PackageResources.openapi_json)

    static func served(webhooks: Bool) -> ByteBuffer {
        guard !webhooks, let document = try? JSONValue.parse(file.readableBytesView) else { return file }
        return ByteBuffer(bytes: withoutWebhooks(document).jsonBytes)
    }

    static func withoutWebhooks(_ document: JSONValue) -> JSONValue {
        // Parameters kept in components are left out where they are referenced too.
        let parameters = document.objectValue?["components"]?.objectValue?["parameters"]?.objectValue ?? [:]
        let references = Set(
            parameters.filter { $0.value.objectValue?[marker] != nil }.map { JSONValue.string("#/components/parameters/\($0.key)") })
        func strip(_ value: JSONValue) -> JSONValue? {
            switch value {
            case .object(let members):
                if members[marker] != nil {
                    if members["in"] != nil { return nil }
                    return ["type": "null", "description": "Null only: this broker has no webhook secret, so it takes no webhook."]
                }
                if let reference = members["$ref"], references.contains(reference) { return nil }
                return .object(members.compactMapValues(strip))
            case .array(let elements):
                return .array(elements.compactMap(strip))
            default:
                return value
            }
        }
        return strip(document) ?? document
    }
}
