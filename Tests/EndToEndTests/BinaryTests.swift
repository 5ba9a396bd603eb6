import Foundation
import Testing
import FerryTestSupport

@Test func versionCommandPrintsVersion() throws {
    let result = try FerryBinary.run(["version"])
    #expect(result.status == 0)
    #expect(result.stdout.hasPrefix("ferry "))
}
