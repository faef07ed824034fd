import Foundation
import Hummingbird
import SpoolCore
import SpoolStore

/// `/v1/admin`: API keys (create, list, revoke) and the audit trail. Admin scope only.
struct AdminRoutes: Sendable {
    let store: Store
    /// The largest body a key's create may have: a name, scopes, a tenant and 100 model patterns.
    static let maxBodyBytes = 64 * 1024

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let admin = router.group("v1/admin")
        admin.post("keys", use: createKey)
        admin.get("keys", use: listKeys)
        admin.delete("keys/:id", use: revokeKey)
        admin.get("audit", use: audit)
    }

    /// Creates a key; the answer (201) holds the key itself, once, in `key`.
    @Sendable func createKey(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let create = try CreateKeyRequest(json: try await request.jsonBody(limit: Self.maxBodyBytes))
        let key = APIKeyHash.generateKey()
        var view = try await store.apiKeys.create(create, key: key, createdBy: context.caller.id, on: store.client, logger: context.logger)
        view.key = key
        return JSONResponse.make(view, status: .created)
    }

    @Sendable func listKeys(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let keys = try await store.apiKeys.list(on: store.client, logger: context.logger)
        return JSONResponse.make(JSONValue.object(["object": "list", "data": .array(keys.map(\.jsonValue))]))
    }

    /// Revokes a key: every replica refuses it within a second (the keys' NOTIFY).
    @Sendable func revokeKey(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        guard let id = context.parameters.get("id"), !id.isEmpty, id.utf8.count <= 64 else {
            throw SpoolError.notFound("No such key.", code: "key_not_found", param: "id")
        }
        guard try await store.apiKeys.revoke(id: id, by: context.caller.id, on: store.client, logger: context.logger) else {
            throw SpoolError.notFound("No live key '\(id)': it does not exist or is already revoked.", code: "key_not_found", param: "id")
        }
        return JSONResponse.make(JSONValue.object(["id": .string(id), "object": "api_key", "revoked": true]))
    }

    /// The audit trail, newest first: `?limit=` (1–1000, default 100) and `?before=<id>` to page.
    @Sendable func audit(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters
        var limit = 100
        if let text = parameters["limit"] {
            guard let value = Int(String(text)), (1...1000).contains(value) else {
                throw SpoolError.invalidRequest("'limit' must be a whole number from 1 to 1000.", code: "invalid_field", param: "limit")
            }
            limit = value
        }
        var before: Int64?
        if let text = parameters["before"] {
            guard let value = Int64(String(text)), value > 0 else {
                throw SpoolError.invalidRequest("'before' must be an event id.", code: "invalid_field", param: "before")
            }
            before = value
        }
        let events = try await store.audit.list(limit: limit, beforeID: before, on: store.client, logger: context.logger)
        return JSONResponse.make(
            JSONValue.object([
                "object": "list", "data": .array(events.map(\.jsonValue)),
                "next_before": events.count == limit ? events.last.map { .int($0.id) } ?? .null : .null,
            ]))
    }
}
