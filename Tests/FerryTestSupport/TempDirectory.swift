import Foundation

/// A fresh folder under the system temp dir, removed when the test ends.
public final class TempDirectory: @unchecked Sendable {
    /// The folder's absolute path.
    public let path: String

    /// Creates a new, empty folder named after `prefix`.
    public init(prefix: String = "ferry-test") throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw NSError(domain: "TempDirectory", code: Int(errno), userInfo: [NSLocalizedDescriptionKey: "mkdtemp failed: errno \(errno)"])
        }
        path = String(cString: made)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
