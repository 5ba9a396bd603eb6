import Foundation
import FerryTestSupport
import Testing

/// Issue 15: "the engine runs journal writes on FerryAWS's private HTTP thread, so one fsync stalls
/// every request". A real slow journal: another process holds SQLite's write lock on journal.db (as an
/// operator's `sqlite3` session, or a disk that takes seconds to fsync, would), so ferry's journal
/// writes wait in SQLite's busy handler with the journal held. Uploads must go on meanwhile.
struct JournalStallTests {
    @Test func uploadsGoOnWhileAJournalWriteWaits() async throws {
        // 500 ms per request: uploads (16 at a time) then take about 47 s and stay well behind the
        // detection of the burst even on a machine running every end-to-end test at once (in CI, with
        // 200 ms, the hold began only after the last upload), so that plenty are left when it begins.
        let scenario = try OutboundScenario(latencyMs: 500, settle: "100ms")
        try scenario.drop(1500, size: 4096)
        try scenario.start()
        let putObjects = { (try? scenario.emulator.requestLog().filter { $0.operation == "PutObject" }) ?? [] }

        // Once every file is journaled (so that uploads have work left whatever the journal does next),
        // holds the journal's write lock for 5 s and prints when it had it and when it let go.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", """
            import json, os, sqlite3, sys, time
            deadline = time.time() + 120
            while not os.path.exists(sys.argv[1]):  # ferry creates it as it starts
                if time.time() > deadline:
                    sys.exit("ferry did not create its journal within 120 s")
                time.sleep(0.01)
            c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
            def journaled():
                try:
                    return c.execute("SELECT count(*) FROM outbound_files").fetchone()[0]
                except sqlite3.OperationalError:
                    return 0  # the schema is still being created
            while journaled() < 1500:
                if time.time() > deadline:
                    sys.exit("the 1500 files were not journaled within 120 s")
                time.sleep(0.05)
            # Without a wait of SQLite's own: ferry's short transactions follow each other closely, and a
            # waiting connection (which sleeps between tries) would get the lock only once they stop.
            c.execute("PRAGMA busy_timeout = 0")
            while True:
                try:
                    c.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:
                    if time.time() > deadline:
                        sys.exit("could not take the journal's write lock within 120 s")
                    time.sleep(0.001)
            print(json.dumps({"held": time.time()}), flush=True)
            time.sleep(5)
            c.execute("COMMIT")
            print(json.dumps({"released": time.time()}), flush=True)
            """, scenario.stateDir + "/journal.db"]
        let output = Pipe()
        holder.standardOutput = output
        try holder.run()
        // Waited for without blocking a thread: the end-to-end tests run side by side on few threads.
        #expect(await eventually(timeout: 180, interval: 0.05) { !holder.isRunning })
        #expect(holder.terminationStatus == 0, "python3 could not hold the journal's lock (python3 comes with `make deps`); log:\n\(scenario.daemon?.log.suffix(2000) ?? "")")
        let lines = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        let times = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Double] }
        let held = try #require(times.first?["held"])
        let released = try #require(times.last?["released"])

        // Within about 200 ms of the hold, ferry's next journal write (the staged uploads' flush) waits
        // for the lock while holding the journal. After the first second of the hold, only uploads that
        // could start while that write waited can have been answered: had the HTTP thread waited for the
        // journal, no new request would start, and at most the 16 upload workers' requests already in
        // flight would be answered then.
        let uploads = putObjects()
        let remaining = 1500 - uploads.filter { $0.ts < held }.count
        #expect(remaining > 300, "only \(remaining) uploads were left when the hold began: this run cannot tell whether they stall")
        let later = uploads.filter { $0.ts >= held + 1 && $0.ts < released }.count
        print("journal stall: \(later) PutObject answered in the last 4 s of a 5 s hold of the journal's write lock (\(remaining) uploads left at its start)")
        #expect(later > 16, "uploads stalled while a journal write waited: \(later) PutObject in the last 4 s of the hold")
        let status = await scenario.daemon?.stop()
        #expect(status == 0, "ferry did not stop cleanly (\(status.map(String.init) ?? "killed after 35 s")); log:\n\(scenario.daemon?.log.suffix(3000) ?? "")")
    }
}
