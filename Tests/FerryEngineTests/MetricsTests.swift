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
}
