import FerryConfig
@testable import FerryEngine
import FerryStore
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// The issue's must-shows 1–5, against the emulator and its OpenSSH partner (the partner's disk is
/// written directly; ferry sees it only through StartDirectoryListing and the connector).
@Suite(.serialized) struct InboundPollerTests {
    @Test func filesArriveOnceOverFivePollsAndAgainWhenChanged() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/reports")
        let a = randomData(3000), b = randomData(17)
        try h.putOnPartner("/out/reports/a.csv", a)
        try h.putOnPartner("/out/reports/b.csv", b)
        let journal = try h.openJournal()
        let rule = try h.rule(name: "reports", remote: "/out/reports", extra: "min_age: 0s")
        let poller = h.poller([rule], journal: journal)
        for poll in 1...5 {
            let report = try #require(await poller.pollNow(rule: "reports"))
            #expect(report.error == nil)
            #expect(report.listed == 2)
            #expect(report.requested == (poll == 1 ? 2 : 0), "poll \(poll)")
        }
        #expect(try h.operations("GetObject").filter { $0.key?.hasPrefix("reports/") == true }.count == 2, "each file downloaded once")
        #expect(try await h.object("reports/a.csv") == a)
        #expect(try await h.object("reports/b.csv") == b)
        #expect(try h.inboxNames() == ["a.csv", "b.csv"])
        #expect(try h.inboxFile("a.csv") == a)
        #expect(try h.inboxFile("b.csv") == b)
        #expect(try h.operations("StartFileTransfer").count == 1, "one retrieval over five polls")
        #expect(try h.operations("StartDirectoryListing").count == 6, "five polls, and the second look at the two new files")
        #expect(h.paced.count == 7, "every StartDirectoryListing and StartFileTransfer waits for the connector's rate limiter")
        #expect(try await h.s3.listObjectsV2(bucket: h.emulator.inboundBucket, prefix: ".ferry-listings/").isEmpty,
                "listing objects are deleted after use")
        #expect(h.partnerHas("/out/reports/a.csv"), "after_retrieve defaults to keep")

        // The partner rewrites a.csv: a new version, retrieved again and placed beside the first copy.
        let changed = randomData(3001)
        try h.putOnPartner("/out/reports/a.csv", changed)
        let report = try #require(await poller.pollNow(rule: "reports"))
        #expect(report.requested == 1)
        #expect(try await h.object("reports/a.csv") == changed)
        #expect(try h.inboxNames() == ["a (1).csv", "a.csv", "b.csv"])
        #expect(try h.inboxFile("a (1).csv") == changed)
        #expect(try h.inboxFile("a.csv") == a)
        #expect(try journal.inboundCounts()["reports"]?[.done] == 3)
    }

    @Test func afterRetrieveDeleteAndMoveTidyThePartnerOnlyAfterTheFileIsSafe() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/del")
        try h.partnerFolder("/out/mv/archive")
        let x = randomData(100), y = randomData(200)
        try h.putOnPartner("/out/del/x.txt", x)
        try h.putOnPartner("/out/mv/y.txt", y)
        let journal = try h.openJournal()
        let deleting = try h.rule(name: "del", remote: "/out/del", extra: "min_age: 0s\nafter_retrieve: delete")
        let moving = try h.rule(name: "mv", remote: "/out/mv", extra: "min_age: 0s\nafter_retrieve: move:/out/mv/archive")
        let poller = h.poller([deleting, moving], journal: journal)
        #expect(await poller.pollNow(rule: "del")?.downloaded == 1)
        #expect(await poller.pollNow(rule: "mv")?.downloaded == 1)
        #expect(try h.inboxFile("x.txt") == x)
        #expect(try h.inboxFile("y.txt") == y)
        #expect(try await h.object("del/x.txt") == x)
        #expect(try await h.object("mv/y.txt") == y)
        try await h.eventuallyOnPartner { !h.partnerHas("/out/del/x.txt") && h.partnerHas("/out/mv/archive/y.txt") && !h.partnerHas("/out/mv/y.txt") }
        // An answered delete or move is done once the next poll's listing shows it happened (the call
        // answers before the partner acts). The moved file sits in a sub-folder: listings are one level
        // deep, so it is not retrieved again.
        #expect(await poller.pollNow(rule: "del")?.finished == 1)
        let again = await poller.pollNow(rule: "mv")
        #expect(again?.finished == 1)
        #expect(again?.requested == 0)
        #expect(try h.inboxNames() == ["x.txt", "y.txt"])
    }

    @Test func includeExcludeMinAgeAndAFileStillGrowing() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/mixed")
        let old = Date().addingTimeInterval(-600)
        for name in ["a.csv", "b.txt", "draft-c.csv", "d.csv.part", ".e.csv"] {
            try h.putOnPartner("/out/mixed/\(name)", randomData(10))
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: folder + "/" + name)
        }
        try h.putOnPartner("/out/mixed/growing.csv", randomData(100))
        let journal = try h.openJournal()
        let rule = try h.rule(name: "mixed", remote: "/out/mixed", extra: "include: [\"*.csv\"]\nexclude: [\"draft-*\"]\nmin_age: 1m")
        let poller = h.poller([rule], journal: journal)
        var report = try #require(await poller.pollNow(rule: "mixed"))
        #expect(report.error == nil)
        #expect(report.requested == 1)
        #expect(report.tooYoung == 1)
        #expect(report.filteredOut == 4)
        #expect(try h.inboxNames() == ["a.csv"])
        // The partner's writer keeps appending: every poll sees a fresh modification time.
        var content = try Data(contentsOf: URL(fileURLWithPath: folder + "/growing.csv"))
        for _ in 0..<2 {
            content += randomData(100)
            try h.putOnPartner("/out/mixed/growing.csv", content)
            report = try #require(await poller.pollNow(rule: "mixed"))
            #expect(report.requested == 0)
            #expect(report.tooYoung == 1)
        }
        // The writer stopped a while ago (min_age has passed since the last change): retrieved, whole.
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-61)], ofItemAtPath: folder + "/growing.csv")
        report = try #require(await poller.pollNow(rule: "mixed"))
        #expect(report.requested == 1)
        #expect(try h.inboxNames() == ["a.csv", "growing.csv"])
        #expect(try h.inboxFile("growing.csv") == content)
        #expect(try await h.object("mixed/b.txt") == nil)
    }

    @Test func aListingOf2500FilesIsTruncatedAndDrainedOverPolls() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/bulk")
        var expected: [String: Data] = [:]
        for i in 0..<2500 {
            let name = String(format: "f%04d.dat", i)
            let data = Data("file \(i)\n".utf8)
            expected[name] = data
            try h.putOnPartner("/out/bulk/\(name)", data)
        }
        let journal = try h.openJournal()
        let rule = try h.rule(name: "bulk", remote: "/out/bulk", extra: "min_age: 0s\nafter_retrieve: delete\nmax_items: 1000", downloadTo: nil)
        let poller = h.poller([rule], journal: journal)
        var reports: [PollReport] = []
        let cpuBefore = processCPUSeconds()
        let wallBefore = ContinuousClock.now
        for _ in 0..<4 {
            reports.append(try #require(await poller.pollNow(rule: "bulk")))
        }
        let cpu = processCPUSeconds() - cpuBefore
        // ferry's side only: the emulator is another process. Wall time measures the emulator (moto, sshd).
        print("inbound 2,500 files: \(ContinuousClock.now - wallBefore) wall, \(String(format: "%.2f", cpu * 1000 / 2500)) ms CPU per file in ferry's process")
        #expect(reports.map(\.error) == [nil, nil, nil, nil])
        #expect(reports.map(\.truncated) == [true, true, false, false])
        #expect(reports.map(\.requested) == [1000, 1000, 500, 0])
        #expect(reports[0].warnings.contains { $0.contains("raise max_items") })
        #expect(h.metrics.value("ferry_inbound_listing_truncated_total") == 2)
        let objects = try await h.s3.listObjectsV2(bucket: h.emulator.inboundBucket, prefix: "bulk/")
        #expect(Set(objects.map(\.key)) == Set(expected.keys.map { "bulk/" + $0 }), "none lost")
        #expect(try h.operations("StartFileTransfer").allSatisfy { ($0.paths?.count ?? 0) <= 10 })
        #expect(try h.operations("StartFileTransfer").count == 250)
        #expect(try journal.inboundCounts()["bulk"]?[.done] == 2500)
        try await h.eventuallyOnPartner { ((try? FileManager.default.contentsOfDirectory(atPath: h.emulator.partnerRoot + "/out/bulk")) ?? ["x"]).isEmpty }
        for name in ["f0000.dat", "f1234.dat", "f2499.dat"] {
            #expect(try await h.object("bulk/" + name) == expected[name])
        }
    }

    @Test func hostileNamesAreRefusedAndNothingIsWrittenOutsideDownloadTo() async throws {
        let h = try InboundHarness()
        let folder = try h.partnerFolder("/out/h")
        let downloadTo = h.inbox.path + "/in"
        try FileManager.default.createDirectory(atPath: downloadTo, withIntermediateDirectories: true)
        try h.putOnPartner("/out/h/good.csv", Data("good".utf8))
        try h.putOnPartner("/out/escape.csv", Data("outside the remote folder".utf8))
        // A real file whose name carries a newline: the partner's own listing brings it.
        try h.putOnPartner("/out/h/forged\nlog.csv", Data("x".utf8))
        let journal = try h.openJournal()
        let rule = try h.rule(name: "h", remote: "/out/h", extra: "min_age: 0s", downloadTo: downloadTo)
        let poller = h.poller([rule], journal: journal)
        var report = await poller.poll(ruleNamed: "h")
        #expect(report.refused == 1)
        #expect(report.requested == 1)
        // A listing no SFTP server could honestly produce, as a hostile or broken one might.
        let json = #"""
        {"files":[{"filePath":"/out/h/../escape.csv","size":25},{"filePath":"/out/h/sub/../../escape.csv"},
                  {"filePath":"/out/h/nul\u0000.csv"},{"filePath":"/out/h/.."},{"filePath":"/out/h/"},
                  {"filePath":"/out/escape.csv"},{"filePath":"/out/h/bell\u0007.csv"},{"filePath":"/out/h/good.csv","size":4}],
         "truncated":"false"}
        """#
        let listing = try DirectoryListing.parse(Data(json.utf8))
        report = await poller.poll(ruleNamed: "h", listing: { _ in listing })
        #expect(report.error == nil)
        #expect(report.refused == 7)
        #expect(h.metrics.value("ferry_inbound_refused_total") == 8, "each hostile name counted once")
        #expect(try journal.inboundFiles(in: [.refused]).count == 8)
        #expect(try FileManager.default.contentsOfDirectory(atPath: downloadTo).sorted() == ["good.csv"])
        #expect(try h.inboxNames() == ["in"], "nothing next to download_to")
        #expect(try h.operations("StartFileTransfer").flatMap { $0.paths ?? [] }.allSatisfy { !$0.contains("..") && !$0.contains("escape") })
        #expect(FileManager.default.fileExists(atPath: folder + "/forged\nlog.csv"), "a refused file is left alone on the partner")
    }

    /// Must-show 5 in-process: the poll is stopped dead at each step (as kill -9 there would stop it),
    /// the journal reopened and a new poller started; every file then arrives exactly once.
    @Test func aPollStoppedAtAnyStepResumesWithoutLossOrDuplicates() async throws {
        let h = try InboundHarness()
        let points = ["listing-started", "retrieval-submitting", "retrieval-started", "retrieval-tracked", "download-temp-created",
                      "download-written", "downloaded", "after-retrieve-done"]
        for (index, point) in points.enumerated() {
            let name = "crash\(index)"
            try h.partnerFolder("/out/\(name)")
            var files: [String: Data] = [:]
            for i in 0..<3 {
                files["f\(i).bin"] = randomData(500 + i)
                try h.putOnPartner("/out/\(name)/f\(i).bin", files["f\(i).bin"]!)
            }
            let downloadTo = h.inbox.path + "/" + name
            try FileManager.default.createDirectory(atPath: downloadTo, withIntermediateDirectories: true)
            let rule = try h.rule(name: name, remote: "/out/\(name)", extra: "min_age: 0s\nafter_retrieve: delete", downloadTo: downloadTo)
            let fired = Mutex(false)
            let crashing = h.poller([rule], journal: try h.openJournal(), crashHook: { reached in
                guard reached == point else { return }
                if fired.withLock({ done in defer { done = true }; return !done }) { throw SimulatedCrash(point: reached) }
            })
            let crashed = await crashing.poll(ruleNamed: name)
            #expect(crashed.error == "simulated crash at \(point)", "\(point)")
            // Restart: a new journal connection and a new poller, nothing carried over in memory.
            let journal = try h.openJournal()
            let restarted = h.poller([rule], journal: journal)
            await restarted.resumeUnfinished()
            for _ in 0..<2 { _ = await restarted.pollNow(rule: name) }
            let placed = try FileManager.default.contentsOfDirectory(atPath: downloadTo).sorted()
            #expect(placed == ["f0.bin", "f1.bin", "f2.bin"], "\(point): one copy each, no temporary file")
            for (file, data) in files {
                #expect((try? Data(contentsOf: URL(fileURLWithPath: downloadTo + "/" + file))) == data, "\(point): \(file)")
                #expect(try await h.object("\(name)/\(file)") == data, "\(point): \(file) in S3")
            }
            #expect(try journal.inboundCounts()[name] == [.done: 3], "\(point)")
            try await h.eventuallyOnPartner { ((try? FileManager.default.contentsOfDirectory(atPath: h.emulator.partnerRoot + "/out/\(name)")) ?? ["x"]).isEmpty }
        }
    }
}

struct InboundPollRequestTests {
    /// `ferry poll RULE` with a daemon running: the request goes through the state folder to the poller.
    @Test func aRunningPollerAnswersPollRequests() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/req")
        try h.putOnPartner("/out/req/a.csv", Data("hello".utf8))
        let rule = try h.rule(name: "req", remote: "/out/req", schedule: "0 0 1 1 *", extra: "min_age: 0s")
        let poller = h.poller([rule], journal: try h.openJournal())
        let daemon = Task { await poller.run() }
        defer { daemon.cancel() }
        let report = try await PollRequests.submit(stateDir: h.state.path, rule: "req", claimTimeout: .seconds(60))
        #expect(report.error == nil)
        #expect(report.requested == 1)
        #expect(try h.inboxFile("a.csv") == Data("hello".utf8))
        let unknown = try await PollRequests.submit(stateDir: h.state.path, rule: "nope", claimTimeout: .seconds(60))
        #expect(unknown.error?.contains("no inbound rule named nope") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: PollRequests.folder(stateDir: h.state.path)).isEmpty)
    }

    @Test func withoutADaemonTheRequestFailsWithAHint() async throws {
        let state = try TempDirectory()
        await #expect(throws: InboundError.self) {
            _ = try await PollRequests.submit(stateDir: state.path, rule: "r", claimTimeout: .milliseconds(300))
        }
    }
}

struct InboundListingTimeoutTests {
    @Test func aListingThatNeverAppearsIsAClearError() async throws {
        let h = try InboundHarness()
        // The partner has no such folder: the connector writes no listing object.
        let rule = try h.rule(name: "missing", remote: "/no/such/folder", extra: "min_age: 0s")
        let journal = try h.openJournal()
        let report = await h.poller([rule], journal: journal, listingTimeout: .seconds(1)).poll(ruleNamed: "missing")
        let error = try #require(report.error)
        #expect(error.contains("ListingTimeout"))
        #expect(error.contains("/no/such/folder"))
        #expect(error.contains("ferry test-connection partner"))
        let record = try #require(try journal.pollRecord(rule: "missing"))
        #expect(record.error == error)
        #expect(record.result?.hasPrefix("error") == true)
        #expect(h.metrics.value("ferry_inbound_polls_total") == 1)
    }
}

struct InboundFaultTests {
    /// AWS misbehaving (throttling, 5xx, dropped answers) makes polls fail part-way; later polls finish the
    /// job and every file still reaches download_to exactly once.
    @Test func faultyAWSDelaysButNeverDuplicatesOrLoses() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/faulty")
        var files: [String: Data] = [:]
        for i in 0..<20 {
            files["f\(i).bin"] = randomData(100 + i)
            try h.putOnPartner("/out/faulty/f\(i).bin", files["f\(i).bin"]!)
        }
        let journal = try h.openJournal()
        let rule = try h.rule(name: "faulty", remote: "/out/faulty", extra: "min_age: 0s\nafter_retrieve: delete")
        let poller = h.poller([rule], journal: journal)
        try h.emulator.setFaults(rate: 0.3, kinds: ["throttle", "unavailable", "internal", "drop"], latencyMs: 0)
        var polls = 0
        var errors = 0
        while try journal.inboundCounts()["faulty"]?[.done] != 20 && polls < 30 {
            polls += 1
            if await poller.pollNow(rule: "faulty")?.error != nil { errors += 1 }
        }
        try h.emulator.setFaults(rate: 0, kinds: [], latencyMs: 0)
        #expect(try h.emulator.requestLog().contains { $0.fault != nil }, "the emulator injected faults")
        #expect(try journal.inboundCounts()["faulty"]?[.done] == 20, "after \(polls) polls, \(errors) of them failed")
        #expect(try h.inboxNames() == files.keys.sorted(), "one copy each, no temporary files")
        for (name, data) in files {
            #expect(try h.inboxFile(name) == data)
        }
        try await h.eventuallyOnPartner { ((try? FileManager.default.contentsOfDirectory(atPath: h.emulator.partnerRoot + "/out/faulty")) ?? ["x"]).isEmpty }
    }
}

struct InboundDownloadFailureTests {
    @Test func aFailedDownloadIsRetriedFromS3WithoutAskingThePartnerAgain() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/df")
        try h.putOnPartner("/out/df/a.csv", Data("payload".utf8))
        let downloadTo = h.inbox.path + "/not-yet"
        let journal = try h.openJournal()
        let rule = try h.rule(name: "df", remote: "/out/df", extra: "min_age: 0s\nafter_retrieve: delete", downloadTo: downloadTo)
        let poller = h.poller([rule], journal: journal)
        let first = try #require(await poller.pollNow(rule: "df"))
        #expect(first.retrieved == 1)
        #expect(first.failed == 1)
        let waiting = try #require(try journal.inboundFiles(in: [.inS3], rule: "df").first)
        #expect(waiting.lastError?.contains("fix download_to") == true)
        #expect(h.partnerHas("/out/df/a.csv"), "after_retrieve waits until the file is on disk")
        try FileManager.default.createDirectory(atPath: downloadTo, withIntermediateDirectories: false)
        let second = try #require(await poller.pollNow(rule: "df"))
        #expect(second.downloaded == 1)
        #expect(FileManager.default.contents(atPath: downloadTo + "/a.csv") == Data("payload".utf8))
        #expect(try h.operations("StartFileTransfer").count == 1)
        try await h.eventuallyOnPartner { !h.partnerHas("/out/df/a.csv") }
        #expect(await poller.pollNow(rule: "df")?.finished == 1, "the delete is confirmed by the next listing")
    }
}

/// User + system CPU time of this process so far.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

struct InboundReloadTests {
    @Test func reloadSwapsTheRules() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/new")
        try h.putOnPartner("/out/new/n.csv", Data("new rule".utf8))
        let old = try h.rule(name: "old", remote: "/out/old", extra: "min_age: 0s")
        let poller = h.poller([old], journal: try h.openJournal())
        let renamed = try h.rule(name: "new", remote: "/out/new", extra: "min_age: 0s")
        let connection = InboundConnection(connectorId: h.emulator.sftpConnectorId, s3: h.s3, transfer: h.transfer, pace: {})
        poller.reload(rules: [renamed], connections: ["partner": connection])
        #expect(await poller.pollNow(rule: "old") == nil)
        #expect(await poller.pollNow(rule: "new")?.finished == 1)
        #expect(try h.inboxFile("n.csv") == Data("new rule".utf8))
    }
}

struct InboundInFlightTests {
    /// Retrievals take slots of the connector's max_in_flight (shared with outbound) and give them all back.
    @Test func retrievalsStayWithinMaxInFlight() async throws {
        let h = try InboundHarness()
        try h.partnerFolder("/out/flight")
        for i in 0..<25 { try h.putOnPartner("/out/flight/f\(i).bin", randomData(50)) }
        let semaphore = AsyncSemaphore(1)
        let counts = Mutex((held: 0, most: 0))
        let gate = InFlightGate(
            enter: {
                try await semaphore.wait()
                counts.withLock { $0.held += 1; $0.most = max($0.most, $0.held) }
            },
            take: {
                await semaphore.take()
                counts.withLock { $0.held += 1; $0.most = max($0.most, $0.held) }
            },
            leave: {
                counts.withLock { $0.held -= 1 }
                await semaphore.signal()
            })
        let journal = try h.openJournal()
        let rule = try h.rule(name: "flight", remote: "/out/flight", extra: "min_age: 0s", downloadTo: nil)
        let report = try #require(await h.poller([rule], journal: journal, inFlight: gate).pollNow(rule: "flight"))
        #expect(report.error == nil)
        #expect(report.retrieved == 25)
        #expect(try h.operations("StartFileTransfer").count == 3)
        #expect(counts.withLock { $0.most } == 1, "with max_in_flight 1, one transfer at a time")
        #expect(counts.withLock { $0.held } == 0, "every slot given back")
    }
}
