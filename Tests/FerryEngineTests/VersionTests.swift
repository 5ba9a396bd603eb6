import Foundation
import Testing
@testable import FerryEngine

@Test func versionIsSemantic() {
    let parts = FerryVersion.string.split(separator: ".")
    #expect(parts.count == 3)
    #expect(parts.allSatisfy { Int($0) != nil })
}
