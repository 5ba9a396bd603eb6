import FerryGlob

// Public initializers with the rules file's defaults, so that other modules' tests can build rules in
// code; the loader is still the only way a user's rules are made.

extension Rules {
    /// Creates rules; `outbound` order is routing order.
    public init(stateDir: String = RulesDefaults.stateDir, metricsFile: String? = nil,
                reconcileInterval: Duration = RulesDefaults.reconcileInterval, retention: Duration = RulesDefaults.retention,
                aws: AWSSettings, connectors: [Connector], outbound: [OutboundRule] = [], inbound: [InboundRule] = [],
                notify: NotifySettings? = nil) {
        self.init(version: 1, stateDir: stateDir, metricsFile: metricsFile, reconcileInterval: reconcileInterval, retention: retention, aws: aws,
                  connectors: connectors, outbound: outbound, inbound: inbound, notify: notify)
    }
}

extension OutboundRule {
    /// Creates an outbound rule with the rules file's defaults; throws if a pattern is not a valid glob.
    public init(name: String, watch: String, recursive: Bool = RulesDefaults.recursive, include: [String] = [], exclude: [String] = [],
                connector: String, remoteDirectoryPath: String? = nil, settle: Duration = RulesDefaults.settle,
                readyMarker: String? = nil, batchMaxFiles: Int = RulesDefaults.batchMaxFiles,
                batchMaxWait: Duration = RulesDefaults.batchMaxWait, afterSend: AfterSend = RulesDefaults.afterSend,
                archiveDir: String? = nil, retries: Int = RulesDefaults.retries, watchMode: WatchMode = RulesDefaults.watchMode,
                pollInterval: Duration = RulesDefaults.pollInterval) throws(Glob.SyntaxError) {
        self.init(name: name, watch: PathRules.normalize(watch), recursive: recursive, include: include, exclude: exclude,
                  connector: connector, remoteDirectoryPath: remoteDirectoryPath, settle: settle, readyMarker: readyMarker,
                  batchMaxFiles: batchMaxFiles, batchMaxWait: batchMaxWait, afterSend: afterSend, archiveDir: archiveDir,
                  retries: retries, filter: try FileFilter(include: include, exclude: exclude), watchMode: watchMode,
                  pollInterval: pollInterval)
    }
}

extension InboundRule {
    /// Creates an inbound rule with the rules file's defaults; throws if a pattern is not a valid glob.
    public init(name: String, connector: String, remoteDirectoryPath: String, schedule: Schedule = .every(RulesDefaults.schedule),
                include: [String] = [], exclude: [String] = [], minAge: Duration = RulesDefaults.minAge,
                localDirectoryPath: S3Location, downloadTo: String? = nil, onConflict: OnConflict = RulesDefaults.onConflict,
                afterRetrieve: AfterRetrieve = RulesDefaults.afterRetrieve, maxItems: Int = RulesDefaults.maxItems) throws(Glob.SyntaxError) {
        self.init(name: name, connector: connector, remoteDirectoryPath: remoteDirectoryPath, schedule: schedule, include: include,
                  exclude: exclude, minAge: minAge, localDirectoryPath: localDirectoryPath, downloadTo: downloadTo,
                  onConflict: onConflict, afterRetrieve: afterRetrieve, maxItems: maxItems,
                  filter: try FileFilter(include: include, exclude: exclude))
    }
}
