import Foundation
import FerryTestSupport
import Testing

/// `ferry history` after a real journey through the daemon and the emulator: every outbound field holds
/// what happened (the S3 key the emulator stored, the TransferId it answered, the file's CRC-32C, the
/// archive path on disk), not merely what a hand-written journal was given.
struct HistoryLiveTests {
    /// CRC-32C (Castagnoli, reflected, as S3's `x-amz-checksum-crc32c`) in base64 of its big-endian bytes,
    /// computed here bit by bit so the check does not share code with what it checks.
    static func crc32cBase64(_ data: Data) -> String {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        crc ^= 0xFFFF_FFFF
        return Data([UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]).base64EncodedString()
    }

    @Test func crc32cOfTheCheckValue() {
        // RFC 3720's check value for "123456789": 0xE3069283.
        #expect(Self.crc32cBase64(Data("123456789".utf8)) == Data([0xE3, 0x06, 0x92, 0x83]).base64EncodedString())
    }

    @Test func aSentFileHasEveryFieldFromItsRealJourney() async throws {
        let scenario = try OutboundScenario(batchMaxWait: "200ms")
        try scenario.start()
        let data = Data("UNB+UNOC:3+ACME+PARTNER+261201:0800+4711'\n".utf8)
        let path = scenario.outbox + "/invoice-4711.edi"
        let before = Date(timeIntervalSinceNow: -1)
        try data.write(to: URL(fileURLWithPath: path))
        #expect(await eventually(timeout: 60) { scenario.partnerFiles()["invoice-4711.edi"] == data },
                "log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        var record: [String: Any] = [:]
        let done = await eventually(timeout: 30) {
            guard let result = try? FerryBinary.run(["history", "invoice-4711.edi", "--json", "--config", scenario.configPath]),
                  let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                  let first = (object["outbound"] as? [[String: Any]])?.first else { return false }
            record = first
            return first["state"] as? String == "done"
        }
        #expect(done, "\(record)")
        #expect(await scenario.daemon?.stop() == 0)

        let put = try #require(try scenario.emulator.requestLog().last { $0.operation == "PutObject" && $0.status == 200 })
        let start = try #require(try scenario.emulator.requestLog().last { $0.operation == "StartFileTransfer" && $0.status == 200 })
        let iso = { (value: Any?) in (value as? String).flatMap { ISO8601DateFormatter().date(from: $0) } }
        #expect(record["rule"] as? String == "invoices")
        #expect(record["path"] as? String == path)
        #expect(record["size"] as? Int == data.count)
        #expect(record["checksum"] as? String == Self.crc32cBase64(data), "the file's CRC-32C, as S3 verified it: \(record["checksum"] ?? "")")
        #expect(record["state"] as? String == "done")
        #expect(record["bucket"] as? String == scenario.emulator.stagingBucket)
        #expect(record["s3_key"] as? String == put.key, "the key the emulator stored")
        #expect(record["transfer_id"] as? String == start.transferId, "the TransferId StartFileTransfer answered")
        let detected = try #require(iso(record["detected_at"]))
        let submitted = try #require(iso(record["submitted_at"]))
        let completed = try #require(iso(record["completed_at"]))
        let finished = try #require(iso(record["finished_at"]))
        // ISO 8601 in whole seconds: the order holds to the second.
        #expect(before.addingTimeInterval(-1) <= detected && detected <= submitted && submitted <= completed && completed <= finished
                && finished <= Date().addingTimeInterval(1), "\(record)")
        #expect(iso(record["updated_at"]) == finished)
        #expect(record["after_send"] as? String == "archived")
        let archive = try #require(record["archive_path"] as? String)
        #expect(FileManager.default.contents(atPath: archive) == data, "the archive path holds the sent bytes: \(archive)")
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(record["held_path"] is NSNull)
        #expect(record["attempts"] as? Int == 0)
        #expect(record["last_error"] is NSNull)
        #expect(record["in_doubt"] as? Bool == false)
        #expect(record["possible_duplicates"] as? Int == 0)
        #expect(Set(record.keys) == ExplainCommandTests.journalKeys, "the same record explain shows")
    }
}
