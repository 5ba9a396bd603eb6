import Foundation
import FerryGlob

/// Reads and validates rules files.
public enum RulesLoader {
    /// The outcome of loading: the rules when there is no error, and every diagnostic sorted by position.
    public struct LoadResult: Sendable {
        /// The rules, or nil if any error was found.
        public var rules: Rules?
        /// Errors and warnings, sorted by line and column.
        public var diagnostics: [Diagnostic]

        /// The errors alone.
        public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
        /// The warnings alone.
        public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
    }

    /// Tells which file system holds a folder: its name ("nfs", "fuse") and whether inotify is blind to
    /// changes made on it by other hosts. Given by `ferry validate` (FerryConfig reads no file system
    /// types itself), so it can warn about `watch_mode: inotify` on such a folder; nil when unknown.
    public typealias FileSystemProbe = @Sendable (_ folder: String) -> (name: String, isRemote: Bool)?

    /// Loads the file at `path`; an unreadable file is one error at 1:1. A world-writable file is a warning.
    /// With `fileSystem`, a rule that forces `watch_mode: inotify` on a network or FUSE folder is a warning.
    public static func load(path: String, fileSystem: FileSystemProbe? = nil) -> LoadResult {
        var sink = DiagnosticSink(file: path)
        var status = stat()
        guard stat(path, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            sink.error(.start, "cannot read the rules file: \(reason)")
            return LoadResult(rules: nil, diagnostics: sink.sorted)
        }
        if status.st_mode & S_IFMT == S_IFDIR {
            sink.error(.start, "cannot read the rules file: it is a directory")
            return LoadResult(rules: nil, diagnostics: sink.sorted)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            sink.error(.start, "cannot read the rules file: permission denied or unreadable")
            return LoadResult(rules: nil, diagnostics: sink.sorted)
        }
        if status.st_mode & S_IWOTH != 0 {
            let mode = String(status.st_mode & 0o777, radix: 8)
            sink.warning(.start, "the rules file is world-writable (mode \(mode)): anyone on this machine can change where files are sent; run chmod o-w \(path)")
        }
        return load(bytes: [UInt8](data), sink: sink, fileSystem: fileSystem)
    }

    /// Loads rules from text; `path` is only used to name the file in diagnostics.
    public static func load(yaml: String, path: String) -> LoadResult {
        load(bytes: Array(yaml.utf8), sink: DiagnosticSink(file: path))
    }

    /// Loads rules from raw bytes, which need not be valid UTF-8 (libyaml reports where they are not).
    public static func load(contents: [UInt8], path: String) -> LoadResult {
        load(bytes: contents, sink: DiagnosticSink(file: path))
    }

    private static func load(bytes: [UInt8], sink: DiagnosticSink, fileSystem: FileSystemProbe? = nil) -> LoadResult {
        var sink = sink
        let root: YAMLNode?
        do {
            root = try YAMLComposer.compose(bytes, into: &sink)
        } catch {
            sink.error(error.position, error.message)
            return LoadResult(rules: nil, diagnostics: sink.sorted)
        }
        guard let root, !root.isNull else {
            sink.error(root?.position ?? .start, "the rules file is empty; it needs at least 'version: 1' and a 'connectors' section")
            return LoadResult(rules: nil, diagnostics: sink.sorted)
        }
        var builder = RulesBuilder(decoder: RulesDecoder(sink: sink))
        builder.fileSystem = fileSystem
        let rules = builder.build(root)
        let result = builder.decoder.sink
        return LoadResult(rules: result.hasErrors ? nil : rules, diagnostics: result.sorted)
    }
}

/// Decodes the document section by section, then checks what spans sections: references, names,
/// routing and loops.
struct RulesBuilder {
    var decoder: RulesDecoder

    private struct Located<T> {
        var value: T
        var position: SourcePosition
        /// Where each key's value was written, for checks across rules that point at one of them.
        var values: [String: SourcePosition] = [:]
    }

    /// Every connector name written in the file, valid or not, so references to a broken connector
    /// are not reported a second time as undefined.
    private var declaredConnectors: [String] = []
    /// Connectors whose staging was written but invalid: already reported, so not reported again as missing.
    private var stagingWritten: Set<String> = []
    private var ruleNames: [String: (kind: String, position: SourcePosition)] = [:]
    /// See `RulesLoader.FileSystemProbe`.
    var fileSystem: RulesLoader.FileSystemProbe?

    init(decoder: RulesDecoder) { self.decoder = decoder }

    mutating func build(_ root: YAMLNode) -> Rules? {
        guard let top = decoder.fields(root, "the rules file", known: RulesSchema.topLevel, nested: ["aws": RulesSchema.aws]) else { return nil }

        if let node = decoder.required(top, "version", in: "the rules file"), let text = decoder.string(node, "version") {
            if text != "1" {
                decoder.sink.error(node.position, "unsupported 'version' \(text); this ferry reads version 1")
            }
        }
        let stateDir = top["state_dir"] == nil ? RulesDefaults.stateDir : decoder.absolutePath(top["state_dir"], "state_dir") ?? RulesDefaults.stateDir
        let metricsFile = decoder.absolutePath(top["metrics_file"], "metrics_file")
        let reconcile = decoder.duration(top["reconcile_interval"], "reconcile_interval", default: RulesDefaults.reconcileInterval)
        if top["state_dir"] != nil { warnIfPrivateTmp(stateDir, "state_dir", at: top["state_dir"]) }
        var retention = decoder.duration(top["retention"], "retention", default: RulesDefaults.retention, allowZero: true)
        let minimumRetention = RulesDefaults.minimumRetention(environment: ProcessInfo.processInfo.environment)
        if let node = top["retention"], retention < minimumRetention {
            let shortest = minimumRetention == RulesDefaults.minimumRetention ? "1h" : "\(minimumRetention.components.seconds)s"
            decoder.sink.error(node.position, "'retention' must be at least \(shortest) (finished journal rows are kept this long for 'ferry history' and 'ferry explain'), got \(node.scalar ?? "")")
            retention = RulesDefaults.retention
        }

        let notify = notifySettings(top["notify"], in: "the rules file")

        var aws = AWSSettings(region: "", maxAttempts: RulesDefaults.maxAttempts)
        var regionWritten = false
        if let node = top["aws"], let fields = decoder.fields(node, "'aws'", known: RulesSchema.aws) {
            regionWritten = fields["region"] != nil
            aws = awsSettings(fields, base: aws)
            aws.maxAttempts = decoder.integer(fields["max_attempts"], "max_attempts", range: 1...20, default: RulesDefaults.maxAttempts)
        }

        var connectors: [Located<Connector>] = []
        if let node = decoder.required(top, "connectors", in: "the rules file") {
            connectors = self.connectors(node, aws: aws, regionWritten: regionWritten)
        }

        var outbound: [Located<OutboundRule>] = []
        let outboundItems = top["outbound"].map { list($0, "outbound") } ?? []
        let inboundItems = top["inbound"].map { list($0, "inbound") } ?? []
        for item in outboundItems {
            if let (rule, values) = outboundRule(item, connectors: connectors) {
                outbound.append(Located(value: rule, position: item.position, values: values))
            }
        }
        var inbound: [Located<InboundRule>] = []
        for item in inboundItems {
            if let (rule, values) = inboundRule(item, connectors: connectors) {
                inbound.append(Located(value: rule, position: item.position, values: values))
            }
        }
        // Only when both lists are absent or empty: a list written as something else is already an error.
        let listsWritten = [top["outbound"], top["inbound"]].compactMap { $0 }
        let allEmpty = listsWritten.allSatisfy { node in
            if case .sequence(let items) = node.content { return items.isEmpty }
            return false
        }
        if allEmpty && !connectors.isEmpty {
            decoder.sink.warning(.start, "there are no outbound or inbound rules: ferry has nothing to do")
        }

        checkShadowing(outbound)
        checkArchives(outbound)
        checkLoops(inbound: inbound, outbound: outbound)
        checkSharedS3Locations(inbound)

        return Rules(version: 1, stateDir: stateDir, metricsFile: metricsFile, reconcileInterval: reconcile, retention: retention, aws: aws,
                     connectors: connectors.map(\.value), outbound: outbound.map(\.value), inbound: inbound.map(\.value), notify: notify)
    }

    private mutating func list(_ node: YAMLNode, _ key: String) -> [YAMLNode] {
        guard case .sequence(let items) = node.content else {
            decoder.sink.error(node.position, "'\(key)' must be a list of rules (each starting with '- name:'), got \(node.kindDescription)")
            return []
        }
        return items
    }

    private mutating func awsSettings(_ fields: Fields, base: AWSSettings) -> AWSSettings {
        var settings = base
        if let region = decoder.string(fields["region"], "region") {
            let valid = region.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
                && region.contains("-") && !region.hasPrefix("-")
            if valid {
                settings.region = region
            } else if let node = fields["region"] {
                decoder.sink.error(node.position, "'region' '\(region)' is not an AWS region name, like us-east-1")
            }
        }
        if let profile = decoder.string(fields["profile"], "profile") { settings.profile = profile }
        if let node = fields["endpoint_url"], let url = decoder.string(node, "endpoint_url") {
            let parsed = URLComponents(string: url)
            if let parsed, ["http", "https"].contains(parsed.scheme ?? ""), !(parsed.host ?? "").isEmpty {
                settings.endpointURL = url
            } else {
                decoder.sink.error(node.position, "'endpoint_url' must be an http:// or https:// URL with a host, got '\(url)'")
            }
        }
        if let path = decoder.absolutePath(fields["ca_bundle"], "ca_bundle") { settings.caBundle = path }
        return settings
    }

    private mutating func connectors(_ node: YAMLNode, aws: AWSSettings, regionWritten: Bool) -> [Located<Connector>] {
        guard case .mapping(let pairs) = node.content else {
            decoder.sink.error(node.position, "'connectors' must be a mapping from connector names to their settings, got \(node.kindDescription)")
            return []
        }
        if pairs.isEmpty {
            decoder.sink.error(node.position, "'connectors' must define at least one connector")
        }
        var result: [Located<Connector>] = []
        for pair in pairs {
            guard let rawName = pair.key.scalar else { continue }
            declaredConnectors.append(rawName)
            let name = decoder.name(pair.key, "connector name")
            guard let fields = decoder.fields(pair.value, "connector '\(rawName)'", known: RulesSchema.connector, nested: ["aws": RulesSchema.connectorAWS]) else { continue }
            let what = "connector '\(rawName)'"
            let type: ConnectorType? = decoder.required(fields, "type", in: what).map { decoder.choice($0, "type", default: ConnectorType.sftp) }
            var connectorId: String?
            if let node = decoder.required(fields, "connector_id", in: what), let id = decoder.string(node, "connector_id") {
                if ValueSyntax.isConnectorId(id) {
                    connectorId = id
                } else {
                    decoder.sink.error(node.position, "'connector_id' '\(id)' must be 'c-' and 17 lowercase hexadecimal digits, like c-0123456789abcdef0")
                }
            }
            let staging = decoder.s3Location(fields["staging"], "staging")
            if fields["staging"] != nil { stagingWritten.insert(rawName) }
            let maxInFlight = decoder.integer(fields["max_in_flight"], "max_in_flight", range: 1...1000, default: RulesDefaults.maxInFlight,
                                              why: " (the connector's queue holds 1,000 transfers)")
            let rate = decoder.number(fields["requests_per_second"], "requests_per_second", max: 1000, default: RulesDefaults.requestsPerSecond)
            let keepStaged = decoder.boolean(fields["keep_staged"], "keep_staged", default: RulesDefaults.keepStaged)
            let onInDoubt = decoder.choice(fields["on_in_doubt"], "on_in_doubt", default: RulesDefaults.onInDoubt)
            var settings = aws
            if let node = fields["aws"], let overrides = decoder.fields(node, "the 'aws' of connector '\(rawName)'", known: RulesSchema.connectorAWS) {
                settings = awsSettings(overrides, base: aws)
            }
            let overridesRegion = (pair.value.mappingValue("aws")?.mappingValue("region")).map { !$0.isNull } ?? false
            if settings.region.isEmpty && !regionWritten && !overridesRegion {
                decoder.sink.error(pair.key.position, "connector '\(rawName)' has no AWS region: set 'region' in the top-level 'aws' section or in this connector's 'aws'")
            }
            guard let name, let type, let connectorId else { continue }
            result.append(Located(value: Connector(name: name, type: type, connectorId: connectorId, staging: staging,
                                                   maxInFlight: maxInFlight, requestsPerSecond: rate, keepStaged: keepStaged,
                                                   onInDoubt: onInDoubt, aws: settings),
                                  position: pair.key.position))
        }
        return result
    }

    /// Registers a rule name, reporting a clash with any earlier rule.
    private mutating func ruleName(_ fields: Fields, kind: String) -> String? {
        guard let node = decoder.required(fields, "name", in: "this \(kind) rule"), let name = decoder.name(node, "rule name") else { return nil }
        if let earlier = ruleNames[name] {
            decoder.sink.error(node.position, "rule name '\(name)' is already used by the \(earlier.kind) rule at \(earlier.position)")
        } else {
            ruleNames[name] = (kind, node.position)
        }
        return name
    }

    /// The connector a rule names, reporting an unknown name with the closest defined one.
    private mutating func connectorReference(_ fields: Fields, in what: String, connectors: [Located<Connector>]) -> (Connector, YAMLNode)? {
        guard let node = decoder.required(fields, "connector", in: what), let name = decoder.string(node, "connector") else { return nil }
        if let connector = connectors.first(where: { $0.value.name == name }) { return (connector.value, node) }
        if declaredConnectors.contains(name) { return nil }
        let names = declaredConnectors
        var message = "connector '\(name)' is not defined in 'connectors'"
        if let guess = RulesSchema.suggestion(for: name, among: names) {
            message += "; did you mean '\(guess)'?"
        } else if !names.isEmpty {
            message += " (defined: \(names.joined(separator: ", ")))"
        }
        decoder.sink.error(node.position, message)
        return nil
    }

    /// Where each key's value is written in a rule's mapping.
    private static func valuePositions(_ fields: Fields) -> [String: SourcePosition] {
        fields.entries.mapValues { $0.value.position }
    }

    /// The packaged systemd unit gives ferry a private /tmp and /var/tmp, so a folder there is not the
    /// one other programs write to or read from: a silent split, worth a warning.
    private mutating func warnIfPrivateTmp(_ path: String?, _ key: String, at node: YAMLNode?) {
        guard let path, let node else { return }
        for tmp in ["/tmp", "/var/tmp"] where PathRules.relative(path, to: tmp) != nil {
            decoder.sink.warning(node.position, "'\(key)' \(path) is under \(tmp): the packaged systemd unit runs ferry with PrivateTmp=yes, so the daemon sees a private \(tmp) that other programs do not share; use a folder under /srv or /var/lib instead")
        }
    }

    private mutating func outboundRule(_ node: YAMLNode, connectors: [Located<Connector>]) -> (OutboundRule, [String: SourcePosition])? {
        guard let fields = decoder.fields(node, "this outbound rule", known: RulesSchema.outbound, nested: ["batch": RulesSchema.batch]) else { return nil }
        let name = ruleName(fields, kind: "outbound")
        let what = name.map { "outbound rule '\($0)'" } ?? "this outbound rule"
        let watch = decoder.required(fields, "watch", in: what).flatMap { decoder.absolutePath($0, "watch") }
        warnIfPrivateTmp(watch, "watch", at: fields["watch"])
        let recursive = decoder.boolean(fields["recursive"], "recursive", default: RulesDefaults.recursive)
        let include = decoder.globs(fields["include"], "include")
        let exclude = decoder.globs(fields["exclude"], "exclude")
        let connector = connectorReference(fields, in: what, connectors: connectors)
        let remote = decoder.string(fields["remote_directory_path"], "remote_directory_path")
        if let (connector, node) = connector {
            if connector.type == .as2, let remoteNode = fields["remote_directory_path"] {
                decoder.sink.error(remoteNode.position, "'remote_directory_path' applies to sftp connectors only; '\(connector.name)' is an as2 connector")
            }
            if connector.staging == nil && !stagingWritten.contains(connector.name) {
                decoder.sink.error(node.position, "connector '\(connector.name)' has no 'staging' location, which outbound rules need to upload files before sending")
            }
        }
        let settle = decoder.duration(fields["settle"], "settle", default: RulesDefaults.settle)
        var readyMarker: String?
        if let node = fields["ready_marker"], let marker = decoder.string(node, "ready_marker") {
            if marker.contains("/") {
                decoder.sink.error(node.position, "'ready_marker' is a suffix such as .done, not a path; got '\(marker)'")
            } else {
                readyMarker = marker
            }
        }
        var batchMaxFiles = RulesDefaults.batchMaxFiles
        var batchMaxWait = RulesDefaults.batchMaxWait
        if let node = fields["batch"], let batch = decoder.fields(node, "'batch'", known: RulesSchema.batch) {
            batchMaxFiles = decoder.integer(batch["max_files"], "max_files", range: 1...10, default: RulesDefaults.batchMaxFiles,
                                            why: " (StartFileTransfer takes at most 10 paths)")
            batchMaxWait = decoder.duration(batch["max_wait"], "max_wait", default: RulesDefaults.batchMaxWait)
        }
        let afterSend = decoder.choice(fields["after_send"], "after_send", default: RulesDefaults.afterSend)
        let archiveDir = decoder.absolutePath(fields["archive_dir"], "archive_dir")
        if archiveDir != nil, afterSend != .archive, let position = fields.keyPosition("archive_dir") {
            decoder.sink.warning(position, "'archive_dir' is ignored because 'after_send' is \(afterSend.rawValue), not archive")
        }
        if afterSend == .archive { warnIfPrivateTmp(archiveDir, "archive_dir", at: fields["archive_dir"]) }
        let retries = decoder.integer(fields["retries"], "retries", range: 0...100, default: RulesDefaults.retries)
        let (watchMode, pollInterval) = watchModeFields(fields, watch: watch)
        let notify = notifySettings(fields["notify"], in: what)
        guard let name, let watch, let (connector, _) = connector,
              let filter = try? FileFilter(include: include, exclude: exclude) else { return nil }
        var rule = OutboundRule(name: name, watch: watch, recursive: recursive, include: include, exclude: exclude, connector: connector.name,
                                remoteDirectoryPath: remote, settle: settle, readyMarker: readyMarker, batchMaxFiles: batchMaxFiles,
                                batchMaxWait: batchMaxWait, afterSend: afterSend, archiveDir: archiveDir, retries: retries, filter: filter,
                                watchMode: watchMode, pollInterval: pollInterval)
        rule.notify = notify
        return (rule, Self.valuePositions(fields))
    }

    /// `watch_mode` and `poll_interval`, with the checks that span both and the folder's file system.
    private mutating func watchModeFields(_ fields: Fields, watch: String?) -> (OutboundRule.WatchMode, Duration) {
        let watchMode = decoder.choice(fields["watch_mode"], "watch_mode", default: RulesDefaults.watchMode)
        var pollInterval = decoder.duration(fields["poll_interval"], "poll_interval", default: RulesDefaults.pollInterval)
        if let node = fields["poll_interval"], pollInterval < RulesDefaults.minimumPollInterval {
            decoder.sink.error(node.position, "'poll_interval' must be at least 100ms: each poll pass stats every watched folder")
            pollInterval = RulesDefaults.pollInterval
        }
        if watchMode == .inotify, let position = fields.keyPosition("poll_interval") {
            decoder.sink.warning(position, "'poll_interval' is ignored because 'watch_mode' is inotify")
        }
        if watchMode == .inotify, let node = fields["watch_mode"], let watch, let kind = fileSystem?(watch), kind.isRemote {
            decoder.sink.warning(node.position, "'watch_mode: inotify' on \(watch), which is on \(kind.name): inotify sees only changes made through this host's kernel, so files written by other hosts (or behind a FUSE mount) wait for the reconciliation scan; use 'watch_mode: auto' or 'poll'")
        }
        return (watchMode, pollInterval)
    }

    private mutating func inboundRule(_ node: YAMLNode, connectors: [Located<Connector>]) -> (InboundRule, [String: SourcePosition])? {
        guard let fields = decoder.fields(node, "this inbound rule", known: RulesSchema.inbound) else { return nil }
        let name = ruleName(fields, kind: "inbound")
        let what = name.map { "inbound rule '\($0)'" } ?? "this inbound rule"
        let connector = connectorReference(fields, in: what, connectors: connectors)
        if let (connector, node) = connector, connector.type == .as2 {
            decoder.sink.error(node.position, "connector '\(connector.name)' is an as2 connector, which can only send; inbound rules need an sftp connector")
        }
        let remote = decoder.required(fields, "remote_directory_path", in: what).flatMap { decoder.string($0, "remote_directory_path") }
        let schedule = decoder.schedule(fields["schedule"])
        let include = decoder.globs(fields["include"], "include")
        let exclude = decoder.globs(fields["exclude"], "exclude")
        let minAge = decoder.duration(fields["min_age"], "min_age", default: RulesDefaults.minAge, allowZero: true)
        let local = decoder.required(fields, "local_directory_path", in: what).flatMap { decoder.s3Location($0, "local_directory_path") }
        let downloadTo = decoder.absolutePath(fields["download_to"], "download_to")
        warnIfPrivateTmp(downloadTo, "download_to", at: fields["download_to"])
        let onConflict = decoder.choice(fields["on_conflict"], "on_conflict", default: RulesDefaults.onConflict)
        let afterRetrieve = decoder.afterRetrieve(fields["after_retrieve"])
        let maxItems = decoder.integer(fields["max_items"], "max_items", range: 1...10000, default: RulesDefaults.maxItems)
        let notify = notifySettings(fields["notify"], in: what)
        guard let name, let (connector, _) = connector, connector.type == .sftp, let remote, let local,
              let filter = try? FileFilter(include: include, exclude: exclude) else { return nil }
        var rule = InboundRule(name: name, connector: connector.name, remoteDirectoryPath: remote, schedule: schedule, include: include,
                               exclude: exclude, minAge: minAge, localDirectoryPath: local, downloadTo: downloadTo, onConflict: onConflict,
                               afterRetrieve: afterRetrieve, maxItems: maxItems, filter: filter)
        rule.notify = notify
        return (rule, Self.valuePositions(fields))
    }

    // MARK: Checks across rules

    /// Warns about an outbound rule that can never receive a file because an earlier rule takes every
    /// file it would select. Only provable cases are reported: the earlier rule covers the folder, selects
    /// at least the same patterns, and excludes nothing the later one would send.
    private mutating func checkShadowing(_ rules: [Located<OutboundRule>]) {
        for (index, later) in rules.enumerated() {
            for earlier in rules[..<index] where Self.shadows(earlier.value, later.value) {
                decoder.sink.warning(later.position, "outbound rule '\(later.value.name)' never receives a file: the earlier rule '\(earlier.value.name)' at \(earlier.position) watches \(earlier.value.recursive ? "its folder tree" : "the same folder") and selects every file this rule would (the first matching rule wins)")
                break
            }
        }
    }

    static func shadows(_ earlier: OutboundRule, _ later: OutboundRule) -> Bool {
        guard let relative = PathRules.relative(later.watch, to: earlier.watch) else { return false }
        let sameFolder = relative.isEmpty
        if sameFolder {
            guard earlier.recursive || !later.recursive else { return false }
        } else {
            guard earlier.recursive else { return false }
            // A folder the earlier rule's excludes (or the default ignores) hide stays the later rule's.
            let hidden = relative.split(separator: "/").contains { segment in
                earlier.filter.exclude.contains { $0.matchesBaseName && $0.matches(String(segment)) }
            }
            if hidden { return false }
        }
        // Patterns with '/' mean different things relative to different folders; compare only what is comparable.
        func comparable(_ patterns: [String]) -> Bool { sameFolder || patterns.allSatisfy { !$0.contains("/") } }
        let includeCovered = earlier.include.isEmpty
            || (!later.include.isEmpty && comparable(later.include) && Set(later.include).isSubset(of: Set(earlier.include)))
        let excludeCovered = Set(earlier.exclude).isSubset(of: Set(later.exclude)) && comparable(earlier.exclude)
        return includeCovered && excludeCovered
    }

    /// An inbound rule that downloads into a folder an outbound rule sends back to the same partner folder
    /// would bounce every file forever.
    private mutating func checkLoops(inbound: [Located<InboundRule>], outbound: [Located<OutboundRule>]) {
        for rule in inbound {
            guard let downloadTo = rule.value.downloadTo, let position = rule.values["download_to"] else { continue }
            for sender in outbound {
                guard let relative = PathRules.relative(downloadTo, to: sender.value.watch),
                      relative.isEmpty || sender.value.recursive,
                      sender.value.connector == rule.value.connector,
                      let remote = sender.value.remoteDirectoryPath,
                      PathRules.normalize(remote) == PathRules.normalize(rule.value.remoteDirectoryPath) else { continue }
                decoder.sink.error(position, "inbound rule '\(rule.value.name)' downloads into \(downloadTo), which outbound rule '\(sender.value.name)' at \(sender.position) watches and sends back to connector '\(rule.value.connector)' at \(remote): every file would loop; download elsewhere or send to another folder")
            }
        }
    }

    /// An archive inside a watched folder is watched too: every archived file would be sent again, for
    /// ever (issue #13 saw nine AS2 sends of one invoice in 15 s). Only a `.ferry` component below the
    /// watch keeps it out of sight, because the watcher skips those folders. Paths are already absolute,
    /// `..`-free and normalised, so comparing them as text is exact.
    private mutating func checkArchives(_ rules: [Located<OutboundRule>]) {
        for rule in rules where rule.value.afterSend == .archive {
            guard let archive = rule.value.archiveDir, let position = rule.values["archive_dir"] else { continue }
            for watcher in rules {
                guard let relative = PathRules.relative(archive, to: watcher.value.watch),
                      !relative.split(separator: "/").contains(".ferry") else { continue }
                let place = relative.isEmpty
                    ? "is the folder outbound rule '\(watcher.value.name)' at \(watcher.position) watches"
                    : "is inside \(watcher.value.watch), which outbound rule '\(watcher.value.name)' at \(watcher.position) watches"
                decoder.sink.error(position, "'archive_dir' \(archive) \(place): archived files would be picked up and sent again; archive outside every watched folder, or inside a '.ferry' folder, which the watcher skips (the default is <watch>/.ferry/sent/)")
                break
            }
        }
        // The other way round: a rule watching inside another rule's archive (written or the default) sends what that rule archived.
        for (index, rule) in rules.enumerated() {
            guard let position = rule.values["watch"] else { continue }
            for (otherIndex, archiver) in rules.enumerated() where otherIndex != index && archiver.value.afterSend == .archive {
                let written = archiver.value.archiveDir
                let archive = written ?? PathRules.normalize(archiver.value.watch + "/.ferry/sent")
                guard let relative = PathRules.relative(rule.value.watch, to: archive) else { continue }
                // A watch that is a written archive_dir was reported at that archive_dir already.
                if relative.isEmpty && written != nil { continue }
                let place = relative.isEmpty
                    ? "is the folder where outbound rule '\(archiver.value.name)' at \(archiver.position) archives sent files"
                    : "is inside \(archive), where outbound rule '\(archiver.value.name)' at \(archiver.position) archives sent files"
                decoder.sink.error(position, "'watch' \(rule.value.watch) \(place): this rule would send them again; watch a folder outside every rule's archive")
                break
            }
        }
    }

    /// Two inbound rules retrieving into one S3 location (or one inside the other) mix their objects, and
    /// a file of the same name retrieved by both overwrites the other's copy. S3 locations are already
    /// normalised: the prefix is empty or ends with `/`, so a string prefix is a folder prefix.
    private mutating func checkSharedS3Locations(_ rules: [Located<InboundRule>]) {
        for (index, later) in rules.enumerated() {
            guard let position = later.values["local_directory_path"] else { continue }
            let location = later.value.localDirectoryPath
            for earlier in rules[..<index] where earlier.value.localDirectoryPath.bucket == location.bucket {
                let other = earlier.value.localDirectoryPath
                let relation: String
                if other.prefix == location.prefix {
                    relation = "is the S3 location inbound rule '\(earlier.value.name)' at \(earlier.position) retrieves into"
                } else if location.prefix.hasPrefix(other.prefix) {
                    relation = "is inside \(other), where inbound rule '\(earlier.value.name)' at \(earlier.position) retrieves"
                } else if other.prefix.hasPrefix(location.prefix) {
                    relation = "contains \(other), where inbound rule '\(earlier.value.name)' at \(earlier.position) retrieves"
                } else {
                    continue
                }
                decoder.sink.error(position, "'local_directory_path' \(location) \(relation): their retrieved objects would mix and overwrite each other's; give each inbound rule its own S3 prefix, not inside another rule's")
                break
            }
        }
    }
}

extension YAMLNode {
    /// The value of `key` when this node is a mapping.
    func mappingValue(_ key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = content else { return nil }
        return pairs.first { $0.key.scalar == key }?.value
    }
}

