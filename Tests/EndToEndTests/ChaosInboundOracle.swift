import Foundation

/// One broken inbound promise, with what the test knows about it and how to replay it.
struct ChaosInboundViolation: Sendable, CustomStringConvertible {
    let seed: UInt64
    let property: String
    let file: String
    let producer: String
    let detail: String

    var description: String {
        """
        [chaos inbound seed \(seed)] \(property): \(file) (\(producer)): \(detail)
            replay: CHAOS_INBOUND_SEED=\(seed) swift test --filter ChaosInboundTests
        """
    }
}

/// Judges an inbound run (docs/chaos.md, "Inbound"). Ground truth is what the partner wrote (the ledger),
/// what appeared in download_to (the test's own observer, with each file's bytes and the instant it got
/// its name) and what the emulator did on the partner (`remote_ops.jsonl`: every retrieval's bytes and
/// every remote delete or move with the bytes it removed). Names are compared byte for byte.
enum ChaosInboundOracle {
    struct Verdict: Sendable {
        var violations: [ChaosInboundViolation] = []
        var warnings: [String] = []
        var summary = ""
    }

    /// Whether ferry reported an unplaced version instead of placing it: skipped because download_to held
    /// the name (on_conflict: skip), or given up as failed with its error in the journal.
    static func reported(_ version: ChaosInboundLedger.Version, rows: [ChaosInboundJournalRow], onConflict: String) -> Bool {
        rows.contains { row in
            lastComponent(row.remotePath) == version.name && row.size == version.data.count
                && ((onConflict == "skip" && row.lastError.hasPrefix("skipped:")) || row.state == "failed")
        }
    }

    /// The names on_conflict may give a version called `name`: the name itself, and for rename
    /// `stem (n).ext`.
    static func isPlacementName(_ placed: ByteName, for name: ByteName) -> Bool {
        if placed == name { return true }
        let text = name.string
        var stem = Substring(text), ext = Substring("")
        if let dot = text.lastIndex(of: "."), dot != text.startIndex {
            stem = text[..<dot]
            ext = text[dot...]
        }
        let prefix = Array(stem.utf8) + Array(" (".utf8), suffix = Array(")".utf8) + Array(ext.utf8)
        let bytes = placed.bytes
        guard bytes.count > prefix.count + suffix.count, bytes.starts(with: prefix), bytes.suffix(suffix.count).elementsEqual(suffix) else { return false }
        let counter = bytes[prefix.count..<(bytes.count - suffix.count)]
        return counter.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// The versions after_retrieve removed with their name before any listing had shown them (see judge).
    static func windowVictims(versions: [ChaosInboundLedger.Version], ops: [ChaosInboundFS.PartnerOp],
                              placed: (ChaosInboundLedger.Version) -> Bool) -> [(version: ChaosInboundLedger.Version, op: ChaosInboundFS.PartnerOp)] {
        var found: [(ChaosInboundLedger.Version, ChaosInboundFS.PartnerOp)] = []
        for op in ops where (op.op == "delete" || op.op == "move") && op.ok {
            let name = lastComponent(op.remotePath)
            guard let sha = op.sha256, let version = versions.first(where: { $0.sha256 == sha && $0.name == name }), !placed(version) else { continue }
            let listed = ops.contains { $0.op == "listed" && $0.ts < op.ts && $0.sha256 == sha && lastComponent($0.remotePath) == name }
            if !listed { found.append((version, op)) }
        }
        return found
    }

    static func judge(plan: ChaosInboundPlan, ledger: ChaosInboundLedger, observation o: ChaosInboundObservation) -> Verdict {
        var verdict = Verdict()
        let seed = plan.seed
        func violation(_ property: String, _ file: String, _ producer: String, _ detail: String) {
            verdict.violations.append(ChaosInboundViolation(seed: seed, property: property, file: file, producer: producer, detail: detail))
        }
        let versions = ledger.versions
        let locals = ledger.locals
        let forbidden = ledger.forbidden
        var versionsBySha: [String: [ChaosInboundLedger.Version]] = [:]
        for version in versions { versionsBySha[version.sha256, default: []].append(version) }
        let localShas = Set(locals.map(\.sha256))

        // 1. Every file that appeared in download_to holds one complete version, under that version's name.
        // A version is its name and bytes: two empty files of two names are two versions.
        func key(_ version: ChaosInboundLedger.Version) -> String { "\(version.name.bytes)|\(version.sha256)" }
        var placementsByVersion: [String: [ChaosPlacement]] = [:]
        for placement in o.placements {
            if localShas.contains(placement.sha256), locals.contains(where: { $0.name == placement.name && $0.sha256 == placement.sha256 }) { continue }
            if let forbid = forbidden.first(where: { $0.sha256 == placement.sha256 }) {
                violation("OUTSIDE THE RULE", "\(placement.name)", forbid.producer, "download_to got the bytes of \(forbid.name), \(forbid.why)")
                continue
            }
            guard let matches = versionsBySha[placement.sha256] else {
                let prefixOf = versions.first { placement.data.count < $0.data.count && $0.data.starts(with: placement.data) }
                if let prefixOf {
                    violation("PARTIAL", "\(placement.name)", prefixOf.producer,
                              "download_to holds \(placement.data.count) bytes that are the first \(placement.data.count) of \(prefixOf.data.count) of a version of \(prefixOf.name): a partner file retrieved before it was complete")
                } else {
                    violation("UNKNOWN BYTES", "\(placement.name)", "-", "download_to holds \(placement.data.count) bytes that match no version the partner wrote (sha256 \(placement.sha256.prefix(12)))")
                }
                continue
            }
            guard let version = matches.first(where: { isPlacementName(placement.name, for: $0.name) }) else {
                violation("WRONG VERSION", "\(placement.name)", matches[0].producer,
                          "download_to holds, under this name, the bytes of a version of \(matches[0].name)")
                continue
            }
            placementsByVersion[key(version), default: []].append(placement)
        }

        // 2. Exactly once: a version placed under two inodes was downloaded twice.
        for version in versions {
            let placements = placementsByVersion[key(version)] ?? []
            let inodes = Set(placements.map { "\($0.name.bytes)|\($0.inode)" })
            if inodes.count > 1 {
                violation("DUPLICATE", "\(version.name)", version.producer,
                          "placed \(inodes.count) times: \(placements.map { "\($0.name) (inode \($0.inode))" }.joined(separator: ", "))")
            }
        }

        // The one window docs/inbound.md admits: SFTP has no conditional delete, so a version the partner
        // writes between ferry's confirming listing and its StartRemoteDelete/StartRemoteMove is removed
        // with the name. Such a version was never in any listing before the call, so it was never
        // promised: counted and noted, not owed. One that a listing had shown is a broken promise (4.).
        let victims = windowVictims(versions: versions, ops: o.partnerOps) { placementsByVersion[key($0)] != nil }
        let windowVictims = Set(victims.map { key($0.version) })
        for (version, op) in victims {
            verdict.warnings.append("known window: \(version.name) (\(version.producer)) was written after ferry's confirming listing and \(op.op)d with the name by after_retrieve before any listing showed it (docs/inbound.md: no conditional delete over SFTP)")
        }

        // 3. Every owed version is placed or reported.
        var owed = 0, placedOwed = 0, reportedOwed = 0, released = 0, releasedPlaced = 0
        for version in versions {
            let placed = placementsByVersion[key(version)] != nil
            guard version.owed, !windowVictims.contains(key(version)) else {
                released += 1
                if placed { releasedPlaced += 1 }
                continue
            }
            owed += 1
            if placed { placedOwed += 1; continue }
            if reported(version, rows: o.journal, onConflict: plan.onConflict) {
                reportedOwed += 1
                let row = o.journal.first { lastComponent($0.remotePath) == version.name && $0.size == version.data.count }
                if row?.state == "failed" { verdict.warnings.append("\(version.name) (\(version.producer)) reported failed, not placed: \(row?.lastError ?? "")") }
                continue
            }
            let rows = o.journal.filter { lastComponent($0.remotePath) == version.name }
            let fetched = o.partnerOps.contains { $0.op == "retrieve" && $0.sha256 == version.sha256 }
            let removed = o.partnerOps.first { ($0.op == "delete" || $0.op == "move") && $0.ok && $0.sha256 == version.sha256 }
            violation("LOST", "\(version.name)", version.producer, """
                \(version.data.count) bytes never placed in download_to nor reported; \(fetched ? "a retrieval fetched its bytes into S3" : "no retrieval fetched its bytes")\
                \(removed.map { "; the partner's copy was \($0.op)d at \(String(format: "%.1f", $0.ts))" } ?? ""); journal: \
                \(rows.isEmpty ? "no row" : rows.map { "\($0.state) size \($0.size)\($0.lastError.isEmpty ? "" : " (\($0.lastError.prefix(160)))")" }.joined(separator: "; "))
                """)
        }

        // 4. The partner's copy is deleted or moved only after that version was placed; never with keep, a
        //    skipped version, a partial upload or a refused name.
        for op in o.partnerOps where (op.op == "delete" || op.op == "move") && op.ok {
            let name = lastComponent(op.remotePath)
            if plan.afterRetrieve == "keep" {
                violation("DESTROYED", "\(name)", "-", "after_retrieve is keep, yet the partner's copy was \(op.op)d")
                continue
            }
            guard let sha = op.sha256 else {
                verdict.warnings.append("the emulator could not read what it \(op.op)d at \(op.remotePath)")
                continue
            }
            if let forbid = forbidden.first(where: { $0.sha256 == sha }) {
                violation("DESTROYED", "\(name)", forbid.producer, "\(forbid.why), yet the partner's copy was \(op.op)d")
                continue
            }
            guard let version = versionsBySha[sha]?.first(where: { $0.name == name }) else {
                let prefixOf = versions.first { $0.name == name && (op.size ?? 0) < $0.data.count }
                violation("DESTROYED", "\(name)", prefixOf?.producer ?? "-",
                          "the partner's copy was \(op.op)d holding \(op.size ?? -1) bytes that are no complete version\(prefixOf.map { " (a version has \($0.data.count)): an upload still in progress" } ?? "")")
                continue
            }
            let placements = placementsByVersion[key(version)] ?? []
            if windowVictims.contains(key(version)) { continue }
            if placements.isEmpty {
                violation("DESTROYED UNPLACED", "\(name)", version.producer,
                          "the partner's copy was \(op.op)d at \(String(format: "%.3f", op.ts)) but this version was never placed in download_to\(plan.onConflict == "skip" ? " (a skipped version must stay on the partner)" : "")")
            } else if let first = placements.map(\.ctime).min(), first > op.ts {
                violation("DESTROYED BEFORE PLACED", "\(name)", version.producer,
                          String(format: "the partner's copy was %@d at %.3f, %.3f s before the version got its name in download_to", op.op, op.ts, first - op.ts))
            }
        }
        // StartRemoteDelete/StartRemoteMove answer before the partner acts and have no status API, so a
        // call the partner refused (a move onto a name the archive already holds) is invisible to ferry.
        let refusedOps = o.partnerOps.filter { ($0.op == "delete" || $0.op == "move") && !$0.ok && $0.sha256 != nil }
        if !refusedOps.isEmpty {
            verdict.warnings.append("\(refusedOps.count) after_retrieve call(s) failed on the partner (the partner's copy stayed): "
                + refusedOps.prefix(5).map { "\($0.op) \(lastComponent($0.remotePath))\($0.target.map { " → \($0)" } ?? ""): \($0.error ?? "")" }.joined(separator: "; "))
        }
        let removals = o.partnerOps.filter { ($0.op == "delete" || $0.op == "move") && $0.ok }
        let repeatedRemovals = Dictionary(grouping: removals) { "\($0.sha256 ?? "")|\(Array($0.remotePath.utf8))" }.filter { $0.value.count > 1 }
        if !repeatedRemovals.isEmpty { verdict.warnings.append("\(repeatedRemovals.count) version(s) removed from the partner more than once (each later call found it gone or moved again)") }

        // 5. Names that must never be retrieved: not fetched, not placed; hostile ones reported as refused.
        for forbid in forbidden {
            if o.partnerOps.contains(where: { $0.op == "retrieve" && lastComponent($0.remotePath) == forbid.name }) {
                violation("OUTSIDE THE RULE", "\(forbid.name)", forbid.producer, "\(forbid.why), yet it was retrieved into S3")
            }
            if let tag = forbid.refusalTag {
                let refusedLines = o.log.split(separator: UInt8(ascii: "\n")).filter { line in
                    occurrences(of: "refused", in: Array(line)) > 0 && occurrences(of: tag, in: Array(line)) > 0
                }
                let refusedRow = o.journal.contains { $0.state == "refused" && $0.remotePath.contains(tag) }
                if refusedLines.isEmpty && !refusedRow {
                    violation("UNREPORTED REFUSAL", "\(forbid.name)", forbid.producer, "\(forbid.why): neither ferry's log nor the journal says it was refused")
                }
            }
        }

        // 6. Nothing written outside download_to, nothing but final files and ferry's temporary files in it.
        for path in o.outsideDownloadTo {
            violation("OUTSIDE DOWNLOAD_TO", path, "-", "a file appeared outside download_to")
        }
        for stray in o.strays { violation("STRAY IN DOWNLOAD_TO", stray, "-", "download_to held something that is not a placed file") }

        // Notes: not broken promises, but worth a look.
        if !o.leftoverTemporaryFiles.isEmpty { verdict.warnings.append("temporary files left in download_to at the end: \(o.leftoverTemporaryFiles.joined(separator: ", "))") }
        // After the drain a live version is retrieved; a row still `listed` is one whose version went.
        let stuckListed = o.journal.filter { $0.state == "listed" }
        if !stuckListed.isEmpty {
            verdict.warnings.append("\(stuckListed.count) journal row(s) stay `listed` for a version the partner replaced or removed before its second look (never retrieved; shown as waiting): "
                + stuckListed.prefix(5).map { "\(lastComponent($0.remotePath)) size \($0.size)" }.joined(separator: ", "))
        }
        if !o.drained {
            let unfinished = o.journal.filter { ChaosInboundRun.unfinishedStates.contains($0.state) }
            verdict.warnings.append("the drain did not finish: \(unfinished.count) unfinished journal row(s)\(unfinished.isEmpty ? "" : ": ")"
                + unfinished.prefix(10).map { "\(lastComponent($0.remotePath)) \($0.state) size \($0.size)\($0.lastError.isEmpty ? "" : " (\($0.lastError.prefix(200)))")" }.joined(separator: "; "))
        }
        if plan.afterRetrieve != "keep" {
            let skippedNames = Set(o.journal.filter { $0.lastError.hasPrefix("skipped:") }.map { lastComponent($0.remotePath) })
            let untaken = Set(forbidden.map(\.name))
            let left = o.partnerLeft.filter { !untaken.contains($0) && !skippedNames.contains($0) && $0.bytes.first != UInt8(ascii: ".") }
            if !left.isEmpty { verdict.warnings.append("after_retrieve \(plan.afterRetrieve) left \(left.count) file(s) on the partner: \(left.prefix(8).map(\.description).joined(separator: ", "))") }
        }
        verdict.warnings += ledger.notes
        verdict.warnings += o.unexpectedExits
        if o.stopStatus != 0 { verdict.warnings.append("SIGTERM at the end: ferry exited with \(o.stopStatus.map(String.init) ?? "nothing (killed after 35 s)")") }
        let retrievals = o.partnerOps.filter { $0.op == "retrieve" }.count
        verdict.summary = String(format: """
            seed %llu: %d versions (%d owed: %d placed, %d reported; %d superseded or withdrawn, %d of them placed anyway), \
            %d forbidden names, %d local collisions; %d retrievals, %d remote deletes/moves (%d in the known window), %d temporary files seen; \
            %d starts of ferry, %.0f s producing, %.0f s in all; %d violations
            """, seed, versions.count, owed, placedOwed, reportedOwed, released, releasedPlaced, forbidden.count, locals.count, retrievals,
            removals.count, windowVictims.count, o.temporaryFilesSeen, o.starts, o.producedSeconds, o.totalSeconds, verdict.violations.count)
        return verdict
    }
}
