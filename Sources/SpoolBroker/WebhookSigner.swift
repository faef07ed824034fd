import Crypto
import Foundation

/// Signs webhook deliveries per the Standard Webhooks specification: `webhook-id`,
/// `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
struct WebhookSigner: Sendable {
    /// The key's bytes; a SymmetricKey is made per signature (it is not Sendable).
    private let key: Data

    /// `secret` in the Standard Webhooks form: `whsec_` and the base64 of the key's bytes.
    init(secret: String) throws(ConfigurationError) {
        guard secret.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(secret.dropFirst(6))), bytes.count >= 24 else {
            throw ConfigurationError(
                "--webhook-secret/SPOOL_WEBHOOK_SECRET must be 'whsec_' and the base64 of at least 24 random bytes (for example: echo whsec_$(head -c 32 /dev/urandom | base64))."
            )
        }
        key = bytes
    }

    func signature(webhookID: String, timestamp: Int, body: String) -> String {
        let signed = Data("\(webhookID).\(timestamp).\(body)".utf8)
        return "v1," + Data(HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: key))).base64EncodedString()
    }

    /// The three headers of one attempt.
    func headers(webhookID: String, timestamp: Int, body: String) -> [(String, String)] {
        [
            ("webhook-id", webhookID), ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signature(webhookID: webhookID, timestamp: timestamp, body: body)),
        ]
    }
}
