import Foundation
import FerryTestSupport

/// One broken promise, with everything needed to chase it.
struct ChaosViolation: Sendable, CustomStringConvertible {
    enum Property: String, Sendable {
        /// A complete version never reached the partner and ferry did not report it.
        case lost = "LOST"
        /// A version reached the partner more than once with no possible-duplicate report naming it, or more
        /// duplicates happened than `possible_duplicates` counts.
        case silentDuplicate = "SILENT DUPLICATE"
        /// The partner got bytes that are no complete version of that name (a writer's prefix, a torn read).
        case partial = "PARTIAL"
        /// Something outside the rule's folder and patterns reached the partner (excluded name, symlink,
        /// fifo, temporary name, a name nobody wrote).
        case outsideRule = "OUTSIDE THE RULE"
    }

    let property: Property
    let file: String
    let producer: String
    let detail: String
    let seed: UInt64

    var description: String {
        "[chaos seed \(seed)] \(property.rawValue): \(file) (\(producer)): \(detail)\n    replay: CHAOS_SEED=\(seed) swift test --filter ChaosTests"
    }
}

/// The oracle's verdict on one run.
struct ChaosVerdict: Sendable {
    var violations: [ChaosViolation] = []
    /// Doubts that are not failures: reported duplicates that did not happen, ferry dying on its own,
    /// a stop that was not clean, a drain that never settled.
    var warnings: [String] = []
    var summary = ""
}

enum ChaosOracle {
    /// Checks the promise: every complete version delivered byte-identical once (more only if reported as
    /// a possible duplicate), or reported quarantined/in doubt; nothing partial; nothing outside the rule.
    static func judge(plan: ChaosPlan, ledger: ChaosLedger, observation o: ChaosObservation) -> ChaosVerdict {
        var verdict = ChaosVerdict()
        let seed = plan.seed
        let versions = ledger.versions
        let forbidden = ledger.forbidden
        let versionsByName = Dictionary(grouping: versions, by: \.name)
        let forbiddenByName = Dictionary(forbidden.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let forbiddenBySha = Dictionary(forbidden.compactMap { f in f.sha256.map { ($0, f) } }, uniquingKeysWith: { first, _ in first })
        var deliveredCount: [String: Int] = [:]  // "name bytes|sha" → deliveries
        func key(_ name: ByteName, _ sha: String) -> String { "\(name.bytes)|\(sha)" }

        // Every delivery must be a complete version of a name the producers owe.
        for delivery in o.deliveries {
            let name = lastComponent(delivery.remotePath)
            let shown = name.description
            if let rule = forbiddenByName[name] {
                verdict.violations.append(.init(property: .outsideRule, file: shown, producer: rule.producer,
                                                detail: "delivered to \(delivery.remotePath) (transfer \(delivery.transferId)) although \(rule.why)", seed: seed))
                continue
            }
            guard let candidates = versionsByName[name] else {
                let leaked = forbiddenBySha[delivery.sha256].map { " — its bytes are those of \($0.name) (\($0.producer)), never to be sent because \($0.why)" } ?? ""
                verdict.violations.append(.init(property: .outsideRule, file: shown, producer: forbiddenBySha[delivery.sha256]?.producer ?? "none",
                                                detail: "delivered \(delivery.size) bytes under a name no producer wrote\(leaked)", seed: seed))
                continue
            }
            guard candidates.contains(where: { $0.sha256 == delivery.sha256 }) else {
                let prefixOf = candidates.first { $0.data.count > delivery.size && delivery.size > 0 }
                    .flatMap { v -> String? in
                        SHA256.hex(v.data.prefix(delivery.size)) == delivery.sha256 ? "the first \(delivery.size) of \(v.data.count) bytes of a version" : nil
                    }
                verdict.violations.append(.init(property: .partial, file: shown, producer: candidates[0].producer,
                                                detail: "delivered \(delivery.size) bytes (sha256 \(delivery.sha256.prefix(12))…) that match no complete version"
                                                    + " (\(prefixOf ?? "not a prefix of any version")); complete versions: "
                                                    + candidates.map { "\($0.data.count) B \($0.sha256.prefix(12))…" }.joined(separator: ", "), seed: seed))
                continue
            }
            if let version = candidates.first(where: { $0.sha256 == delivery.sha256 }), version.connectorID != delivery.connectorId {
                verdict.violations.append(.init(property: .outsideRule, file: shown, producer: version.producer,
                                                detail: "delivered through connector \(delivery.connectorId), not \(version.connectorID), the one of the rule whose folder it is in", seed: seed))
            }
            deliveredCount[key(name, delivery.sha256), default: 0] += 1
        }

        // Lines where ferry says a file may reach the partner twice.
        let duplicateLines = logLines(o.log).filter { line in
            let text = String(decoding: line, as: UTF8.self).lowercased()
            return text.contains("twice") || text.contains("possible duplicate") || text.contains("possibly duplicate")
        }
        func reportedAsDuplicate(_ path: String) -> Bool {
            duplicateLines.contains { containsPath($0, Array(path.utf8)) }
        }

        var extraDeliveries = 0
        var lostCount = 0, reportedCount = 0, supersededCount = 0
        for version in versions {
            let count = deliveredCount[key(version.name, version.sha256)] ?? 0
            if count == 0 {
                if o.reported.contains(version.sha256) {
                    reportedCount += 1
                } else if version.owed {
                    lostCount += 1
                    verdict.violations.append(.init(property: .lost, file: version.name.description, producer: version.producer,
                                                    detail: "\(version.data.count) bytes (sha256 \(version.sha256.prefix(12))…) never reached the partner, "
                                                        + "and ferry does not report it quarantined or in doubt\(whereIsIt(version))", seed: seed))
                } else {
                    supersededCount += 1
                }
            }
            if count > 1 {
                extraDeliveries += count - 1
                if !reportedAsDuplicate(version.path) {
                    verdict.violations.append(.init(property: .silentDuplicate, file: version.name.description, producer: version.producer,
                                                    detail: "delivered \(count) times and no possible-duplicate warning in ferry's log names \(version.path)", seed: seed))
                }
            }
        }
        // Hard links and the empty file share bytes under several names: count each (name, sha) once.
        if let counted = o.possibleDuplicates, extraDeliveries > counted {
            verdict.violations.append(.init(property: .silentDuplicate, file: "(all files)", producer: "all",
                                            detail: "\(extraDeliveries) extra deliveries, but `ferry status --json` counts \(counted) possible_duplicates", seed: seed))
        }
        if o.possibleDuplicates == nil {
            verdict.warnings.append("`ferry status --json` could not be read at the end: possible_duplicates unchecked")
        }

        // Every reported duplicate should be real; a resubmission after an answer lost before any work is
        // not, so this is a warning.
        var reportedPaths: [String] = []
        for version in versions where reportedAsDuplicate(version.path) && !reportedPaths.contains(version.path) {
            reportedPaths.append(version.path)
        }
        let unreal = reportedPaths.filter { path in
            let name = lastComponent(path)
            return (versionsByName[name] ?? []).allSatisfy { (deliveredCount[key(name, $0.sha256)] ?? 0) <= 1 }
        }
        if !unreal.isEmpty {
            verdict.warnings.append("\(unreal.count) of \(reportedPaths.count) files named in possible-duplicate warnings reached the partner only once: "
                                    + unreal.prefix(5).map { lastComponent($0).description }.joined(separator: ", "))
        }
        if !o.drained { verdict.warnings.append("the outbox did not drain within the timeout (ferry status pending: \(o.pending.map(String.init) ?? "unreadable"))") }
        if o.stopStatus != 0 { verdict.warnings.append("SIGTERM at the end: ferry exited with \(o.stopStatus.map(String.init) ?? "nothing within 35 s (killed)")") }
        verdict.warnings += o.unexpectedExits
        verdict.warnings += ledger.notes

        let owed = versions.filter(\.owed).count
        verdict.summary = String(format: "seed %llu: %d versions (%d owed, %d superseded), %d forbidden; %d deliveries, %d reported quarantined/in doubt, "
                                 + "%d extra deliveries (possible_duplicates %@), %d lost; %d ferry starts; produce %.0f s, total %.0f s; %d violations",
                                 seed, versions.count, owed, supersededCount, forbidden.count, o.deliveries.count, reportedCount, extraDeliveries,
                                 o.possibleDuplicates.map(String.init) ?? "?", lostCount, o.starts, o.producedSeconds, o.totalSeconds,
                                 verdict.violations.count)
        return verdict
    }

    private static func logLines(_ log: [UInt8]) -> [[UInt8]] {
        log.split(separator: UInt8(ascii: "\n")).map(Array.init)
    }

    /// Where a lost version is now, to start the hunt: still in the outbox, archived, or gone.
    private static func whereIsIt(_ version: ChaosLedger.Version) -> String {
        let outbox = (version.path as NSString).deletingLastPathComponent
        if let data = FileManager.default.contents(atPath: version.path) {
            return SHA256.hex(data) == version.sha256 ? "; it is still in the outbox" : "; the outbox holds another version of it"
        }
        for path in ChaosFS.regularFiles(under: outbox + "/.ferry") where lastComponent(path) == version.name {
            if let data = FileManager.default.contents(atPath: path), SHA256.hex(data) == version.sha256 {
                return "; it sits in \(path.dropFirst(outbox.count + 1)) as if sent"
            }
        }
        return "; it is gone from the outbox"
    }
}
