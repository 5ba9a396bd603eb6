import Foundation
import Testing
@testable import FerryWatch

/// Issue #14, relays wait for a rescan: a complete file given a name in a watched folder with link()
/// (as ferry's inbound placement does, or `ln`, or any tool that writes a temporary file elsewhere and
/// links it in) raises only IN_CREATE: no IN_CLOSE_WRITE and no IN_MOVED_TO. It must be noticed at
/// once, not at the next reconciliation (600 s in these harnesses).
@Suite struct LinkedFileTests {
    @Test func aFileLinkedIntoAWatchedFolderIsReportedWithoutARescan() async throws {
        let watch = try WatchHarness { base in
            try FileManager.default.createDirectory(atPath: base + "/out", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: base + "/staging", withIntermediateDirectories: true)
        } rules: { [.test("out", $0 + "/out")] }
        try await watch.waitUntilScanned()
        // Written and closed outside the watched folder, then linked in: the watched folder sees IN_CREATE only.
        try watch.write("staging/invoice.edi", bytes: 300)
        #expect(link(watch.path("staging/invoice.edi"), watch.path("out/invoice.edi")) == 0)
        await watch.expectExactly(["invoice.edi"])
        #expect(watch.reports.first?.file.version.size == 300)
        await watch.stop()
    }
    // A created file still held open by its writer now also starts settling at IN_CREATE: the
    // open-for-writing check holds it, as OpenWriterTests (attribChangeOnAnOpenFileDoesNotReportIt) shows.
}
