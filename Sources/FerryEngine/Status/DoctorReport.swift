import FerryAWS
import FerryConfig
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `ferry doctor`: everything that will fail, checked before it fails — the rules file, credentials,
/// each connector (DescribeConnector, TestConnection, a real write to its staging bucket), the folders
/// (present, writable by the service user, inside the unit's writable paths), inotify limits, free disk
/// space and the clock against AWS's. Each finding is ok, warn or fail with what to do.
public struct DoctorReport: Codable, Sendable {
    /// What to check and against what.
    public struct Options: Sendable {
        public var configPath: String
        /// A systemd unit file to check the folders against instead of the installed one.
        public var unitPath: String?
        /// Free space below this is a warning (default 1 GiB; also below 5 % of the file system).
        public var freeSpaceWarning: Int64 = 1 << 30
        /// The kernel's inotify settings (tests point it elsewhere).
        public var inotifySettings = "/proc/sys/fs/inotify"

        public init(configPath: String, unitPath: String? = nil) {
            self.configPath = configPath
            self.unitPath = unitPath
        }
    }

    /// Clock differences beyond these are a warning / a failure: SigV4 refuses requests 15 minutes off,
    /// and expiring credentials are refreshed 5 minutes ahead.
    static let clockWarning: TimeInterval = 60
    static let clockFailure: TimeInterval = 300
    /// AWS's quota for TestConnection.
    static let testConnectionInterval: Duration = .seconds(1)

    public var configPath: String
    public var checks: [DoctorCheck]

    /// 0 when nothing fails (warnings allowed), 1 otherwise.
    public var exitCode: Int32 { checks.contains { $0.level == .fail } ? 1 : 0 }

    /// Runs every check.
    public static func run(_ options: Options, logger: Logger) async -> DoctorReport {
        var report = DoctorReport(configPath: options.configPath, checks: [])
        // As `ferry validate` loads it, with the file-system probe that warns of network watch folders.
        let loaded = RulesLoader.load(path: options.configPath, fileSystem: Daemon.fileSystem(of:))
        for diagnostic in loaded.diagnostics {
            report.add("rules", diagnostic.severity == .error ? .fail : .warn, "\(diagnostic)",
                       remedy: diagnostic.severity == .error ? "correct the rules file; `ferry validate` lists every error" : nil)
        }
        guard let rules = loaded.rules else { return report }
        report.add("rules", .ok, "\(options.configPath) is valid: \(rules.connectors.count) connector(s), \(rules.outbound.count) outbound and \(rules.inbound.count) inbound rule(s)")
        report.checkFolders(rules, options)
        report.checkInotify(rules, options)
        report.checkDiskSpace(rules, options)
        await report.checkAWS(rules, logger: logger)
        return report
    }

    mutating func add(_ subject: String, _ level: DoctorCheck.Level, _ message: String, remedy: String? = nil) {
        checks.append(DoctorCheck(subject, level, message, remedy: remedy))
    }

    /// One line per check, then a summary.
    public func text() -> String {
        let counts = Dictionary(grouping: checks, by: \.level).mapValues(\.count)
        return checks.map(\.text).joined(separator: "\n")
            + "\n\(counts[.ok] ?? 0) ok, \(counts[.warn] ?? 0) warn, \(counts[.fail] ?? 0) fail\n"
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        struct Output: Encodable { var config: String; var checks: [DoctorCheck]; var exitCode: Int32 }
        return String(decoding: try encoder.encode(Output(config: configPath, checks: checks, exitCode: exitCode)), as: UTF8.self)
    }

    // MARK: folders

    /// Every folder ferry writes in, with what it is for.
    static func folders(_ rules: Rules) -> [(path: String, roles: [String])] {
        var list: [(String, String)] = [(rules.stateDir, "state_dir")]
        for rule in rules.outbound {
            list.append((rule.watch, "watch of rule \(rule.name)"))
            if let archive = rule.archiveDir { list.append((archive, "archive_dir of rule \(rule.name)")) }
        }
        for rule in rules.inbound { if let target = rule.downloadTo { list.append((target, "download_to of rule \(rule.name)")) } }
        var merged: [(path: String, roles: [String])] = []
        for (path, role) in list {
            if let i = merged.firstIndex(where: { $0.path == path }) { merged[i].roles.append(role) } else { merged.append((path, [role])) }
        }
        return merged
    }

    mutating func checkFolders(_ rules: Rules, _ options: Options) {
        var unit: SystemdUnit?
        if let path = options.unitPath {
            do { unit = try SystemdUnit.load(path: path) } catch {
                add("systemd unit", .fail, "\(error)", remedy: "give --unit the path of ferry's unit file, e.g. /lib/systemd/system/ferry.service")
            }
        } else {
            unit = SystemdUnit.installed()
            if unit == nil {
                add("systemd unit", .warn, "no ferry.service is installed (looked in \(SystemdUnit.installedPaths.joined(separator: ", "))); the folders are not checked against its writable paths",
                    remedy: "install the ferry package, or pass --unit PATH (or FERRY_UNIT) to check against a unit file")
            }
        }
        if let unit {
            add("systemd unit", .ok, "\(unit.path)\(unit.dropIns.isEmpty ? "" : " with \(unit.dropIns.joined(separator: ", "))"): User=\(unit.user ?? "root"), ProtectSystem=\(unit.protectSystem)")
        }
        // Without a unit, the package's: it runs ferry as the system user `ferry`.
        var userName = unit.map { $0.user ?? "root" } ?? "ferry"
        var account = ServiceAccount(name: userName)
        if account == nil {
            let current = ServiceAccount.current
            add("service user", .warn, "user \(userName) does not exist on this machine; folders are checked for \(current.name) instead",
                remedy: "create it (the package does: `adduser --system --group \(userName)`) or correct User= in the unit")
            userName = current.name
            account = current
        }
        guard let account else { return }
        for folder in Self.folders(rules) {
            let subject = "folder \(folder.path)"
            let roles = folder.roles.joined(separator: ", ")
            var info = stat()
            guard lstat(folder.path, &info) == 0 else {
                if folder.roles == ["state_dir"], let unit, unit.managedDirectories.contains(folder.path) {
                    add(subject, .ok, "\(roles): systemd creates it at start (StateDirectory=)")
                    continue
                }
                add(subject, .fail, "\(roles): does not exist",
                    remedy: "create it for the service user: `install -d -o \(userName) -g \(account.groupName) -m 0750 \(folder.path)`")
                continue
            }
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                add(subject, .fail, "\(roles): is not a folder (ferry never follows symbolic links)",
                    remedy: "make \(folder.path) a real folder, or point the rules at the folder a link leads to")
                continue
            }
            if let refusal = account.writeRefusal(folder.path, info) {
                add(subject, .fail, "\(roles): not writable by user \(userName): \(refusal)",
                    remedy: "`chown \(userName):\(account.groupName) \(folder.path)` (or give the group write access, or an ACL: `setfacl -m u:\(userName):rwx \(folder.path)`)")
                continue
            }
            if let unit, let refusal = unit.writeRefusal(folder.path) {
                add(subject, .fail, "\(roles): outside the unit's writable paths: \(refusal)",
                    remedy: "add it with `systemctl edit ferry`: [Service] ReadWritePaths=\(folder.path) — then `systemctl restart ferry`")
                continue
            }
            add(subject, .ok, "\(roles): exists and is writable by \(userName)\(unit == nil ? "" : " inside the unit's writable paths")")
        }
    }

    // MARK: inotify

    /// Folders the watcher will add inotify watches for: each inotify-watched rule's folder and, for a
    /// recursive rule, every folder below it (not ferry's own `.ferry`).
    static func foldersToWatch(_ rules: Rules) -> Set<String> {
        var folders = Set<String>()
        for rule in rules.outbound {
            switch rule.watchMode {
            case .poll: continue
            case .auto: if Daemon.fileSystem(of: rule.watch)?.isRemote == true { continue }
            case .inotify: break
            }
            folders.insert(rule.watch)
            guard rule.recursive, let walker = FileManager.default.enumerator(atPath: rule.watch) else { continue }
            while let relative = walker.nextObject() as? String {
                if (relative as NSString).lastPathComponent == ".ferry" { walker.skipDescendants(); continue }
                if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeDirectory {
                    folders.insert(rule.watch + "/" + relative)
                }
            }
        }
        return folders
    }

    mutating func checkInotify(_ rules: Rules, _ options: Options) {
        func read(_ name: String) -> Int? {
            (try? String(contentsOfFile: options.inotifySettings + "/" + name, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let watches = read("max_user_watches"), let instances = read("max_user_instances") else {
            add("inotify", .warn, "cannot read \(options.inotifySettings)/max_user_watches and max_user_instances", remedy: "run doctor on the machine ferry runs on (Linux, /proc mounted)")
            return
        }
        let needed = Self.foldersToWatch(rules).count
        let message = "\(needed) folder(s) to watch; fs.inotify.max_user_watches \(watches), max_user_instances \(instances)"
        let suggested = max(524_288, needed * 2)
        if needed > watches {
            add("inotify", .fail, message + ": not enough watches, new files in the rest would be seen only by the periodic rescan",
                remedy: "`sysctl fs.inotify.max_user_watches=\(suggested)` and keep it in /etc/sysctl.d/60-ferry.conf")
        } else if needed * 2 > watches {
            add("inotify", .warn, message + ": more than half the watches this user may have (other programs of the user share them)",
                remedy: "`sysctl fs.inotify.max_user_watches=\(suggested)` and keep it in /etc/sysctl.d/60-ferry.conf")
        } else if instances < 8 {
            add("inotify", .warn, message + ": few inotify instances for the user (ferry needs one, other programs of the user share them)",
                remedy: "`sysctl fs.inotify.max_user_instances=128`")
        } else {
            add("inotify", .ok, message)
        }
    }

    // MARK: disk space

    mutating func checkDiskSpace(_ rules: Rules, _ options: Options) {
        var paths: [(String, String)] = [(rules.stateDir, "state_dir")]
        for rule in rules.outbound where rule.afterSend == .archive {
            paths.append((rule.archiveDir ?? rule.watch, "archive of rule \(rule.name)"))
        }
        for rule in rules.inbound { if let target = rule.downloadTo { paths.append((target, "download_to of rule \(rule.name)")) } }
        var seen: [UInt64: Int] = [:]
        var found: [(path: String, roles: [String], free: Int64, size: Int64)] = []
        for (path, role) in paths {
            var info = statvfs()
            guard statvfs(path, &info) == 0 else { continue }  // a missing folder is reported with the folders
            let fsid = UInt64(info.f_fsid)
            if let i = seen[fsid] { found[i].roles.append(role); continue }
            seen[fsid] = found.count
            found.append((path, [role], Int64(info.f_bavail) * Int64(info.f_frsize), Int64(info.f_blocks) * Int64(info.f_frsize)))
        }
        for fs in found {
            let message = "\(Self.size(fs.free)) free of \(Self.size(fs.size)) (\(fs.roles.joined(separator: ", ")))"
            if fs.free < options.freeSpaceWarning || (fs.size > 0 && fs.free * 20 < fs.size) {
                add("disk space \(fs.path)", .warn, message + ": below \(Self.size(options.freeSpaceWarning)) or 5 %",
                    remedy: "free space on that file system: when it is full the journal stops accepting files and downloads wait")
            } else {
                add("disk space \(fs.path)", .ok, message)
            }
        }
    }

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }

    // MARK: AWS

    mutating func checkAWS(_ rules: Rules, logger: Logger) async {
        var groups: [(settings: AWSSettings, connectors: [Connector])] = []
        for connector in rules.connectors {
            if let i = groups.firstIndex(where: { $0.settings == connector.aws }) { groups[i].connectors.append(connector) } else {
                groups.append((connector.aws, [connector]))
            }
        }
        var lastTest: ContinuousClock.Instant?
        var offsets: [TimeInterval] = []
        for group in groups {
            let subject = "credentials" + (groups.count > 1 ? " (profile \(group.settings.profile ?? "default chain"), \(group.settings.region))" : "")
            let client: AWSClient
            do { client = try AWSClient(configuration: Daemon.configuration(group.settings), logger: logger) } catch {
                add(subject, .fail, "\(error)", remedy: "correct the aws: settings in the rules file")
                continue
            }
            defer { client.shutdown() }
            do {
                let credentials = try await client.resolveCredentials()
                if let expiration = credentials.expiration {
                    let minutes = Int(expiration.timeIntervalSinceNow / 60)
                    add(subject, .ok, "from \(credentials.source); temporary, expire at \(ISO8601DateFormatter().string(from: expiration)) (in \(minutes) min) and are refreshed 5 min before")
                } else {
                    add(subject, .ok, "from \(credentials.source); long-term keys (no expiry)")
                }
            } catch {
                add(subject, .fail, "\(error)",
                    remedy: "give ferry's user working credentials: a profile (aws.profile, AWS_PROFILE) in the service user's ~/.aws/config, an instance or container role, or AWS_* variables in a drop-in; see docs/aws.md")
                for connector in group.connectors {
                    add("connector \(connector.name) (\(connector.connectorId))", .warn, "not checked: no usable credentials")
                }
                continue
            }
            let transfer = TransferClient(client: client)
            let s3 = S3Client(client: client)
            for connector in group.connectors {
                checks.append(await ConnectorProbe.describe(connector, transfer: transfer))
                if connector.type == .sftp {
                    if let lastTest { try? await Task.sleep(until: lastTest.advanced(by: Self.testConnectionInterval)) }
                    lastTest = .now
                }
                checks.append(await ConnectorProbe.testConnection(connector, transfer: transfer))
                if let staging = connector.staging { checks.append(await Self.probeStaging(staging, connector: connector, s3: s3)) }
            }
            if let offset = client.measuredClockOffset { offsets.append(offset) }
        }
        guard !groups.isEmpty else { return }
        guard let worst = offsets.max(by: { abs($0) < abs($1) }) else {
            add("clock", .warn, "not measured: no answer from AWS carried a Date header", remedy: "see the failures above; the clock is compared with AWS's on every answer")
            return
        }
        let message = "this machine's clock is \(Int(abs(worst).rounded())) s \(worst > 0 ? "behind" : "ahead of") AWS's (the Date header of its answers)"
        let remedy = "synchronise the clock (`timedatectl set-ntp true`, chrony or systemd-timesyncd): AWS refuses requests signed 15 minutes off"
        if abs(worst) > Self.clockFailure {
            add("clock", .fail, message, remedy: remedy)
        } else if abs(worst) > Self.clockWarning {
            add("clock", .warn, message, remedy: remedy)
        } else {
            add("clock", .ok, message)
        }
    }

    /// A real PutObject and DeleteObject of `.ferry-doctor-probe-<random>` under the staging prefix.
    static func probeStaging(_ staging: S3Location, connector: Connector, s3: S3Client) async -> DoctorCheck {
        let subject = "staging \(staging)"
        let key = staging.prefix + ".ferry-doctor-probe-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let local = NSTemporaryDirectory() + "/ferry-doctor-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: local, contents: Data("ferry doctor probe\n".utf8)) else {
            return DoctorCheck(subject, .warn, "not checked: cannot write a probe file in \(NSTemporaryDirectory())", remedy: "check TMPDIR")
        }
        defer { unlink(local) }
        let policy = "allow s3:PutObject and s3:DeleteObject on arn:aws:s3:::\(staging.bucket)/\(staging.prefix)* to the credentials in use (IAM policy and bucket policy)"
        do {
            _ = try await s3.putObject(bucket: staging.bucket, key: key, fileAt: local, contentType: "text/plain")
        } catch {
            return DoctorCheck(subject, .fail, "connector \(connector.name) cannot stage files: PutObject of \(key) failed: \(error)", remedy: policy)
        }
        do {
            try await s3.deleteObject(bucket: staging.bucket, key: key)
        } catch {
            return DoctorCheck(subject, .fail, "PutObject works but DeleteObject of the probe \(key) failed (it is left there): \(error)", remedy: policy)
        }
        return DoctorCheck(subject, .ok, "writable: PutObject and DeleteObject of a probe object succeeded")
    }
}

/// A user account as the kernel checks permissions for it.
struct ServiceAccount {
    var name: String
    var uid: uid_t
    var groupName: String
    var groups: Set<gid_t>

    init?(name: String) {
        guard let entry = getpwnam(name) else { return nil }
        self.name = name
        uid = entry.pointee.pw_uid
        let primary = entry.pointee.pw_gid
        groupName = getgrgid(primary).map { String(cString: $0.pointee.gr_name) } ?? String(primary)
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, primary, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, primary, &list, &count)
        }
        groups = Set(list.prefix(Int(max(count, 0)))).union([primary])
    }

    static var current: ServiceAccount {
        let name = getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "root"
        return ServiceAccount(name: name) ?? ServiceAccount(name: "root")!
    }

    /// Why this user cannot create files in `path` (mode bits of it and search permission on its
    /// parents; a read-only mount), or nil when it can. ACLs are not read: a refusal may be lifted by one.
    func writeRefusal(_ path: String, _ info: stat) -> String? {
        var fs = statvfs()
        if statvfs(path, &fs) == 0, fs.f_flag & UInt(ST_RDONLY) != 0 { return "its file system is mounted read-only" }
        func allows(_ info: stat, _ bits: mode_t) -> Bool {
            if uid == 0 { return true }
            let mode = info.st_mode
            if info.st_uid == uid { return mode & (bits << 6) == bits << 6 }
            if groups.contains(info.st_gid) { return mode & (bits << 3) == bits << 3 }
            return mode & bits == bits
        }
        var parent = (path as NSString).deletingLastPathComponent
        while !parent.isEmpty {
            var p = stat()
            if stat(parent, &p) == 0, !allows(p, 0o1) { return "it cannot enter \(parent) (mode \(String(p.st_mode & 0o7777, radix: 8)))" }
            if parent == "/" { break }
            parent = (parent as NSString).deletingLastPathComponent
        }
        guard allows(info, 0o3) else {
            return "owner \(info.st_uid):\(info.st_gid), mode \(String(info.st_mode & 0o7777, radix: 8))"
        }
        return nil
    }
}
