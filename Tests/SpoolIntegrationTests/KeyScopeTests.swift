import Foundation
import SpoolCore
import SpoolStore
import Testing

@testable import SpoolBroker

/// Scoped keys: client, worker (for its model patterns) and admin; key management, expiry,
/// revocation across replicas, and the audit trail.
@Suite struct KeyScopeTests {
    /// Creates a key through the admin API and answers (id, key).
    static func createKey(_ admin: BrokerClient, _ body: JSONValue) async throws -> (id: String, key: String) {
        let answer = try await admin.post("/v1/admin/keys", body)
        guard answer.status == 201, let id = answer["id"]?.stringValue, let key = answer["key"]?.stringValue else {
            throw TestFailure("key create failed: \(answer.status) \(answer.json)")
        }
        return (id, key)
    }

    @Test func eachScopeOpensItsRoutesAndNoOthers() async throws {
        let adminKey = "admin-\(UUID().uuidString)"
        // A database of its own: keys in the shared one would close other tests' open brokers.
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database, { $0.apiKeys = [adminKey] }) { broker in
                let admin = broker.withKey(adminKey)
                let prefix = "acme\(UUID().uuidString.prefix(6).lowercased())"
                let model = "\(prefix)/video"
                let otherModel = "other\(UUID().uuidString.prefix(6).lowercased())/video"
                let client = broker.withKey(try await Self.createKey(admin, ["name": "web", "scopes": ["client"], "tenant": "acme"]).key)
                let worker = broker.withKey(
                    try await Self.createKey(admin, ["name": "gpu", "scopes": ["worker"], "models": .array([.string("\(prefix)/*")])]).key)
                let auditor = try await Self.createKey(admin, ["name": "ops", "scopes": ["admin"]])
                let adminOnly = broker.withKey(auditor.key)

                // client: the client APIs, nothing else.
                let mine = try await client.submit(model: model)
                #expect(try await client.status(model: model, requestID: mine).status == 200)
                let leaseByClient = try await client.post("/v1/worker/lease", ["worker_id": "w", "models": .array([.string(model)])])
                #expect(leaseByClient.status == 403 && leaseByClient["code"] == "insufficient_scope")
                #expect(leaseByClient["message"]?.stringValue?.contains("'worker' scope") == true, "\(leaseByClient.json)")
                for (method, path) in [("GET", "/v1/admin/keys"), ("GET", "/v1/workers"), ("GET", "/v1/models"), ("GET", "/v1/admin/audit")] {
                    let answer = try await client.call(method == "GET" ? .get : .post, path)
                    #expect(answer.status == 403 && answer["message"]?.stringValue?.contains("'admin' scope") == true, "\(path): \(answer.json)")
                }
                let clearByClient = try await client.post("/v1/queue/clear", ["model": .string(model)])
                #expect(clearByClient.status == 403 && clearByClient["code"] == "insufficient_scope")

                // worker: the worker protocol for its models only.
                let submitByWorker = try await worker.post("/v1/queue/submit", ["model": .string(model), "payload": [:]])
                #expect(submitByWorker.status == 403 && submitByWorker["message"]?.stringValue?.contains("'client' scope") == true)
                #expect(try await worker.status(model: model, requestID: mine).status == 403)
                #expect(try await worker.call(.get, "/v1/files").status == 403)
                let leaseOther = try await worker.post("/v1/worker/lease", ["worker_id": "w", "models": .array([.string(otherModel)])])
                #expect(leaseOther.status == 403 && leaseOther["code"] == "model_not_allowed", "\(leaseOther.json)")
                let jobs = try await worker.lease(models: [model])
                #expect(jobs.count == 1 && jobs.first?.objectValue?["request_id"]?.stringValue == mine)
                #expect(try await worker.write("heartbeat", job: jobs[0]).status == 200)
                #expect(try await worker.write("complete", job: jobs[0], ["outputs": ["ok": true]]).status == 200)
                // Another model's job, leased with a key that serves it: the worker key cannot write for it.
                _ = try await admin.submit(model: otherModel)
                let foreign = try await admin.lease(models: [otherModel])
                #expect(foreign.count == 1)
                for action in ["heartbeat", "complete", "fail", "release"] {
                    let answer = try await worker.write(action, job: foreign[0], ["error": "x"])
                    #expect(answer.status == 403 && answer["code"] == "model_not_allowed", "\(action): \(answer.json)")
                }
                let foreignID = foreign[0].objectValue?["request_id"]?.stringValue ?? ""
                let foreignToken = foreign[0].objectValue?["lease_token"]?.stringValue ?? ""
                let upload = try await worker.call(.post, "/v1/worker/jobs/\(foreignID)/files?lease_token=\(foreignToken)&name=a.bin", body: "bytes")
                #expect(upload.status == 403 && upload["code"] == "model_not_allowed", "\(upload.json)")
                let batch = try await worker.post(
                    "/v1/worker/complete",
                    ["completions": [["request_id": .string(foreignID), "lease_token": .string(foreignToken), "outputs": [:]]]])
                #expect(batch["results"]?.arrayValue?.first?.objectValue?["error"]?.objectValue?["code"] == "model_not_allowed", "\(batch.json)")
                #expect(try await admin.status(model: otherModel, requestID: foreignID)["status"] == "running", "the refused writes changed nothing")

                // admin: operations, keys, audit; not the client APIs.
                #expect(try await adminOnly.post("/v1/queue/submit", ["model": .string(model), "payload": [:]]).status == 403)
                #expect(try await adminOnly.call(.get, "/v1/workers").status == 200)
                _ = try await client.submit(model: model)
                let cleared = try await adminOnly.post("/v1/queue/clear", ["model": .string(model)])
                #expect(cleared.status == 200 && cleared["canceled_count"] == 1)

                // The audit trail names who did what.
                let audit = try await adminOnly.call(.get, "/v1/admin/audit?limit=1000")
                let events = audit["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
                #expect(
                    events.contains {
                        $0["action"] == "queue.cleared" && $0["target"]?.stringValue == model && $0["actor"]?.stringValue == auditor.id
                    })
                #expect(events.contains { $0["action"] == "key.created" && $0["target"]?.stringValue == auditor.id })
            }
        }
    }

    @Test func keysAreCreatedListedAndRevokedByAdminsOnly() async throws {
        let adminKey = "admin-\(UUID().uuidString)"
        // A database of its own: keys in the shared one would close other tests' open brokers.
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database, { $0.apiKeys = [adminKey] }) { broker in
                let admin = broker.withKey(adminKey)
                let before = try await admin.call(.get, "/v1/admin/keys")["data"]?.arrayValue?.count ?? -1
                // Bad requests are 400s that store nothing.
                let bad: [JSONValue] = [
                    ["name": "x", "scopes": ["root"]],
                    ["name": "x", "scopes": []],
                    ["name": "x", "scopes": ["client"], "models": ["acme/*"]],
                    ["name": "x", "scopes": ["worker"], "models": ["a*b"]],
                    ["name": "x", "scopes": ["client"], "expires_at": "2001-01-01T00:00:00Z"],
                    ["name": "x", "scopes": ["client"], "tenant": "no spaces"],
                    ["scopes": ["client"]],
                ]
                for body in bad {
                    let answer = try await admin.post("/v1/admin/keys", body)
                    #expect(answer.status == 400 && answer["message"] != nil, "\(body.jsonText): \(answer.status) \(answer.json)")
                }
                #expect(try await admin.call(.get, "/v1/admin/keys")["data"]?.arrayValue?.count == before)

                let created = try await admin.post(
                    "/v1/admin/keys", ["name": "gpu", "scopes": ["worker"], "models": ["acme/*"], "expires_at": "2099-01-01T00:00:00Z"])
                #expect(created.status == 201 && created["key"]?.stringValue?.hasPrefix("spool_") == true)
                #expect(created["scopes"] == ["worker"] && created["models"] == ["acme/*"])
                #expect(
                    created["expires_at"]?.stringValue.flatMap(RFC3339.date(from:)) == RFC3339.date(from: "2099-01-01T00:00:00Z"), "\(created.json)")
                let id = try #require(created["id"]?.stringValue)
                let listed = try await admin.call(.get, "/v1/admin/keys")["data"]?.arrayValue ?? []
                let entry = try #require(listed.first { $0.objectValue?["id"]?.stringValue == id }?.objectValue)
                #expect(entry["key"] == nil && entry["name"] == "gpu", "a list never shows a key")

                let worker = broker.withKey(try #require(created["key"]?.stringValue))
                #expect(try await worker.post("/v1/admin/keys", ["name": "escalate", "scopes": ["admin"]]).status == 403)
                #expect(try await worker.call(.delete, "/v1/admin/keys/\(id)").status == 403)

                #expect(try await admin.call(.delete, "/v1/admin/keys/\(id)").status == 200)
                #expect(try await admin.call(.delete, "/v1/admin/keys/\(id)").status == 404)
                try await eventually("the revoked key is refused", timeout: .seconds(10)) {
                    try await worker.post("/v1/worker/lease", ["worker_id": "w", "models": ["acme/x"]]).status == 401
                }
                let events = try await admin.call(.get, "/v1/admin/audit")["data"]?.arrayValue?.compactMap(\.objectValue) ?? []
                #expect(
                    events.contains {
                        $0["action"] == "key.revoked" && $0["target"]?.stringValue == id && $0["actor"]?.stringValue?.hasPrefix("cfg_") == true
                    })
            }
        }
    }

    /// Two broker processes on one database: a key revoked through one is refused by the other
    /// within a second (NOTIFY), not after the 60 s cache; an expiring key stops at its expiry.
    @Test func aRevokedOrExpiredKeyStopsOnEveryReplica() async throws {
        let adminKey = "admin-\(UUID().uuidString)"
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let first = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", adminKey])
            let second = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", adminKey])
            let auth = [("Authorization", "Bearer \(adminKey)")]
            func create(_ body: JSONValue) async throws -> String {
                let answer = try await HTTP.post(first.baseURL + "/v1/admin/keys", body, headers: auth)
                return try #require(answer["key"]?.stringValue, "\(answer.json)")
            }
            let model = uniqueModel("scoped")
            func metrics(_ broker: BrokerProcess, _ key: String) async throws -> Int {
                try await HTTP.get(broker.baseURL + "/v1/queue/metrics?model=\(model)", headers: [("Authorization", "Bearer \(key)")]).status
            }
            let revoked = try await create(["name": "soon revoked", "scopes": ["client"]])
            #expect(try await metrics(second, revoked) == 200, "the second replica caches the key")
            let keys = try await HTTP.get(first.baseURL + "/v1/admin/keys", headers: auth)["data"]?.arrayValue ?? []
            let id = try #require(keys.first { $0.objectValue?["name"] == "soon revoked" }?.objectValue?["id"]?.stringValue)
            let revokedAt = ContinuousClock.now
            #expect(try await HTTP.send(.DELETE, first.baseURL + "/v1/admin/keys/\(id)", body: nil, headers: auth).status == 200)
            try await eventually("the other replica refuses the revoked key", timeout: .seconds(10), every: .milliseconds(20)) {
                try await metrics(second, revoked) == 401
            }
            print("a revoked key was refused by the other replica \(ContinuousClock.now - revokedAt) after the revoke")

            let expiresAt = Date().addingTimeInterval(3)
            let expiring = try await create(["name": "short", "scopes": ["client"], "expires_at": .string(RFC3339.string(from: expiresAt))])
            #expect(try await metrics(second, expiring) == 200)
            try await eventually("the expired key is refused", timeout: .seconds(15), every: .milliseconds(50)) {
                try await metrics(second, expiring) == 401
            }
            #expect(Date() >= expiresAt, "refused only once it expired")
            // An unknown key is a 401 like a revoked one.
            #expect(try await metrics(second, "spool_unknown") == 401)
            #expect(await first.process.stop() == 0)
            #expect(await second.process.stop() == 0)
        }
    }

    /// Scopes (403), another tenant's job (404, as an unknown one) and a tenant's rate (429), as the SDKs raise them.
    @Test func theSDKsSeeScopeTenantAndQuotaRefusalsAsTheirUsualErrors() async throws {
        let certificate = try await TestCertificate.make()
        let adminKey = "admin-\(UUID().uuidString)"
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(
                databaseURL: TestDatabase.url(database: database),
                arguments: [
                    "--api-key", adminKey, "--tls-cert", certificate.certificatePath, "--tls-key", certificate.keyPath,
                    "--tenant", "limited:rate=0.1,burst=1",
                ])
            let model = "scoped/\(UUID().uuidString.prefix(8).lowercased())"
            // Created in the database, as `spool-broker keys create` does (the test's HTTP client has no CA for this broker).
            var keys: [String: String] = [:]
            try await TestDatabase.withClient(database: database) { client in
                for scope in KeyScope.allCases {
                    let key = "\(scope.rawValue)-key-\(UUID().uuidString)"
                    _ = try await Store(client: client).apiKeys.create(
                        CreateKeyRequest(name: scope.rawValue, scopes: [scope]), key: key, createdBy: "cli", on: client, logger: TestDatabase.logger)
                    keys[scope.rawValue] = key
                }
                for tenant in ["globex", "limited"] {
                    let key = "\(tenant)-key-\(UUID().uuidString)"
                    _ = try await Store(client: client).apiKeys.create(
                        CreateKeyRequest(name: tenant, scopes: [.client], tenant: tenant), key: key, createdBy: "cli", on: client,
                        logger: TestDatabase.logger)
                    keys[tenant] = key
                }
            }
            let (status, output) = try await PythonScript.run(
                "scoped_keys.py",
                environment: [
                    "TOGETHER_BASE_URL": broker.baseURL, "FAL_QUEUE_RUN_HOST": "127.0.0.1:\(broker.port)/fal",
                    "SSL_CERT_FILE": certificate.certificatePath,
                    "SPOOL_CLIENT_KEY": keys["client"]!, "SPOOL_WORKER_KEY": keys["worker"]!, "SPOOL_ADMIN_KEY": keys["admin"]!, "SPOOL_MODEL": model,
                    "SPOOL_OTHER_TENANT_KEY": keys["globex"]!, "SPOOL_LIMITED_KEY": keys["limited"]!,
                ])
            #expect(status == 0, "scoped keys script failed:\n\(output)\nthe broker said:\n\(broker.process.output.suffix(4000))")
            #expect(output.contains("scoped keys passed"), "\(output)")
            #expect(await broker.process.stop() == 0)
        }
    }
}
