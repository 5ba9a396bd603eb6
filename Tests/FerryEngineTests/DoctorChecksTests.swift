import FerryConfig
import FerryTestSupport
import Foundation
import Testing
@testable import FerryEngine

/// `ferry doctor`'s inotify and disk-space checks against real folders and a real, nearly full file
/// system. The inotify limits are read from a folder standing in for /proc/sys/fs/inotify: lowering the
/// machine's own limit would break every other inotify user on it for the test's duration.
@Suite(.serialized) struct DoctorChecksTests {
    static func rules(stateDir: String, watch: String, recursive: Bool = true) throws -> Rules {
        let yaml = """
            version: 1
            state_dir: \(stateDir)
            aws: { region: us-east-1 }
            connectors:
              acme: { type: sftp, connector_id: c-0123456789abcdef0, staging: s3://acme-staging/outbound/ }
            outbound:
              - { name: invoices, watch: \(watch), connector: acme, recursive: \(recursive), watch_mode: inotify }
            """
        let loaded = RulesLoader.load(yaml: yaml, path: "rules.yaml")
        return try #require(loaded.rules, "\(loaded.diagnostics)")
    }

    static func limits(_ dir: String, watches: Int, instances: Int) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "\(watches)\n".write(toFile: dir + "/max_user_watches", atomically: true, encoding: .utf8)
        try "\(instances)\n".write(toFile: dir + "/max_user_instances", atomically: true, encoding: .utf8)
    }

    @Test func inotifyLimitsAreJudgedAgainstTheFoldersToWatch() throws {
        let dir = try TempDirectory(prefix: "ferry-doctor-inotify")
        let watch = dir.path + "/out"
        // 1 + 6 + 6 × 5 = 37 folders; `.ferry` and what is below it are ferry's own and never watched.
        for year in 0..<6 {
            for month in 0..<5 {
                try FileManager.default.createDirectory(atPath: "\(watch)/\(2020 + year)/\(month)", withIntermediateDirectories: true)
            }
        }
        try FileManager.default.createDirectory(atPath: watch + "/.ferry/sent/2026-12-07", withIntermediateDirectories: true)
        let rules = try Self.rules(stateDir: dir.path + "/state", watch: watch)
        var options = DoctorReport.Options(configPath: "rules.yaml")
        options.inotifySettings = dir.path + "/inotify"
        func check(watches: Int, instances: Int) throws -> DoctorCheck {
            try Self.limits(options.inotifySettings, watches: watches, instances: instances)
            var report = DoctorReport(configPath: "rules.yaml", checks: [])
            report.checkInotify(rules, options)
            return try #require(report.checks.first { $0.subject == "inotify" })
        }

        var found = try check(watches: 20, instances: 128)
        #expect(found.level == .fail)
        #expect(found.message == "37 folder(s) to watch; fs.inotify.max_user_watches 20, max_user_instances 128: not enough watches, new files in the rest would be seen only by the periodic rescan", "\(found.message)")
        #expect(found.remedy == "`sysctl fs.inotify.max_user_watches=524288` and keep it in /etc/sysctl.d/60-ferry.conf")
        found = try check(watches: 37, instances: 128)
        #expect(found.level == .warn, "exactly enough, but other programs of the user share them")
        #expect(found.message.hasSuffix("more than half the watches this user may have (other programs of the user share them)"))
        found = try check(watches: 74, instances: 4)
        #expect(found.level == .warn)
        #expect(found.remedy == "`sysctl fs.inotify.max_user_instances=128`")
        found = try check(watches: 74, instances: 128)
        #expect(found.level == .ok && found.remedy == nil)

        // A rule that is not recursive watches its folder alone.
        let flat = try Self.rules(stateDir: dir.path + "/state", watch: watch, recursive: false)
        try Self.limits(options.inotifySettings, watches: 20, instances: 128)
        var report = DoctorReport(configPath: "rules.yaml", checks: [])
        report.checkInotify(flat, options)
        #expect(report.checks.first?.level == .ok && report.checks.first?.message.hasPrefix("1 folder(s) to watch") == true)

        try FileManager.default.removeItem(atPath: options.inotifySettings + "/max_user_instances")
        report = DoctorReport(configPath: "rules.yaml", checks: [])
        report.checkInotify(rules, options)
        #expect(report.checks.first?.level == .warn && report.checks.first?.message.contains("cannot read") == true)
    }

    /// A real 8 MiB tmpfs holding state_dir and the archive: nearly full, doctor warns naming the file
    /// system, both roles and the remedy; with room again it is ok. Needs root (mount).
    @Test func lowDiskSpaceIsAWarningWithItsRemedy() throws {
        let dir = try TempDirectory(prefix: "ferry-doctor-disk")
        let mount = dir.path + "/small"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let mounted = Process()
        mounted.executableURL = URL(fileURLWithPath: "/bin/mount")
        mounted.arguments = ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mount]
        try mounted.run()
        mounted.waitUntilExit()
        try #require(mounted.terminationStatus == 0, "cannot mount a tmpfs at \(mount): this test needs root and mount(8) — run it as root")
        defer {
            let unmount = Process()
            unmount.executableURL = URL(fileURLWithPath: "/bin/umount")
            unmount.arguments = ["-l", mount]
            try? unmount.run()
            unmount.waitUntilExit()
        }
        try FileManager.default.createDirectory(atPath: mount + "/state", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: mount + "/out", withIntermediateDirectories: true)
        let rules = try Self.rules(stateDir: mount + "/state", watch: mount + "/out")
        var options = DoctorReport.Options(configPath: "rules.yaml")
        // Judged by the 5 % rule alone: the 1 GiB floor would call any small file system low.
        options.freeSpaceWarning = 0
        func check() throws -> DoctorCheck {
            var report = DoctorReport(configPath: "rules.yaml", checks: [])
            report.checkDiskSpace(rules, options)
            #expect(report.checks.count == 1, "one line per file system: \(report.checks)")
            return try #require(report.checks.first)
        }
        var found = try check()
        #expect(found.level == .ok, "\(found)")
        #expect(found.subject == "disk space \(mount)/state")
        #expect(found.message.hasSuffix("free of 8.0 MiB (state_dir, archive of rule invoices)"), "\(found.message)")

        // 7.75 MiB of 8: about 3 % left.
        try Data(count: 7936 << 10).write(to: URL(fileURLWithPath: mount + "/state/filler"))
        found = try check()
        #expect(found.level == .warn, "\(found)")
        #expect(found.message.contains("free of 8.0 MiB (state_dir, archive of rule invoices): below 0 B or 5 %"), "\(found.message)")
        #expect(found.remedy == "free space on that file system: when it is full the journal stops accepting files and downloads wait")

        try FileManager.default.removeItem(atPath: mount + "/state/filler")
        #expect(try check().level == .ok)
    }
}
