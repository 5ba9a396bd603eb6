import Foundation
import FerryTestSupport
import Testing
@testable import FerryEngine

/// `ferry doctor` reads the unit's sandbox as systemd applies it: drop-ins add to lists, an empty
/// assignment clears one, the most specific path wins.
struct SystemdUnitTests {
    @Test func dropInsExtendAndResetTheWritablePaths() throws {
        let dir = try TempDirectory(prefix: "ferry-unit")
        let unit = dir.path + "/ferry.service"
        try "[Unit]\nReadWritePaths=/ignored\n[Service]\nUser=ferry\nProtectSystem=strict\nProtectHome=yes\nReadWritePaths=-/srv/ferry /var/lib/prometheus\nStateDirectory=ferry\n"
            .write(toFile: unit, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: unit + ".d", withIntermediateDirectories: true)
        try "[Service]\nReadWritePaths=/data/edi\nReadOnlyPaths=/data/edi/archive\n".write(toFile: unit + ".d/10-edi.conf", atomically: true, encoding: .utf8)
        let loaded = try SystemdUnit.load(path: unit)
        #expect(loaded.user == "ferry" && loaded.dropIns == [unit + ".d/10-edi.conf"])
        #expect(loaded.writeRefusal("/srv/ferry/out") == nil)
        #expect(loaded.writeRefusal("/srv/ferrymore")?.contains("ProtectSystem=strict") == true, "a prefix of a name is not its folder")
        #expect(loaded.writeRefusal("/var/lib/ferry") == nil, "StateDirectory=")
        #expect(loaded.writeRefusal("/data/edi/in") == nil)
        #expect(loaded.writeRefusal("/data/edi/archive/2026")?.contains("ReadOnlyPaths=") == true)
        #expect(loaded.writeRefusal("/ignored") != nil, "only [Service] counts")

        try "[Service]\nReadWritePaths=\nReadWritePaths=/home/edi\n".write(toFile: unit + ".d/20-reset.conf", atomically: true, encoding: .utf8)
        let reset = try SystemdUnit.load(path: unit)
        #expect(reset.readWritePaths == ["/home/edi"])
        #expect(reset.writeRefusal("/srv/ferry/out")?.contains("ProtectSystem=strict") == true)
        #expect(reset.writeRefusal("/home/edi/x") == nil, "an explicit ReadWritePaths= wins over ProtectHome=")
        #expect(reset.writeRefusal("/home/other")?.contains("ProtectHome=yes") == true)
    }

    @Test func withoutProtectSystemStrictOnlySystemFoldersAreReadOnly() {
        var unit = SystemdUnit(path: "x", dropIns: [], user: nil, protectSystem: "no", protectHome: "no",
                               readWritePaths: [], readOnlyPaths: [], managedDirectories: [])
        unit.apply("[Service]\nProtectSystem=full\n")
        #expect(unit.writeRefusal("/srv/anything") == nil)
        #expect(unit.writeRefusal("/etc/ferry")?.contains("ProtectSystem=full") == true)
    }
}
