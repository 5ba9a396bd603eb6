import Foundation
import Testing
@testable import FerryEngine

@Test func versionIsSemantic() {
    let parts = FerryVersion.string.split(separator: ".")
    #expect(parts.count == 3)
    #expect(parts.allSatisfy { Int($0) != nil })
}

/// `ferry version` and the Debian package must name the same release; build-deb refuses otherwise,
/// and this catches it earlier.
@Test func debianChangelogNamesTheSameVersion() throws {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    let changelog = try String(contentsOf: repository.appendingPathComponent("packaging/debian/changelog"), encoding: .utf8)
    // The first line is "ferry (VERSION) DISTRIBUTION; urgency=…": the newest entry.
    let firstLine = try #require(changelog.split(separator: "\n").first)
    let open = try #require(firstLine.firstIndex(of: "("))
    let close = try #require(firstLine.firstIndex(of: ")"))
    #expect(firstLine.hasPrefix("ferry ("))
    #expect(firstLine[firstLine.index(after: open) ..< close] == FerryVersion.string)
}
