import Foundation
import PostgresNIO
import SpoolCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Three broker processes on one database, with clients and workers spread over them: every
/// feature answers the same from any replica, and the maintenance work (lease requeue, webhook
/// delivery, pruning) is done once, not once per replica.
@Suite(.serialized) struct ReplicaTests {
    @Test func threeReplicasServeOneQueue() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let receiver = try await WebhookTests.Receiver.start()
            var brokers: [BrokerProcess] = []
            for _ in 0..<3 { brokers.append(try await WebhookTests.broker(database: database)) }
            let model = uniqueModel("replicas")
            // Workers on different replicas; the README's Swift worker, without delays.
            let workers = [
                try await WorkerProcess.startExample(brokers: [brokers[0]], models: [model], concurrency: 4),
                try await WorkerProcess.startExample(brokers: [brokers[1], brokers[2]], models: [model], concurrency: 4),
            ]

            // Submitted round-robin, each with a webhook.
            var ids: [String] = []
            for index in 0..<60 {
                let answer = try await HTTP.post(
                    brokers[index % 3].baseURL + "/v1/queue/submit",
                    [
                        "model": .string(model), "payload": ["prompt": .string("job \(index)"), "steps": 0],
                        "webhook_url": .string(receiver.url("/hook")),
                    ])
                ids.append(try #require(answer["requestId"]?.stringValue, "\(answer.json)"))
            }
            // Every replica sees every job the same way, whichever took the submit.
            try await eventually("every job is done, seen from every replica", timeout: .seconds(60)) {
                for (index, id) in ids.enumerated() {
                    let status = try await HTTP.status(broker: brokers[(index + 1) % 3], model: model, requestID: id)
                    guard status["status"] == "done" else { return false }
                }
                return true
            }
            for (index, id) in ids.enumerated().prefix(10) {
                let views = try await brokers.asyncMap { try await HTTP.status(broker: $0, model: model, requestID: id).json }
                #expect(views.allSatisfy { $0.objectValue?["outputs"] == views[0].objectValue?["outputs"] }, "job \(index)")
                #expect(views[0].objectValue?["outputs"]?.objectValue?["text"] == .string("JOB \(index)"))
            }

            // A status stream on one replica follows a job submitted to another and run through a third.
            let watched = try await HTTP.post(
                brokers[0].baseURL + "/fal/\(model)", ["prompt": "streamed", "steps": 2])
            let watchedID = try #require(watched["request_id"]?.stringValue)
            let stream = EventStream(url: brokers[2].baseURL + "/fal/\(model)/requests/\(watchedID)/status/stream")
            try await eventually("the stream ends with COMPLETED", timeout: .seconds(30)) { stream.ended }
            #expect(stream.dataEvents.last?.objectValue?["status"] == "COMPLETED")
            let result = try await HTTP.get(brokers[1].baseURL + "/fal/\(model)/requests/\(watchedID)")
            #expect(result["text"] == "STREAMED")

            // A cancel through one replica is seen by the others.
            let idle = uniqueModel("idle")
            let pending = try await HTTP.submit(broker: brokers[2], model: idle)
            let canceled = try await HTTP.post(
                brokers[1].baseURL + "/v1/queue/cancel", ["model": .string(idle), "request_id": .string(pending)])
            #expect(canceled["status"] == "canceled")
            #expect(try await HTTP.status(broker: brokers[0], model: idle, requestID: pending)["status"] == "canceled")

            // Done once each: claimed once, and each webhook delivered once though three replicas send.
            let once = try await TestDatabase.withClient(database: database) { client in
                try await client.query(
                    "SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'done' AND attempt = 1", logger: TestDatabase.logger
                ).collect().first?.decode(Int.self)
            }
            #expect(once == 61)
            try await eventually("every webhook is delivered") { receiver.deliveries.count >= 60 }
            let webhookIDs = receiver.deliveries.compactMap { $0["webhook_id"]?.stringValue }
            #expect(webhookIDs.count == 60, "one attempt per delivery")
            #expect(Set(webhookIDs).count == 60)
            #expect(receiver.deliveries.allSatisfy { $0["verified"] == true && $0["answer"] == 200 })
            var delivered = 0
            for broker in brokers {
                let metrics = try await HTTP.text(broker.baseURL + "/metrics")
                for line in metrics.split(separator: "\n") where line.hasPrefix(#"spool_webhook_deliveries_total{outcome="delivered"}"#) {
                    delivered += Int(line.split(separator: " ").last ?? "0") ?? 0
                }
            }
            #expect(delivered == 60, "the replicas' delivered counts add up to one per webhook")

            stream.cancel()
            for worker in workers { #expect(await worker.process.stop() == 0) }
            for broker in brokers { #expect(await broker.process.stop() == 0) }
            await receiver.process.stop(signal: SIGKILL)
        }
    }
}
