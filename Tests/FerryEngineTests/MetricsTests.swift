import Testing
@testable import FerryEngine

struct MetricsTests {
    @Test func rendersPrometheusTextWithEscapedSortedLabels() {
        let metrics = Metrics()
        metrics.increment("ferry_files_failed_total", ["rule": "in\"voices", "code": "FILE_NOT_FOUND"], help: "Failed.")
        metrics.increment("ferry_files_failed_total", ["code": "FILE_NOT_FOUND", "rule": "in\"voices"], by: 2, help: "Failed.")
        metrics.increment("ferry_files_sent_total", ["rule": "a\\b"], by: 3, help: "Sent.")
        metrics.set("ferry_oldest_waiting_seconds", ["rule": "x"], to: 1.5, help: "Age.")
        #expect(metrics.render() == """
            # HELP ferry_files_failed_total Failed.
            # TYPE ferry_files_failed_total counter
            ferry_files_failed_total{code="FILE_NOT_FOUND",rule="in\\"voices"} 3
            # HELP ferry_files_sent_total Sent.
            # TYPE ferry_files_sent_total counter
            ferry_files_sent_total{rule="a\\\\b"} 3
            # HELP ferry_oldest_waiting_seconds Age.
            # TYPE ferry_oldest_waiting_seconds gauge
            ferry_oldest_waiting_seconds{rule="x"} 1.5

            """)
        #expect(metrics.value("ferry_files_sent_total", ["rule": "a\\b"]) == 3)
    }

    @Test func groupCommitCommitsEveryItemBeforeItsCallerGoesOn() async throws {
        let committed = Locked<[[Int]]>([])
        let commits = GroupCommit<Int> { items in committed.withLock { $0.append(items) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for item in 0..<200 {
                group.addTask {
                    try await commits.submit(item)
                    #expect(committed.withLock { $0.joined().contains(item) }, "item \(item) returned before it was committed")
                }
            }
            try await group.waitForAll()
        }
        let all = committed.withLock { $0 }
        #expect(all.joined().sorted() == Array(0..<200))
        #expect(all.count < 200, "a burst is grouped into fewer commits (\(all.count))")
    }
}
