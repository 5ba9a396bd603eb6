@testable import FerryEngine
import Foundation
import Testing

/// `ferry history --json` is written directly (JSONText) for speed; it must say exactly what JSONEncoder
/// said: every key, nulls included, the same values and dates.
struct HistoryJSONTests {
    static let report = HistoryReport(
        outbound: [
            .init(id: 1, rule: "invoices", path: "/srv/out/a \"b\"\\c\n.edi", size: 17, checksum: "mS2pAA==", state: "done",
                  detectedAt: Date(timeIntervalSince1970: 1_796_000_000.75), bucket: "staging", s3Key: "outbound/1/a.edi",
                  transferId: "t-1", submittedAt: Date(timeIntervalSince1970: 1_796_000_001), completedAt: Date(timeIntervalSince1970: 1_796_000_002),
                  finishedAt: Date(timeIntervalSince1970: 1_796_000_003), updatedAt: Date(timeIntervalSince1970: 1_796_000_003),
                  afterSend: "archived", archivePath: "/srv/out/.ferry/sent/2026-12-07/a.edi", heldPath: nil, attempts: 0,
                  lastError: nil, inDoubt: false, possibleDuplicates: 0),
            .init(id: 2, rule: "invoices", path: "/srv/out/Zürich\u{1}.edi", size: 0, checksum: nil, state: "in_doubt",
                  detectedAt: Date(timeIntervalSince1970: 0), bucket: nil, s3Key: nil, transferId: nil, submittedAt: nil,
                  completedAt: nil, finishedAt: nil, updatedAt: Date(timeIntervalSince1970: 86_399), afterSend: nil, archivePath: nil,
                  heldPath: "/srv/out/.ferry/in-doubt/Zürich.edi", attempts: 3, lastError: "HTTP504: gateway\ttimeout", inDoubt: true,
                  possibleDuplicates: 2),
        ],
        inbound: [
            .init(id: 7, rule: "reports", remotePath: "/out/r.csv", size: nil, remoteModified: "2026-12-07T04:00:00.000Z",
                  state: "done", listedAt: Date(timeIntervalSince1970: 1_796_000_000), bucket: "inbox", s3Key: "in/r.csv",
                  transferId: "t-9", placedPath: "/srv/in/r.csv", finishedAt: nil, updatedAt: Date(timeIntervalSince1970: 1_796_000_010),
                  afterRetrieve: "delete", attempts: 1, lastError: nil),
        ])

    static func parsed(_ text: String) throws -> NSDictionary {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? NSDictionary)
    }

    @Test func theFastWriterSaysWhatJSONEncoderSaid() throws {
        let fast = try Self.report.json()
        let reference = try Self.report.encoderJSON()
        #expect(try Self.parsed(fast) == Self.parsed(reference), "fast:\n\(fast)\nreference:\n\(reference)")
    }

    @Test func emptyHistoriesAreEmptyArrays() throws {
        let empty = HistoryReport(outbound: [], inbound: [])
        #expect(try Self.parsed(try empty.json()) == Self.parsed(try empty.encoderJSON()))
    }
}
