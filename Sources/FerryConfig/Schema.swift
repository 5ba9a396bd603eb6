/// The keys the rules file accepts, section by section. The decoder rejects anything else, and
/// docs/rules.md documents exactly these (a test compares the two).
public enum RulesSchema {
    static let topLevel = ["version", "state_dir", "metrics_file", "reconcile_interval", "retention", "notify", "aws", "connectors", "outbound", "inbound"]
    static let notify = ["command", "command_timeout", "webhook"]
    static let webhook = ["url", "headers_file", "timeout"]
    static let aws = ["region", "profile", "endpoint_url", "ca_bundle", "max_attempts"]
    static let connector = ["type", "connector_id", "staging", "max_in_flight", "requests_per_second", "keep_staged", "on_in_doubt", "aws"]
    static let connectorAWS = ["region", "profile", "endpoint_url", "ca_bundle"]
    static let outbound = ["name", "watch", "recursive", "watch_mode", "poll_interval", "include", "exclude", "connector",
                           "remote_directory_path", "settle", "ready_marker", "batch", "after_send", "archive_dir", "retries", "notify"]
    static let batch = ["max_files", "max_wait"]
    static let inbound = ["name", "connector", "remote_directory_path", "schedule", "include", "exclude", "min_age",
                          "local_directory_path", "download_to", "on_conflict", "after_retrieve", "max_items", "notify"]

    /// Every accepted key as a dotted path: `aws.region`, `connectors.<name>.staging`,
    /// `outbound[].batch.max_files`. Section keys themselves are included.
    public static var acceptedKeys: [String] {
        var keys = topLevel
        keys += notifyKeys(under: "notify")
        keys += aws.map { "aws.\($0)" }
        keys.append("connectors.<name>")
        keys += connector.map { "connectors.<name>.\($0)" }
        keys += connectorAWS.map { "connectors.<name>.aws.\($0)" }
        keys += outbound.map { "outbound[].\($0)" }
        keys += batch.map { "outbound[].batch.\($0)" }
        keys += notifyKeys(under: "outbound[].notify")
        keys += inbound.map { "inbound[].\($0)" }
        keys += notifyKeys(under: "inbound[].notify")
        return keys
    }

    /// The keys inside a `notify` section (top level or a rule's override), the section itself excluded.
    private static func notifyKeys(under section: String) -> [String] {
        notify.map { "\(section).\($0)" } + webhook.map { "\(section).webhook.\($0)" }
    }

    /// The closest known key to a misspelt one, if it is close enough to be what the user meant.
    static func suggestion(for key: String, among known: [String]) -> String? {
        let scored = known.map { ($0, editDistance(key.lowercased(), $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        let tolerance = max(1, min(3, key.count / 3))
        return best.1 <= tolerance ? best.0 : nil
    }

    /// Levenshtein distance, counting a swap of neighbours as one edit (typing transpositions are common).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}

/// The defaults of every optional key, in one place so that docs, example and decoder agree.
public enum RulesDefaults {
    public static let stateDir = "/var/lib/ferry"
    public static let reconcileInterval: Duration = .seconds(600)
    public static let retention: Duration = .seconds(90 * 86_400)
    /// The shortest `retention` accepted.
    public static let minimumRetention: Duration = .seconds(3600)
    /// The variable that lowers `minimumRetention`, for tests only (docs/operations.md, "History and
    /// retention"): a soak of minutes cannot show pruning with rows kept for an hour.
    public static let minimumRetentionVariable = "FERRY_TEST_MIN_RETENTION"

    /// The shortest `retention` accepted: `minimumRetention`, or a shorter duration from
    /// `FERRY_TEST_MIN_RETENTION` in `environment` (never a longer one: the variable only exists to let
    /// tests prune within minutes, and must not make a valid production file invalid).
    public static func minimumRetention(environment: [String: String]) -> Duration {
        guard let text = environment[minimumRetentionVariable], case .success(let duration) = ValueSyntax.duration(text),
              duration > .zero else { return minimumRetention }
        return min(duration, minimumRetention)
    }
    public static let maxAttempts = 3
    public static let maxInFlight = 100
    public static let requestsPerSecond = 3.0
    public static let keepStaged = false
    public static let onInDoubt = InDoubtPolicy.resend
    public static let recursive = false
    public static let watchMode = OutboundRule.WatchMode.auto
    public static let pollInterval: Duration = .seconds(5)
    /// The shortest `poll_interval` accepted: each pass stats every watched folder.
    public static let minimumPollInterval: Duration = .milliseconds(100)
    public static let settle: Duration = .seconds(2)
    public static let batchMaxFiles = 10
    public static let batchMaxWait: Duration = .seconds(1)
    public static let afterSend = AfterSend.archive
    public static let retries = 5
    public static let schedule: Duration = .seconds(300)
    public static let minAge: Duration = .seconds(60)
    public static let onConflict = OnConflict.rename
    public static let afterRetrieve = AfterRetrieve.keep
    public static let maxItems = 1000
    /// How long an alert command may run before it is killed.
    public static let notifyCommandTimeout: Duration = .seconds(30)
    /// How long one webhook POST may take, connecting included.
    public static let webhookTimeout: Duration = .seconds(10)
}
