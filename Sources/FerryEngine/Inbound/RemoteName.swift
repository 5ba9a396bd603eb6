import Foundation

/// Decides whether a remote file name from a listing may be written locally and into S3.
///
/// A listing is data from the partner's server: a name such as `../../etc/cron.d/x` or one carrying a
/// newline (to forge log lines) must never become a path. Rather than repair such names, ferry refuses
/// them, so nothing is ever written anywhere the rule did not name.
public enum RemoteName {
    /// The file's name (its path below `remoteDirectory`) if it is safe, or why it is refused.
    public static func check(filePath: String, remoteDirectory: String, downloadTo: String?) -> Result<String, Refusal> {
        var directory = remoteDirectory
        while directory.hasSuffix("/") { directory.removeLast() }
        let prefix = directory + "/"
        guard filePath.hasPrefix(prefix) else {
            return .failure(Refusal(reason: "is not inside remote_directory_path \(remoteDirectory)"))
        }
        let name = String(filePath.dropFirst(prefix.count))
        if let reason = problem(with: name) { return .failure(Refusal(reason: reason)) }
        if let downloadTo, !staysInside(downloadTo, name: name) {
            return .failure(Refusal(reason: "would resolve outside download_to \(downloadTo)"))
        }
        return .success(name)
    }

    /// Why `name` is not a plain, single, printable file name; nil if it is one.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name == "." || name == ".." { return "is \(name)" }
        if name.contains("/") { return "contains /" }
        if name.contains("..") { return "contains .." }
        for scalar in name.unicodeScalars {
            if scalar.value == 0 { return "contains NUL" }
            // Cc covers C0, DEL and C1; the line and paragraph separators would split a log line too.
            if scalar.properties.generalCategory == .control || scalar.value == 0x2028 || scalar.value == 0x2029 {
                return "contains control character U+\(String(format: "%04X", scalar.value))"
            }
            // Cf: bidi overrides and isolates (U+202E makes "fdp.exe" read "exe.pdf"), zero-width spaces
            // and joiners, the BOM: a name that reads as another name.
            if scalar.properties.generalCategory == .format {
                return "contains invisible or bidi format character U+\(String(format: "%04X", scalar.value))"
            }
        }
        if name.utf8.count > 255 { return "is longer than 255 bytes, the longest file name Linux allows" }
        return nil
    }

    /// Whether `directory/name`, normalised, is a direct child of `directory`.
    static func staysInside(_ directory: String, name: String) -> Bool {
        let base = URL(fileURLWithPath: directory).standardizedFileURL
        let target = base.appendingPathComponent(name).standardizedFileURL
        return target.deletingLastPathComponent().path == base.path && target.lastPathComponent == name
    }

    /// A printable form of a name for logs and the journal: control and format (bidi, invisible)
    /// characters and NUL as `\u{…}`.
    public static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            let category = scalar.properties.generalCategory
            if category == .control || category == .format || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar == "\\" {
                out += scalar == "\\" ? "\\\\" : "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Why a name was refused.
    public struct Refusal: Error, Sendable, Equatable {
        public var reason: String
    }
}

/// A remote path as a dictionary key by its bytes. Swift's `String` equality is canonical equivalence, so
/// an NFC name and its NFD twin (two different files on the partner) would share one `String` key — and
/// one status. Everything the poller matches by path is keyed by this instead.
struct PathBytes: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ path: String) {
        bytes = Array(path.utf8)
    }
}
