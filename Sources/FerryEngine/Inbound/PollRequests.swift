import Foundation

/// `ferry poll RULE` while the daemon runs: the command leaves a request file in
/// `<state_dir>/poll-requests/`, the daemon's poller claims it (by renaming it), polls the rule within
/// that rule's one-poll-at-a-time slot and writes the report back beside it. Files rather than a socket:
/// the state folder already has the right owner and permissions, and a request survives nothing it
/// should not (a daemon that dies mid-poll leaves a claimed request, which the command reports).
public enum PollRequests {
    /// The folder requests and answers pass through.
    public static func folder(stateDir: String) -> String {
        (stateDir.hasSuffix("/") ? stateDir : stateDir + "/") + "poll-requests"
    }

    /// Asks the running daemon to poll `rule` now and waits for its report. Throws if no daemon claims
    /// the request within `claimTimeout`, or the poll does not finish within `timeout`.
    public static func submit(stateDir: String, rule: String, claimTimeout: Duration = .seconds(10),
                              timeout: Duration = .seconds(3600)) async throws -> PollReport {
        let folder = folder(stateDir: stateDir)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let id = UUID().uuidString
        let request = "\(folder)/\(id).request"
        try Data(rule.utf8).write(to: URL(fileURLWithPath: "\(folder)/.\(id).tmp"))
        try FileManager.default.moveItem(atPath: "\(folder)/.\(id).tmp", toPath: request)
        let result = "\(folder)/\(id).result"
        let start = ContinuousClock.now
        while true {
            if let data = FileManager.default.contents(atPath: result) {
                try? FileManager.default.removeItem(atPath: result)
                return try JSONDecoder().decode(PollReport.self, from: data)
            }
            let waited = ContinuousClock.now - start
            if FileManager.default.fileExists(atPath: request), waited > claimTimeout {
                try? FileManager.default.removeItem(atPath: request)
                throw InboundError(code: "DaemonNotAnswering", message: "the running ferry did not pick up the poll request within \(claimTimeout) — check `systemctl status ferry`, or stop it and run `ferry poll \(rule)` to poll once without the daemon")
            }
            if waited > timeout {
                throw InboundError(code: "PollTimeout", message: "the poll of \(rule) did not finish within \(timeout); it goes on in the daemon — see `ferry status`")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

extension InboundPoller {
    /// Answers `ferry poll RULE` requests until cancelled (checked twice a second).
    public func servePollRequests() async {
        let folder = PollRequests.folder(stateDir: settings.stateDirectory)
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        while !Task.isCancelled {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            for name in names where name.hasSuffix(".request") {
                let id = String(name.dropLast(".request".count))
                let claimed = "\(folder)/\(id).claimed"
                // The rename is the claim: the command sees its request gone and waits for the answer.
                guard (try? FileManager.default.moveItem(atPath: "\(folder)/\(name)", toPath: claimed)) != nil,
                      let rule = FileManager.default.contents(atPath: claimed).map({ String(decoding: $0, as: UTF8.self) }) else { continue }
                let report = await pollNow(rule: rule) ?? {
                    var unknown = PollReport(rule: rule)
                    unknown.error = "no inbound rule named \(rule) — see `ferry validate` for the rules this daemon runs"
                    return unknown
                }()
                if let data = try? JSONEncoder().encode(report) {
                    let temp = "\(folder)/.\(id).result.tmp"
                    try? data.write(to: URL(fileURLWithPath: temp))
                    try? FileManager.default.moveItem(atPath: temp, toPath: "\(folder)/\(id).result")
                }
                try? FileManager.default.removeItem(atPath: claimed)
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }
}
