import HTTPTypes
import SpoolCore

/// A request under `/v2/`, read as RunPod's `{endpoint_id}/{action}[/{argument}…]`.
///
/// An endpoint id is a model name and may hold slashes (`acme/sd`), so the action is found from the
/// end of the path, by method: one trailing word (`run`), or a word and one or two arguments
/// (`status/{id}`, `job-done/{pod}/{id}`).
struct RunPodPath: Equatable {
    enum Action: Equatable {
        // The client's (`runpod.Endpoint`).
        case run, runSync, health, purgeQueue
        case status(String)
        case stream(String)
        case cancel(String)
        // The worker's (`runpod.serverless.start`).
        case take(worker: String)
        case takeBatch(worker: String)
        case stop(worker: String)
        case ping(worker: String)
        case done(worker: String, job: String)
        case streamChunk(worker: String, job: String)
    }

    var endpoint: String
    var action: Action

    static func parse(method: HTTPRequest.Method, segments: [Substring]) -> RunPodPath? {
        // Segments arrive percent-encoded: an endpoint id is judged (and becomes a model) as the client meant it.
        var parts: [String] = []
        for segment in segments {
            // A broken escape, or an escaped slash: a segment is one part, as the document says.
            guard let part = String(segment).removingPercentEncoding, !part.contains("/") else { return nil }
            parts.append(part)
        }
        func path(_ trailing: Int, _ action: Action) -> RunPodPath? {
            let endpoint = parts.dropLast(trailing).joined(separator: "/")
            return isValidEndpoint(endpoint) ? RunPodPath(endpoint: endpoint, action: action) : nil
        }
        guard let last = parts.last else { return nil }
        let second = parts.count >= 2 ? parts[parts.count - 2] : nil
        let third = parts.count >= 3 ? parts[parts.count - 3] : nil
        switch method {
        case .get:
            if last == "health" { return path(1, .health) }
            switch second {
            case "status": return path(2, .status(last))
            case "stream": return path(2, .stream(last))
            case "job-take": return path(2, .take(worker: last))
            case "job-take-batch": return path(2, .takeBatch(worker: last))
            case "job-stop": return path(2, .stop(worker: last))
            case "ping": return path(2, .ping(worker: last))
            default: return nil
            }
        case .post:
            switch last {
            case "run": return path(1, .run)
            case "runsync": return path(1, .runSync)
            case "purge-queue": return path(1, .purgeQueue)
            default: break
            }
            if second == "cancel" { return path(2, .cancel(last)) }
            switch third {
            case "job-done": return path(3, .done(worker: second ?? "", job: last))
            case "job-stream": return path(3, .streamChunk(worker: second ?? "", job: last))
            default: return nil
            }
        default:
            return nil
        }
    }

    /// The methods that `segments` (the path after `/v2/`) answers: GET, POST, both or neither.
    static func allowedMethods(segments: [Substring]) -> [HTTPRequest.Method] {
        [.get, .post].filter { parse(method: $0, segments: segments) != nil }
    }

    /// A model name usable as an endpoint id: non-empty parts, printable, no white space (Unicode's
    /// too), no `?` or `#`, at most 256 characters: the document's pattern.
    static func isValidEndpoint(_ endpoint: String) -> Bool {
        !endpoint.isEmpty && endpoint.unicodeScalars.count <= 256
            && endpoint.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty }
            && endpoint.unicodeScalars.allSatisfy {
                $0.value > 0x20 && $0.value != 0x7F && !$0.properties.isWhitespace && $0 != "?" && $0 != "#"
            }
    }
}
