import HTTPTypes

extension HTTPField.Name {
    /// Names a submit so a retried one creates no second job.
    static let idempotencyKey = Self("Idempotency-Key")!
    /// Set on a submit answered from an earlier one with the same idempotency key.
    static let idempotentReplayed = Self("Idempotent-Replayed")!
    /// Tells Stainless-generated SDKs (together) whether retrying can help.
    static let xShouldRetry = Self("x-should-retry")!
    /// Set by browsers on every request: `cross-site` when another site's page sent it.
    static let secFetchSite = Self("Sec-Fetch-Site")!
    /// The id of a file whose content is to be PUT to the Location (Together's upload).
    static let togetherFileID = Self("X-Together-File-Id")!
    /// The dashboard's pages: no Referer leaves them, and no other site frames them.
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
}
