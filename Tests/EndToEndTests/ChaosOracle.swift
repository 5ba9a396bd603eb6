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
        /// A file reported as a possible duplicate reached the partner once, and nothing explains why ferry
        /// could not know: no submission of it did nothing (a fault before any work, or ferry stopped
        /// before journaling the answer), so the listing before the resend should have found it.
        case unfoundedReport = "UNFOUNDED DUPLICATE REPORT"
        /// The partner got bytes that are no complete version of that name (a writer's prefix, a torn read).
        case partial = "PARTIAL"
        /// Something outside the rule's folder and patterns reached the partner (excluded name, symlink,
        /// fifo, temporary name, a name nobody wrote), or a file sent before its ready marker existed.
        case outsideRule = "OUTSIDE THE RULE"
        /// A ready marker still in the folder after the version it came with was sent (the next version
        /// written there would go without waiting for its own marker).
        case markerLeft = "MARKER LEFT"
    }

    let property: Property
    let file: String
    let producer: String
    let detail: String
    let seed: UInt64
    /// How to play the run again; the chaos test's seed replay unless another run (the soak) says otherwise.
    var replay: String?

    var description: String {
        "[chaos seed \(seed)] \(property.rawValue): \(file) (\(producer)): \(detail)\n    replay: \(replay ?? "CHAOS_SEED=\(seed) swift test --filter ChaosTests")"
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
        judge(seed: plan.seed, ledger: ledger, observation: o)
    }

    /// The same judgement for any run that fills a ledger and observes the partner the way the chaos run
    /// does (the soak, SoakRun.swift); `replay` replaces the chaos seed's replay line in each violation.
    static func judge(seed: UInt64, ledger: ChaosLedger, observation o: ChaosObservation, replay: String? = nil) -> ChaosVerdict {
        var verdict = judgeRun(seed: seed, ledger: ledger, observation: o)
        if let replay { verdict.violations = verdict.violations.map { var v = $0; v.replay = replay; return v } }
        return verdict
    }

    private static func judgeRun(seed: UInt64, ledger: ChaosLedger, observation o: ChaosObservation) -> ChaosVerdict {
        var verdict = ChaosVerdict()
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
            // Ready markers: not before the marker existed (every version of these bytes has a bound).
            let bounds = candidates.filter { $0.sha256 == delivery.sha256 }.map(\.notBefore)
            if !bounds.isEmpty, bounds.allSatisfy({ $0 != nil }), let earliest = bounds.compactMap({ $0 }).min(), delivery.ts < earliest {
                verdict.violations.append(.init(property: .outsideRule, file: shown, producer: candidates[0].producer,
                                                detail: String(format: "delivered %.3f s before its ready marker existed (transfer %@)", earliest - delivery.ts, delivery.transferId), seed: seed))
            }
            deliveredCount[key(name, delivery.sha256), default: 0] += 1
        }

        // Lines where ferry says a file may reach the partner twice.
        let duplicateLines = logLines(o.log).filter { line in
            let text = String(decoding: line, as: UTF8.self).lowercased()
            return text.contains("twice") || text.contains("possible duplicate") || text.contains("possibly duplicate")
        }
        let duplicateIndex = PathLines(duplicateLines)
        func reportedAsDuplicate(_ path: String) -> Bool { duplicateIndex.anyNames(path) }

        var extraDeliveries = 0
        var lostCount = 0, reportedCount = 0, supersededCount = 0
        // Versions with the same name and bytes (a file moved back from the archive is sent again) are one
        // key delivered once per version.
        var order: [String] = []
        var byKey: [String: [ChaosLedger.Version]] = [:]
        for version in versions {
            let k = key(version.name, version.sha256)
            if byKey[k] == nil { order.append(k) }
            byKey[k, default: []].append(version)
        }
        for k in order {
            let group = byKey[k] ?? []
            let version = group[0]
            let count = deliveredCount[k] ?? 0
            let owed = group.filter(\.owed).count
            if count < owed {
                if o.reported.contains(version.sha256) {
                    reportedCount += 1
                } else {
                    lostCount += 1
                    let missing = group.first(where: \.owed) ?? version
                    verdict.violations.append(.init(property: .lost, file: version.name.description, producer: missing.producer,
                                                    detail: "\(version.data.count) bytes (sha256 \(version.sha256.prefix(12))…) reached the partner \(count) of \(owed) times owed, "
                                                        + "and ferry does not report it quarantined or in doubt\(whereIsIt(missing))", seed: seed))
                }
            } else if count == 0 {
                supersededCount += 1
            }
            if count > group.count {
                extraDeliveries += count - group.count
                if !reportedAsDuplicate(version.path) {
                    verdict.violations.append(.init(property: .silentDuplicate, file: version.name.description, producer: version.producer,
                                                    detail: "delivered \(count) times (\(group.count) version(s) of these bytes) and no possible-duplicate warning in ferry's log names \(version.path)", seed: seed))
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

        // Every reported duplicate should be real. Since ferry lists the partner before resending (SFTP), a
        // file reported and delivered once means that one of its submissions did no work, which ferry cannot
        // tell from a transfer still queued: a fault answered before any work, or ferry stopped between
        // journaling the batch and journaling the answer. That must be visible; else the report was unfounded.
        // Where ferry could not list (AS2, a listing that failed) the report stays a note.
        let interruptedLines = logLines(o.log).filter { line in
            let text = String(decoding: line, as: UTF8.self)
            // The second phrase is the pre-#13 binary's, so that the oracle reads its logs too.
            return text.contains("ferry stopped before StartFileTransfer") || text.contains("interrupted during StartFileTransfer")
        }
        let uncheckedLines = logLines(o.log).filter { line in
            String(decoding: line, as: UTF8.self).contains("could not all be looked for on the partner")
        }
        let interrupted = PathLines(interruptedLines), unchecked = PathLines(uncheckedLines)
        var reportedPaths: [String] = [], reportedSet: Set<String> = []
        for version in versions where !reportedSet.contains(version.path) && reportedAsDuplicate(version.path) {
            reportedPaths.append(version.path)
            reportedSet.insert(version.path)
        }
        var unreal: [String] = []
        var byFault = 0, byStop = 0, unlisted = 0
        for path in reportedPaths {
            let name = lastComponent(path)
            guard (versionsByName[name] ?? []).allSatisfy({ (deliveredCount[key(name, $0.sha256)] ?? 0) <= 1 }) else { continue }
            let faulted = o.noWorkSubmissions.contains(name)
            let stopped = interrupted.anyNames(path)
            let listable = (versionsByName[name] ?? []).allSatisfy { $0.connectorID != o.as2ConnectorID } && !unchecked.anyNames(path)
            if faulted || stopped || !listable {
                unreal.append(path)
                if faulted { byFault += 1 } else if stopped { byStop += 1 } else { unlisted += 1 }
            } else {
                verdict.violations.append(.init(property: .unfoundedReport, file: name.description, producer: versionsByName[name]?.first?.producer ?? "?",
                                                detail: "named in a possible-duplicate warning and delivered once, yet every StartFileTransfer carrying it did its work "
                                                    + "and ferry was not stopped mid-submission: the listing before the resend should have found it", seed: seed))
            }
        }
        if !unreal.isEmpty {
            verdict.warnings.append("\(unreal.count) of \(reportedPaths.count) files named in possible-duplicate warnings reached the partner only once: "
                                    + "\(byFault) after a StartFileTransfer a fault answered before any work, \(byStop) after ferry stopped mid-submission, "
                                    + "\(unlisted) where the partner could not be listed (AS2, a failed listing): "
                                    + unreal.prefix(5).map { lastComponent($0).description }.joined(separator: ", "))
        }
        // Archives hold only complete versions: a truncated copy under a file's name would look like the record.
        for copy in o.archived {
            let name = archivedName(lastComponent(copy.path), known: versionsByName)
            guard let candidates = versionsByName[name] else {
                if let rule = forbiddenByName[name] {
                    verdict.violations.append(.init(property: .outsideRule, file: name.description, producer: rule.producer,
                                                    detail: "archived as if sent (\(copy.path)) although \(rule.why)", seed: seed))
                    continue
                }
                verdict.warnings.append("a file in the archive that no producer wrote under that name: \(copy.path)")
                continue
            }
            // A writer that still held a rewritten file open may change the archived inode after ferry
            // checked it (ferry cannot stop that): only the other producers' copies must be exact.
            if candidates.contains(where: { $0.producer.hasPrefix("rewrite-after-sent") }) { continue }
            if !candidates.contains(where: { $0.sha256 == copy.sha256 }) {
                verdict.violations.append(.init(property: .partial, file: name.description, producer: candidates[0].producer,
                                                detail: "the archive holds \(copy.path) whose bytes (sha256 \(copy.sha256.prefix(12))…) are no complete version of it", seed: seed))
            }
        }
        // A marker whose versions were all delivered must be gone.
        for marker in o.markersLeft {
            let dataName = lastComponent(String(marker.dropLast(ChaosRun.readyMarker.count)))
            let owed = (versionsByName[dataName] ?? []).filter(\.owed)
            if !owed.isEmpty, owed.allSatisfy({ (deliveredCount[key(dataName, $0.sha256)] ?? 0) > 0 }) {
                verdict.violations.append(.init(property: .markerLeft, file: dataName.description, producer: owed[0].producer,
                                                detail: "\(marker) is still there although its version was sent", seed: seed))
            }
        }
        if !o.drained { verdict.warnings.append("the outbox did not drain within the timeout (ferry status pending: \(o.pending.map(String.init) ?? "unreadable"))") }
        if o.stopStatus != 0 { verdict.warnings.append("SIGTERM at the end: ferry exited with \(o.stopStatus.map(String.init) ?? "nothing within 35 s (killed)")") }
        verdict.warnings += o.unexpectedExits
        verdict.warnings += ledger.notes

        let owed = versions.filter(\.owed).count
        // How often the listing before a resend found the files of an in-doubt batch on the partner.
        let foundOnPartner = logLines(o.log).filter { String(decoding: $0, as: UTF8.self).contains("in-doubt files are already on the partner") }.count
        verdict.summary = String(format: "seed %llu: %d versions (%d owed, %d superseded), %d forbidden; %d deliveries, %d reported quarantined/in doubt, "
                                 + "%d extra deliveries (possible_duplicates %@), %d lost; %d in-doubt batches found on the partner; %d ferry starts; "
                                 + "produce %.0f s, total %.0f s; %d violations",
                                 seed, versions.count, owed, supersededCount, forbidden.count, o.deliveries.count, reportedCount, extraDeliveries,
                                 o.possibleDuplicates.map(String.init) ?? "?", lostCount, foundOnPartner, o.starts, o.producedSeconds, o.totalSeconds,
                                 verdict.violations.count)
        return verdict
    }

    /// The name an archived copy was sent under: ferry archives a later version of a name already in the
    /// archive as `name (N).ext`.
    private static func archivedName(_ name: ByteName, known: [ByteName: [ChaosLedger.Version]]) -> ByteName {
        guard known[name] == nil else { return name }
        let text = name.string
        guard let match = text.range(of: #" \([0-9]+\)(?=\.[^.]*$|$)"#, options: .regularExpression) else { return name }
        let original = ByteName(text.replacingCharacters(in: match, with: ""))
        return known[original] != nil ? original : name
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
