import Foundation
import FerryGlob

/// The validated contents of a rules file: everything ferry does comes from here.
public struct Rules: Sendable {
    /// The rules file format version; only 1 exists.
    public var version: Int
    /// Where the journal lives (absolute).
    public var stateDir: String
    /// The node_exporter textfile to write metrics to, if any (absolute).
    public var metricsFile: String?
    /// How often watched folders are rescanned to catch anything inotify missed.
    public var reconcileInterval: Duration
    /// How long finished journal rows (done, quarantined, retrieved) are kept before they are pruned;
    /// at least one hour.
    public var retention: Duration
    /// The top-level AWS settings; each connector carries its merged copy.
    public var aws: AWSSettings
    /// Connectors in file order.
    public var connectors: [Connector]
    /// Outbound rules in file order: a file belongs to the first one that matches it.
    public var outbound: [OutboundRule]
    /// Inbound rules in file order.
    public var inbound: [InboundRule]
    /// Where alerts go (`notify:`), unless the rule an alert is about has its own; nil sends none.
    public var notify: NotifySettings? = nil

    /// The alert settings for an event about `rule` (nil: an event about no rule): that rule's own
    /// `notify` when it has one, else the top-level one.
    public func notifySettings(forRule rule: String?) -> NotifySettings? {
        if let rule {
            if let own = outbound.first(where: { $0.name == rule })?.notify { return own }
            if let own = inbound.first(where: { $0.name == rule })?.notify { return own }
        }
        return notify
    }

    /// The connector called `name`, if the file defines one.
    public func connector(named name: String) -> Connector? {
        connectors.first { $0.name == name }
    }

    /// The outbound rule a local file belongs to: the first rule, in file order, whose folder and
    /// patterns select it; nil when none does. Paths are absolute.
    public func outboundRule(forFile path: String) -> OutboundRule? {
        outbound.first { $0.selects(path: path) }
    }
}

/// Where alerts go (`notify:`): a command run with the event on stdin, a webhook POSTed the event, or both.
public struct NotifySettings: Sendable, Hashable {
    /// The command's argv, its first element an absolute path; run without a shell. Nil: no command.
    public var command: [String]?
    /// How long the command may run before it is killed (SIGKILL) and counted as failed.
    public var commandTimeout: Duration
    /// Where the event is POSTed as JSON, if anywhere.
    public var webhook: Webhook?

    /// Creates settings; at least one of `command` and `webhook` should be given.
    public init(command: [String]? = nil, commandTimeout: Duration = RulesDefaults.notifyCommandTimeout, webhook: Webhook? = nil) {
        self.command = command
        self.commandTimeout = commandTimeout
        self.webhook = webhook
    }

    /// An HTTP(S) endpoint that receives each alert as a JSON POST.
    public struct Webhook: Sendable, Hashable {
        /// The http:// or https:// URL.
        public var url: String
        /// A file of `Name: value` header lines (e.g. `Authorization: Bearer …`), read at each POST so a
        /// rotated token needs no reload; its contents are never logged.
        public var headersFile: String?
        /// How long one POST may take, connecting included.
        public var timeout: Duration

        /// Creates a webhook.
        public init(url: String, headersFile: String? = nil, timeout: Duration = RulesDefaults.webhookTimeout) {
            self.url = url
            self.headersFile = headersFile
            self.timeout = timeout
        }
    }
}

/// Where and how to reach AWS: region, credentials profile, endpoint and retry budget.
public struct AWSSettings: Sendable, Equatable {
    /// The AWS region, such as `us-east-1`.
    public var region: String
    /// A named profile from the shared config files; nil follows the SDK default chain.
    public var profile: String?
    /// One endpoint URL for Transfer Family and S3 (VPC endpoint or local emulator); nil means AWS's own.
    public var endpointURL: String?
    /// A PEM file of CA certificates to trust instead of the system's.
    public var caBundle: String?
    /// How many times one API request is attempted before it counts as failed.
    public var maxAttempts: Int

    /// Creates settings.
    public init(region: String, profile: String? = nil, endpointURL: String? = nil, caBundle: String? = nil, maxAttempts: Int = 3) {
        self.region = region
        self.profile = profile
        self.endpointURL = endpointURL
        self.caBundle = caBundle
        self.maxAttempts = maxAttempts
    }
}

/// The protocol a Transfer Family connector speaks to the partner.
public enum ConnectorType: String, Sendable, CaseIterable {
    case sftp
    case as2
}

/// An S3 bucket and key prefix, written `s3://bucket/prefix/` or `/bucket/prefix/` in the rules file.
public struct S3Location: Sendable, Hashable, CustomStringConvertible {
    /// The bucket name.
    public var bucket: String
    /// The key prefix: empty, or ending with `/`.
    public var prefix: String

    /// Creates a location; a non-empty prefix without a trailing `/` gets one.
    public init(bucket: String, prefix: String) {
        self.bucket = bucket
        var cleaned = prefix
        while cleaned.hasPrefix("/") { cleaned.removeFirst() }
        if !cleaned.isEmpty && !cleaned.hasSuffix("/") { cleaned += "/" }
        self.prefix = cleaned
    }

    /// The `/bucket/prefix/` form that Transfer Family's `LocalDirectoryPath` expects.
    public var transferPath: String { "/\(bucket)/\(prefix)" }

    public var description: String { "s3://\(bucket)/\(prefix)" }
}

/// What ferry does with a batch whose StartFileTransfer outcome is unknown: the request was written but
/// no answer came (timeout, connection lost, 5xx). StartFileTransfer has no idempotency token, so the
/// partner may or may not have the files.
public enum InDoubtPolicy: String, Sendable, CaseIterable {
    /// Send the batch again and report every file in it as a possible duplicate.
    case resend
    /// Move the batch's files to `<watch>/.ferry/in-doubt/` with a `.reason` file, mark status degraded,
    /// and wait for `ferry retry` to release them.
    case hold
}

/// A Transfer Family connector and how hard ferry may drive it.
public struct Connector: Sendable {
    /// The name rules refer to it by.
    public var name: String
    /// sftp or as2.
    public var type: ConnectorType
    /// The AWS connector id, `c-` and 17 hex digits.
    public var connectorId: String
    /// Where outbound files are uploaded before sending; required when an outbound rule uses it.
    public var staging: S3Location?
    /// Transfers submitted and not finished, at most (the AWS queue holds 1,000).
    public var maxInFlight: Int
    /// StartFileTransfer and StartDirectoryListing calls per second, at most.
    public var requestsPerSecond: Double
    /// Whether uploaded copies stay in staging after a completed send.
    public var keepStaged: Bool
    /// Whether a batch whose StartFileTransfer outcome is unknown is resent (and reported) or held.
    public var onInDoubt: InDoubtPolicy
    /// The top-level `aws` settings with this connector's overrides applied.
    public var aws: AWSSettings

    /// Creates a connector with the rules file's defaults for what is left out.
    public init(name: String, type: ConnectorType, connectorId: String, staging: S3Location? = nil,
                maxInFlight: Int = RulesDefaults.maxInFlight, requestsPerSecond: Double = RulesDefaults.requestsPerSecond,
                keepStaged: Bool = RulesDefaults.keepStaged, onInDoubt: InDoubtPolicy = RulesDefaults.onInDoubt, aws: AWSSettings) {
        self.name = name
        self.type = type
        self.connectorId = connectorId
        self.staging = staging
        self.maxInFlight = maxInFlight
        self.requestsPerSecond = requestsPerSecond
        self.keepStaged = keepStaged
        self.onInDoubt = onInDoubt
        self.aws = aws
    }
}

/// What happens to a local file once the partner has it.
public enum AfterSend: String, Sendable, CaseIterable {
    case archive
    case delete
    case keep
}

/// Watch a folder and send what lands there through a connector.
public struct OutboundRule: Sendable {
    /// Unique among all rules.
    public var name: String
    /// The watched folder (absolute, no trailing `/`).
    public var watch: String
    /// Whether subfolders are watched too.
    public var recursive: Bool
    /// Glob patterns a file must match one of; empty means every file.
    public var include: [String]
    /// Glob patterns that exclude a file, on top of `FileFilter.defaultIgnores`.
    public var exclude: [String]
    /// The connector's name.
    public var connector: String
    /// Where on the partner's server files go (sftp only); nil is the SFTP user's home.
    public var remoteDirectoryPath: String?
    /// How long a file must stay unchanged after close or rename before it counts as complete.
    public var settle: Duration
    /// A suffix such as `.done`: send X only once X.done exists.
    public var readyMarker: String?
    /// Files per StartFileTransfer, 1…10.
    public var batchMaxFiles: Int
    /// How long a batch waits for more files before it is sent.
    public var batchMaxWait: Duration
    /// archive, delete or keep.
    public var afterSend: AfterSend
    /// Where sent files are archived; nil is `<watch>/.ferry/sent/YYYY-MM-DD/`.
    public var archiveDir: String?
    /// Attempts after the first failure before the file is quarantined in `<watch>/.ferry/failed/`.
    public var retries: Int
    /// The compiled include/exclude decision, default ignores included.
    public var filter: FileFilter
    /// How the folder is watched: inotify, polling, or chosen from its file system type.
    public var watchMode: WatchMode = RulesDefaults.watchMode
    /// How often a polled folder is checked for changes.
    public var pollInterval: Duration = RulesDefaults.pollInterval
    /// Where this rule's alerts go instead of the top-level `notify`; nil uses the top-level one.
    public var notify: NotifySettings? = nil

    /// `watch_mode`: inotify sees only changes made through this host's kernel, so folders on NFS,
    /// SMB or FUSE mounts written by other hosts must be polled.
    public enum WatchMode: String, Sendable, CaseIterable {
        /// Poll on network and FUSE file systems (by `statfs`), inotify elsewhere.
        case auto
        /// inotify events, with the periodic reconciliation as the safety net.
        case inotify
        /// Incremental polling every `poll_interval`.
        case poll
    }

    /// `path` relative to `watch` ("" for the folder itself), or nil when it is not below it.
    public func relativePath(of path: String) -> String? { PathRules.relative(path, to: watch) }

    /// Whether this rule's folder and patterns select the file at absolute `path` (ignoring earlier rules).
    public func selects(path: String) -> Bool {
        guard let relative = PathRules.relative(path, to: watch), !relative.isEmpty else { return false }
        if !recursive && relative.contains("/") { return false }
        return filter.accepts(relative)
    }
}

/// Whether a downloaded file whose name already exists is renamed, overwrites, or is skipped.
public enum OnConflict: String, Sendable, CaseIterable {
    case rename
    case overwrite
    case skip
}

/// What happens to the partner's copy after a file is retrieved.
public enum AfterRetrieve: Sendable, Equatable {
    case keep
    case delete
    /// Moved (StartRemoteMove) into this remote folder.
    case move(String)
}

/// When an inbound rule polls the partner.
public enum Schedule: Sendable {
    case every(Duration)
    case cron(CronExpression)

    /// The next poll strictly after `date`.
    public func next(after date: Date, in timeZone: TimeZone) -> Date {
        switch self {
        case .every(let interval):
            let (seconds, attoseconds) = interval.components
            return date.addingTimeInterval(Double(seconds) + Double(attoseconds) / 1e18)
        case .cron(let expression):
            return expression.next(after: date, in: timeZone)
        }
    }
}

/// Poll a partner's folder and retrieve new files into S3 (and optionally a local folder).
public struct InboundRule: Sendable {
    /// Unique among all rules.
    public var name: String
    /// The connector's name; must be sftp.
    public var connector: String
    /// The partner's folder to list and retrieve from.
    public var remoteDirectoryPath: String
    /// When to poll.
    public var schedule: Schedule
    /// Glob patterns a remote file name must match one of; empty means every file.
    public var include: [String]
    /// Glob patterns that exclude a remote file, on top of `FileFilter.defaultIgnores`.
    public var exclude: [String]
    /// Remote files modified more recently than this are left for the next poll.
    public var minAge: Duration
    /// The S3 destination (Transfer Family's LocalDirectoryPath).
    public var localDirectoryPath: S3Location
    /// A local folder (absolute) each retrieved file is also placed in, if any.
    public var downloadTo: String?
    /// What to do when `downloadTo` already holds a file of that name.
    public var onConflict: OnConflict
    /// What to do with the partner's copy after retrieval.
    public var afterRetrieve: AfterRetrieve
    /// Files retrieved per poll, at most.
    public var maxItems: Int
    /// The compiled include/exclude decision, default ignores included.
    public var filter: FileFilter
    /// Where this rule's alerts go instead of the top-level `notify`; nil uses the top-level one.
    public var notify: NotifySettings? = nil
}
