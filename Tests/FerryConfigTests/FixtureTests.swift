import Foundation
import Testing
import FerryConfig

/// Each `NN-name.yaml` in Fixtures/ is a broken (or suspicious) rules file; `NN-name.expected` holds
/// exactly what `ferry validate` must print about it, one diagnostic per line, in order.
enum Fixtures {
    static var directory: URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
    }

    static var names: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }
}

@Test func thereAreAtLeastFortyFixtures() {
    #expect(Fixtures.names.count >= 40, "Fixtures/ holds \(Fixtures.names.count) rules files")
}

@Test(arguments: Fixtures.names)
func fixtureProducesExactlyTheExpectedDiagnostics(name: String) throws {
    let yaml = try Data(contentsOf: Fixtures.directory.appendingPathComponent("\(name).yaml"))
    let expected = try String(contentsOf: Fixtures.directory.appendingPathComponent("\(name).expected"), encoding: .utf8)
        .split(separator: "\n").map(String.init)
    let result = RulesLoader.load(contents: [UInt8](yaml), path: "\(name).yaml")
    #expect(!expected.isEmpty, "a fixture must expect at least one diagnostic")
    #expect(result.diagnostics.map(\.description) == expected)
    // Rules come back exactly when nothing is an error.
    let expectsError = expected.contains { $0.contains(": error: ") }
    #expect((result.rules == nil) == expectsError)
}

@Test func diagnosticsAreSortedByPosition() throws {
    for name in Fixtures.names {
        let yaml = try Data(contentsOf: Fixtures.directory.appendingPathComponent("\(name).yaml"))
        let positions = RulesLoader.load(contents: [UInt8](yaml), path: name).diagnostics.map { [$0.line, $0.column] }
        #expect(positions == positions.sorted { $0.lexicographicallyPrecedes($1) }, "\(name)")
    }
}
