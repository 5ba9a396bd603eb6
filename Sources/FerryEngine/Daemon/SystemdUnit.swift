import Foundation

/// What `ferry doctor` needs of the installed systemd unit: the user it runs as and the paths it may
/// write under its sandbox (`ProtectSystem=`, `ReadWritePaths=`, `StateDirectory=`, …), with its
/// drop-ins (`<unit>.d/*.conf`, where operators add `ReadWritePaths=` through `systemctl edit ferry`).
public struct SystemdUnit: Sendable, Equatable {
    /// The unit file read, and the drop-ins that were applied to it.
    public var path: String
    public var dropIns: [String]
    /// `User=`; nil runs as root.
    public var user: String?
    /// `ProtectSystem=`: no, yes, full or strict.
    public var protectSystem: String
    /// `ProtectHome=`: no, yes, read-only or tmpfs.
    public var protectHome: String
    public var readWritePaths: [String]
    public var readOnlyPaths: [String]
    /// `/var/lib/X` for `StateDirectory=X`, and likewise for the cache, logs and runtime directories.
    public var managedDirectories: [String]

    /// Where systemd finds ferry's unit, most specific first.
    public static let installedPaths = ["/etc/systemd/system/ferry.service", "/run/systemd/system/ferry.service",
                                        "/lib/systemd/system/ferry.service", "/usr/lib/systemd/system/ferry.service"]

    /// The installed unit, or nil when none is.
    public static func installed() -> SystemdUnit? {
        installedPaths.first { FileManager.default.fileExists(atPath: $0) }.flatMap { try? load(path: $0) }
    }

    /// Reads `path` and the drop-ins of the same name in systemd's directories and next to it.
    public static func load(path: String) throws -> SystemdUnit {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DoctorError(message: "cannot read the systemd unit \(path)")
        }
        let name = (path as NSString).lastPathComponent
        var dropInDirectories = [path + ".d"]
        for directory in ["/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"] {
            let candidate = directory + "/" + name + ".d"
            if !dropInDirectories.contains(candidate) { dropInDirectories.append(candidate) }
        }
        var dropIns: [String] = []
        for directory in dropInDirectories {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".conf") }.sorted()
            dropIns += files.map { directory + "/" + $0 }
        }
        var unit = SystemdUnit(path: path, dropIns: dropIns, user: nil, protectSystem: "no", protectHome: "no",
                               readWritePaths: [], readOnlyPaths: [], managedDirectories: [])
        unit.apply(text)
        for dropIn in dropIns { if let more = try? String(contentsOfFile: dropIn, encoding: .utf8) { unit.apply(more) } }
        return unit
    }

    /// Applies one file's `[Service]` settings; later files add to lists, and an empty assignment clears one, as in systemd.
    mutating func apply(_ text: String) {
        var inService = false
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") { inService = line == "[Service]"; continue }
            guard inService, !line.hasPrefix("#"), !line.hasPrefix(";"), let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            // "-" (ignore if missing) and "+" (relative to the root directory) prefixes do not change the path.
            let paths = value.split(separator: " ").map { String($0.drop { $0 == "-" || $0 == "+" }) }
            switch key {
            case "User": user = value.isEmpty ? nil : value
            case "ProtectSystem": protectSystem = value == "true" ? "yes" : (value == "false" ? "no" : value)
            case "ProtectHome": protectHome = value == "true" ? "yes" : (value == "false" ? "no" : value)
            case "ReadWritePaths": if value.isEmpty { readWritePaths = [] } else { readWritePaths += paths }
            case "ReadOnlyPaths", "InaccessiblePaths": if value.isEmpty { readOnlyPaths = [] } else { readOnlyPaths += paths }
            case "StateDirectory": managedDirectories += paths.map { "/var/lib/" + $0 }
            case "CacheDirectory": managedDirectories += paths.map { "/var/cache/" + $0 }
            case "LogsDirectory": managedDirectories += paths.map { "/var/log/" + $0 }
            case "RuntimeDirectory": managedDirectories += paths.map { "/run/" + $0 }
            default: break
            }
        }
    }

    /// Whether the service may write `path` under this unit's sandbox; nil when it may, else why not.
    public func writeRefusal(_ path: String) -> String? {
        func under(_ base: String) -> Bool { path == base || path.hasPrefix(base.hasSuffix("/") ? base : base + "/") }
        // The most specific setting wins, as with systemd's mount order: a longer matching prefix.
        let writable = (readWritePaths + managedDirectories).filter(under).map(\.count).max() ?? -1
        let readOnly = readOnlyPaths.filter(under).map(\.count).max() ?? -1
        if readOnly > writable { return "ReadOnlyPaths= or InaccessiblePaths= covers it" }
        if writable >= 0 { return nil }
        if protectHome != "no", ["/home", "/root", "/run/user"].contains(where: under) {
            return "ProtectHome=\(protectHome) hides or protects it"
        }
        switch protectSystem {
        case "strict": return "ProtectSystem=strict makes everything read-only except ReadWritePaths= (\(readWritePaths.joined(separator: " ")))"
        case "full" where ["/usr", "/boot", "/efi", "/etc"].contains(where: under): return "ProtectSystem=full makes /usr, /boot and /etc read-only"
        case "yes" where ["/usr", "/boot", "/efi"].contains(where: under): return "ProtectSystem=yes makes /usr and /boot read-only"
        default: return nil
        }
    }
}

/// A problem running `ferry doctor` itself (not one of the findings it reports).
public struct DoctorError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}
