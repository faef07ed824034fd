import AsyncHTTPClient
import Foundation
import NIOCore

/// Forwards each job to an HTTP inference server beside the worker: `spool-worker --forward <url>`.
///
/// The payload is POSTed as JSON (vLLM, TGI, a Cog or BentoML container, any model server) and
/// the JSON answer becomes the outputs (an answer that is not an object is kept under `output`).
/// A 5xx answer or an unreachable server fails the job as retryable; a 4xx fails it for good.
package struct ForwardHandler: JobHandler {
    package let url: String
    let http: HTTPClient

    package init(url: String, concurrency: Int) {
        self.url = url
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(concurrency, 1))
        configuration.timeout.connect = .seconds(10)
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    package func shutdown() async {
        try? await http.shutdown()
    }

    package func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "X-Spool-Request-Id", value: job.requestID)
        request.body = .bytes(ByteBuffer(string: JSONValue.object(job.payload).jsonText))
        let status: UInt
        let body: ByteBuffer
        do {
            // No timeout of its own: a stop request (or the broker's maximum run time) cancels it.
            let response = try await http.execute(request, deadline: .distantFuture)
            status = response.status.code
            body = try await response.body.collect(upTo: 256 << 20)
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw JobFailure("The inference server at \(url) could not be reached: \(error)", retryable: true)
        }
        guard (200..<300).contains(status) else {
            let text = String(buffer: body).prefix(2000)
            throw JobFailure("The inference server answered \(status): \(text)", retryable: status >= 500 || status == 429)
        }
        let answer: JSONValue
        do {
            answer = try JSONValue.parse(body.readableBytesView)
        } catch {
            throw JobFailure("The inference server's answer is not JSON: \(String(buffer: body).prefix(500))")
        }
        context.log("forwarded to \(url): \(status)", source: "worker")
        return answer.objectValue ?? ["output": answer]
    }
}
