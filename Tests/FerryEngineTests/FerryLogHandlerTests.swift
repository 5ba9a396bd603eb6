import Foundation
import Logging
import Testing
@testable import FerryEngine

/// A pipe the handler writes into, read back the way a terminal or journald would see the bytes.
final class CapturedOutput {
    let writeEnd: Int32
    private let readEnd: Int32

    init() throws {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        readEnd = ends[0]
        writeEnd = ends[1]
    }

    /// Closes the write end and returns every line written.
    func lines() -> [String] {
        close(writeEnd)
        let data = FileHandle(fileDescriptor: readEnd, closeOnDealloc: true).readDataToEndOfFile()
        return String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .dropLast().map(String.init)
    }
}

/// 2026-11-27T03:00:00.250Z, so timestamps are predictable.
private let fixedTime = Date(timeIntervalSince1970: 1_795_748_400.25)

private func logger(_ output: CapturedOutput, format: FerryLogHandler.Format = .text,
                    journald: Bool = false, level: Logger.Level = .info) -> Logger {
    Logger(label: "ferry.test") { label in
        FerryLogHandler(label: label, format: format, journald: journald, logLevel: level,
                        fileDescriptor: output.writeEnd, clock: { fixedTime })
    }
}

@Suite struct FerryLogHandlerTests {
    @Test func textLineHasTimeLevelRuleFirstThenMessage() throws {
        let output = try CapturedOutput()
        let log = logger(output)
        log.info("sent", metadata: ["file.path": "/srv/ferry/outbox/invoices/a.edi", "rule": "invoices",
                                    "transfer.id": "t-1", "batch.size": "3"])
        log.debug("not at info")
        #expect(output.lines() == [
            "2026-11-27T03:00:00Z info rule=invoices file.path=/srv/ferry/outbox/invoices/a.edi transfer.id=t-1 batch.size=3 sent",
        ])
    }

    @Test func nestedMetadataBecomesDottedKeysAndAwkwardValuesAreQuoted() throws {
        let output = try CapturedOutput()
        var log = logger(output)
        log[metadataKey: "rule"] = "reports"
        log.warning("listing failed\nretrying", metadata: [
            "file": ["path": "/srv/ferry/inbox/a b.csv", "size": "12"],
            "remote.files": ["x.csv", "y.csv"],
            "note": "say \"hi\"",
        ])
        #expect(output.lines() == [
            #"2026-11-27T03:00:00Z warning rule=reports file.path="/srv/ferry/inbox/a b.csv" file.size=12 note="say \"hi\"" remote.files=[x.csv,y.csv] listing failed\nretrying"#,
        ])
    }

    @Test func journaldLinesCarryTheSyslogPriorityAndNoTimestamp() throws {
        let output = try CapturedOutput()
        let log = logger(output, journald: true, level: .trace)
        log.trace("t")
        log.debug("d")
        log.info("i", metadata: ["rule": "invoices"])
        log.notice("n")
        log.warning("w")
        log.error("e")
        log.critical("c")
        #expect(output.lines() == [
            "<7>trace t", "<7>debug d", "<6>info rule=invoices i", "<5>notice n", "<4>warning w", "<3>error e", "<2>critical c",
        ])
    }

    @Test func journalStreamCountsOnlyWhenStandardErrorIsThatStream() throws {
        let output = try CapturedOutput()
        defer { _ = output.lines() }
        var info = stat()
        #expect(fstat(output.writeEnd, &info) == 0)
        let matching = "\(info.st_dev):\(info.st_ino)"
        #expect(FerryLogHandler.isJournalStream(environment: ["JOURNAL_STREAM": matching], fileDescriptor: output.writeEnd))
        #expect(!FerryLogHandler.isJournalStream(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"],
                                                 fileDescriptor: output.writeEnd))
        #expect(!FerryLogHandler.isJournalStream(environment: ["JOURNAL_STREAM": "journal"], fileDescriptor: output.writeEnd))
        #expect(!FerryLogHandler.isJournalStream(environment: [:], fileDescriptor: output.writeEnd))
    }

    @Test func jsonLinesParseAndCarryFlattenedMetadata() throws {
        let output = try CapturedOutput()
        let log = logger(output, format: .json)
        struct UploadFailed: Error, CustomStringConvertible { var description: String { "S3 answered 503 SlowDown" } }
        log.error("upload \"failed\"", error: UploadFailed(),
                  metadata: ["rule": "invoices", "file": ["path": "/srv/ferry/outbox/invoices/ä.edi"],
                             "message": "shadowed", "attempt": "2"])
        let lines = output.lines()
        #expect(lines.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: String])
        #expect(object == [
            "time": "2026-11-27T03:00:00.250Z", "level": "error", "logger": "ferry.test",
            "message": "upload \"failed\"", "rule": "invoices", "file.path": "/srv/ferry/outbox/invoices/ä.edi",
            "metadata.message": "shadowed", "attempt": "2", "error": "S3 answered 503 SlowDown",
        ])
        #expect(lines[0].hasPrefix(#"{"time":"2026-11-27T03:00:00.250Z","level":"error","logger":"ferry.test","message":"#))
    }

    @Test func jsonUnderJournaldKeepsThePriorityPrefix() throws {
        let output = try CapturedOutput()
        logger(output, format: .json, journald: true).notice("started")
        let line = try #require(output.lines().first)
        #expect(line.hasPrefix("<5>{"))
        #expect(try JSONSerialization.jsonObject(with: Data(line.dropFirst(3).utf8)) is [String: String])
    }

    @Test func secretsNeverReachTheOutput() throws {
        let secrets = ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLESESSION",
                       "0123abcd0123abcd", "Bearer-less-value", "hunter2", "deadbeefcafe"]
        for format in FerryLogHandler.Format.allCases {
            let output = try CapturedOutput()
            let log = logger(output, format: format)
            log.info("presigned https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=\(secrets[2])&x=1",
                     metadata: [
                        "aws.secret_access_key": .string(secrets[0]),
                        "aws": ["session_token": .string(secrets[1])],
                        "http.Authorization": .string("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, Signature=\(secrets[2])"),
                        "http.headers": .string("Authorization: AWS4-HMAC-SHA256 Credential=AKID, Signature=\(secrets[5])\nHost: s3"),
                        "aws.response": .string(#"{"SecretAccessKey": "\#(secrets[0])", "Expiration": "soon"}"#),
                        "list": [.string("password=\(secrets[4])")],
                        "sftp.user": "acme",
                     ])
            let text = output.lines().joined(separator: "\n")
            for secret in secrets {
                #expect(!text.contains(secret), "\(format) output leaked \(secret): \(text)")
            }
            #expect(text.contains("acme") && text.contains("AKIDEXAMPLE") && text.contains("Expiration"),
                    "\(format) output lost what is not secret: \(text)")
            #expect(text.contains("<redacted>"))
        }
    }

    @Test func factoryWritesAtTheRequestedLevel() throws {
        let handler = FerryLogHandler.factory(format: .json, logLevel: .debug, environment: [:])("ferry.engine")
        #expect(handler.logLevel == .debug)
    }
}
