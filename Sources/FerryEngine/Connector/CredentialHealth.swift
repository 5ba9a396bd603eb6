import FerryAWS
import FerryConfig
import Foundation

/// When failing credential refreshes make `ferry status` degraded, and what it then says.
enum CredentialHealth {
    /// Failures in a row, while the current credentials are still valid, that count as "keeps failing":
    /// one failure is often a blip (IMDS restarting), and the chain retries with backoff on its own.
    static let failuresBeforeDegraded = 3

    /// One health key per set of AWS settings (profile, region, endpoint): each has its own chain.
    static func key(_ aws: AWSSettings) -> String {
        "credentials:\(aws.profile ?? "default chain")@\(aws.region)"
    }

    /// The problem to show for `refresh`, or nil when there is none (it succeeded, or it failed only
    /// briefly while the current credentials stay valid).
    static func problem(_ refresh: CredentialRefresh) -> String? {
        guard let error = refresh.error else { return nil }
        let retry = refresh.nextAttemptIn.map { " (tried \(refresh.consecutiveFailures) time\(refresh.consecutiveFailures == 1 ? "" : "s"); next try in \(Int($0.rounded())) s)" } ?? ""
        guard let until = refresh.usableUntil else {
            return "no usable AWS credentials, so nothing can be sent or retrieved: \(error)\(retry)"
        }
        guard refresh.consecutiveFailures >= failuresBeforeDegraded else { return nil }
        let source = refresh.source.map { " from \($0)" } ?? ""
        return "refreshing the AWS credentials keeps failing; the current ones\(source) expire at \(ISO8601DateFormatter().string(from: until)): \(error)\(retry)"
    }
}
