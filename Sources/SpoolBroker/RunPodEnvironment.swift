import Foundation

/// The environment of an unmodified RunPod worker (`runpod.serverless.start`) that takes its jobs
/// from a Spool broker: the URL templates the `runpod` package fills in, its key and ping interval.
package struct RunPodEnvironment: Sendable {
    package let endpoint: String
    package let brokerURL: String
    package let apiKey: String
    package let pingSeconds: Double
    package let podID: String

    package init(endpoint: String, brokerURL: String, apiKey: String, pingSeconds: Double = 10, podID: String? = nil) throws {
        guard RunPodPath.isValidEndpoint(endpoint) else {
            throw ConfigurationError(
                "'\(endpoint)' is not an endpoint id: use a model name such as acme/sd (no empty parts, no spaces, at most 256 characters).")
        }
        guard let url = URL(string: brokerURL), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
            throw ConfigurationError("'\(brokerURL)' is not an http(s) URL of the broker.")
        }
        guard !apiKey.isEmpty, !apiKey.contains(where: \.isWhitespace) else {
            throw ConfigurationError("The API key must be non-empty, without spaces.")
        }
        guard (1...300).contains(pingSeconds), pingSeconds.rounded() == pingSeconds else {
            throw ConfigurationError("The ping interval must be a whole number of seconds from 1 to 300 (the worker truncates to seconds).")
        }
        self.endpoint = endpoint
        self.brokerURL = brokerURL.hasSuffix("/") ? String(brokerURL.dropLast()) : brokerURL
        self.apiKey = apiKey
        self.pingSeconds = pingSeconds
        self.podID = podID ?? "spool-" + UUID().uuidString.lowercased().prefix(8)
    }

    /// `NAME=value` lines. The `$ID` and `$RUNPOD_POD_ID` in them are the worker's to replace, and
    /// each template ends in `?` because the worker appends `&name=value` parameters.
    package var lines: [String] {
        let base = "\(brokerURL)\(RunPodRoutes.pathPrefix)\(endpoint)"
        return [
            "RUNPOD_WEBHOOK_GET_JOB=\(base)/job-take/$ID?",
            "RUNPOD_WEBHOOK_POST_OUTPUT=\(base)/job-done/$RUNPOD_POD_ID/$ID?",
            "RUNPOD_WEBHOOK_POST_STREAM=\(base)/job-stream/$RUNPOD_POD_ID/$ID?",
            "RUNPOD_WEBHOOK_PING=\(base)/ping/$RUNPOD_POD_ID?",
            "RUNPOD_PING_INTERVAL=\(Int(pingSeconds * 1000))",
            "RUNPOD_AI_API_KEY=\(apiKey)",
            "RUNPOD_POD_ID=\(podID)",
            "RUNPOD_ENDPOINT_ID=\(endpoint)",
            // Off RunPod, the package's start-up checks would look for RunPod's machine and GPUs.
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true",
            "RUNPOD_SKIP_GPU_CHECK=true",
        ]
    }
}
