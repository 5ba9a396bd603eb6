import FerryStore

/// A file the outbound pipeline holds in memory between the journal and StartFileTransfer, with its place
/// in its rule's window (`OutboundBacklog`).
struct Admitted: Sendable {
    var file: OutboundFile
    var ticket: BacklogTicket?
}

/// A file's place in its rule's window. ARC does the counting: the place is free again when the last copy
/// of the ticket is gone, whichever way the file left the pipeline's memory (submitted, dropped, set aside,
/// its rule gone, the pipeline stopped) — there is no exit to forget.
final class BacklogTicket: Sendable {
    let rule: String
    private let backlog: OutboundBacklog

    fileprivate init(rule: String, backlog: OutboundBacklog) {
        self.rule = rule
        self.backlog = backlog
    }

    deinit { backlog.release(rule) }
}

/// How many files of each rule the outbound pipeline holds in memory, and where the rest wait: in the
/// journal, as `detected` rows, read back a page at a time as room frees up.
///
/// Every journaled file used to go straight into the upload queue, and from there to the batcher and the
/// connector's submit queue: a partner slower than the files arriving made all of them live in memory at
/// once (the 200,000-file soak: a backlog of 73,000 files, tens of MB of heap), and glibc keeps much of
/// such a peak resident after it is sent (freed memory in pages that still hold something). Now each rule
/// has a window of `window` files from upload to StartFileTransfer; beyond it files wait on disk, where
/// they already are, and a backlog's size no longer decides the daemon's memory.
///
/// Per rule (not per connector: a reload may move a rule to another connector): `cursor`, the highest id
/// handed to the pipeline — every `detected` row of the rule at or below it has been — and `spilled`, set
/// while rows above it may wait in the journal. A rule's files keep their journal order.
final class OutboundBacklog: Sendable {
    private struct RuleState {
        var held = 0
        var cursor: Int64 = 0
        var spilled = false
        /// `admit` left rows to the journal while a refill was reading it: that refill may not have seen
        /// them, so it must not end the spill.
        var missed = false
    }

    /// Files per rule held in memory between the journal and StartFileTransfer.
    let window: Int
    /// At or below this many held, a spilled rule is refilled (half the window: pages, not a file at a time).
    var lowWater: Int { window / 2 }
    private let rules = Locked<[String: RuleState]>([:])
    private let fetch: @Sendable (_ rule: String, _ afterID: Int64, _ limit: Int) throws -> [OutboundFile]
    private let kicks: AsyncStream<Void>
    private let kick: AsyncStream<Void>.Continuation

    /// `fetch` reads a page of a rule's `detected` rows above an id, in id order (the journal).
    init(window: Int, fetch: @escaping @Sendable (_ rule: String, _ afterID: Int64, _ limit: Int) throws -> [OutboundFile]) {
        self.window = max(1, window)
        self.fetch = fetch
        (kicks, kick) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The default window: enough for 16 uploads, partial batches of many folders and every in-flight
    /// slot of a fast connector; small enough that a backlog of any size costs a few MB.
    static let defaultWindow = 2_000

    /// At start: whatever these rules have `detected` waits in the journal and is read back in pages.
    func spill(rules names: [String]) {
        rules.withLock { rules in
            for name in names { rules[name, default: RuleState()].spilled = true }
        }
        kick.yield()
    }

    /// Takes newly journaled files (in id order): those that fit their rule's window go on now; the rest
    /// stay in the journal for `refill`. A file a refill already handed on is not handed on twice.
    func admit(_ files: [OutboundFile]) -> [Admitted] {
        var admitted: [Admitted] = []
        var left = false
        rules.withLock { rules in
            for file in files {
                var rule = rules[file.rule, default: RuleState()]
                defer { rules[file.rule] = rule }
                guard file.id > rule.cursor else { continue }
                if !rule.spilled, rule.held < window {
                    rule.held += 1
                    rule.cursor = file.id
                    admitted.append(Admitted(file: file, ticket: BacklogTicket(rule: file.rule, backlog: self)))
                } else {
                    rule.spilled = true
                    rule.missed = true
                    left = true
                }
            }
        }
        if left { kick.yield() }
        return admitted
    }

    /// A place for a file that re-enters the pipeline outside the journal's order (uploaded again after
    /// its staged copy vanished): counted, never refused.
    func extraTicket(rule: String) -> BacklogTicket {
        rules.withLock { $0[rule, default: RuleState()].held += 1 }
        return BacklogTicket(rule: rule, backlog: self)
    }

    fileprivate func release(_ name: String) {
        let crossed = rules.withLock { rules -> Bool in
            guard var rule = rules[name] else { return false }
            rule.held -= 1
            rules[name] = rule
            return rule.spilled && rule.held == lowWater
        }
        if crossed { kick.yield() }
    }

    /// Reads the next page of every spilled rule with room (at most the room each has) and hands it on.
    /// `more` is true when some rule may have more waiting and room for it (call again).
    func refill() -> (admitted: [Admitted], more: Bool) {
        let due = rules.withLock { rules -> [(name: String, cursor: Int64, room: Int)] in
            var due: [(String, Int64, Int)] = []
            for (name, rule) in rules where rule.spilled && rule.held <= lowWater {
                rules[name]?.missed = false
                due.append((name, rule.cursor, window - rule.held))
            }
            return due
        }
        var admitted: [Admitted] = []
        var more = false
        for (name, cursor, room) in due.sorted(by: { $0.name < $1.name }) {
            let page: [OutboundFile]
            do {
                page = try fetch(name, cursor, room)
            } catch {
                more = true  // the journal could not be read: the files wait there; the next tick tries again
                continue
            }
            rules.withLock { rules in
                var rule = rules[name] ?? RuleState()
                defer { rules[name] = rule }
                for file in page where file.id > rule.cursor {
                    rule.held += 1
                    rule.cursor = file.id
                    admitted.append(Admitted(file: file, ticket: BacklogTicket(rule: name, backlog: self)))
                }
                if page.count < room, !rule.missed {
                    rule.spilled = false  // caught up: the journal has nothing of this rule above the cursor
                } else if rule.held <= lowWater {
                    more = true
                }
            }
        }
        return (admitted, more)
    }

    /// Wakes `refill`'s loop (a tick: also without a release crossing the low water).
    func nudge() { kick.yield() }

    /// Whether some rule has files waiting in the journal.
    var isSpilled: Bool { rules.withLock { $0.values.contains { $0.spilled } } }

    /// Files of `rule` held in memory (tests, metrics).
    func held(_ rule: String) -> Int { rules.withLock { $0[rule]?.held ?? 0 } }

    /// Runs `deliver` with each refill, until cancelled; woken by releases, admissions that spilled, the
    /// start, and `nudge`.
    func run(deliver: @Sendable ([Admitted]) async -> Void) async {
        for await _ in kicks {
            // Again while a page came and more may wait; nothing read (the journal refused) waits for a tick.
            while !Task.isCancelled {
                let (admitted, more) = refill()
                guard !admitted.isEmpty else { break }
                await deliver(admitted)
                guard more else { break }
            }
        }
    }

    /// Ends `run`.
    func close() { kick.finish() }
}
