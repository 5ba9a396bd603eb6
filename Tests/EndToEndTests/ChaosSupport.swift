import CCrypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// Small, self-contained tools for the chaos test: its own PRNG (so a seed means the same plan on every
// Swift version), SHA-256 (the oracle compares what the partner got with what the producers wrote),
// byte-exact name handling (NFC and NFD twins are different files, though Swift's String calls them
// equal) and the few system calls the producers make.

/// SplitMix64: tiny, fast, and fully specified, so a seed replays the same plan anywhere. The helpers
/// below never use the standard library's `random(in:using:)`, whose algorithm is not a promise.
struct SplitMix64: Sendable {
    private(set) var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform integer in `range` (the bias of one modulo over 2^64 is irrelevant here).
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + Int(next() % span)
    }

    /// A uniform double in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func double(_ range: ClosedRange<Double>) -> Double {
        range.lowerBound + unit() * (range.upperBound - range.lowerBound)
    }

    mutating func chance(_ probability: Double) -> Bool { unit() < probability }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    /// One of `items`, each as likely as its weight.
    mutating func weighted<T>(_ items: [(T, Int)]) -> T {
        var roll = int(0...(items.reduce(0) { $0 + $1.1 } - 1))
        for (item, weight) in items {
            if roll < weight { return item }
            roll -= weight
        }
        return items[items.count - 1].0
    }

    /// A child generator for one independent part of the plan.
    mutating func fork() -> SplitMix64 { SplitMix64(seed: next()) }
}

/// SHA-256, hex encoded, by OpenSSL's EVP (the library ferry itself links): the oracle hashes every
/// file produced, delivered and archived, 100,000s in the soak, and a Swift implementation compiled
/// without optimisation (test builds) cost about as much CPU as ferry's own work.
enum SHA256 {
    static func hex(_ data: Data) -> String {
        // EVP_Digest wants a pointer even for no bytes; the digest of nothing is a constant.
        guard !data.isEmpty else { return "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = data.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress!, raw.count, &digest, &length, EVP_sha256(), nil)
        }
        precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(64)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// A file name compared byte for byte. Swift's `String ==` uses canonical equivalence, so "café" in NFC
/// and in NFD would be one key; on disk and on the partner they are two files.
struct ByteName: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]
    init(_ name: String) { bytes = Array(name.utf8) }
    init(bytes: [UInt8]) { self.bytes = bytes }
    var string: String { String(decoding: bytes, as: UTF8.self) }
    /// Shown with its scalars spelled out when it is not plain ASCII, so an NFD twin is visible as such.
    var description: String {
        let text = string
        guard bytes.contains(where: { $0 >= 0x80 }) else { return text }
        let scalars = text.unicodeScalars.map { $0.isASCII ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
        return "\(text) [\(scalars)]"
    }
}

/// The last path component of `path`, as bytes.
func lastComponent(_ path: String) -> ByteName {
    let bytes = Array(path.utf8)
    guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return ByteName(bytes: bytes) }
    return ByteName(bytes: Array(bytes[(slash + 1)...]))
}

/// Log lines to be asked, for many paths, whether any of them names a path (`containsPath`). Each line is
/// indexed by the 8 bytes after each `/` in it, so that a path is looked for only in the lines holding
/// its name's first 8 bytes after a slash: the soak asks this for every file against every possible-duplicate
/// warning, which grew with files × warnings (about a minute at 36,000 files, half an hour expected at 200,000).
/// The answer is the same as scanning every line; names shorter than 8 bytes are looked for in every line.
struct PathLines {
    static let keyLength = 8
    let lines: [[UInt8]]
    private var byKey: [UInt64: [Int]] = [:]

    init(_ lines: [[UInt8]]) {
        self.lines = lines
        for (index, line) in lines.enumerated() {
            var seen: Set<UInt64> = []
            var at = 0
            while at + Self.keyLength < line.count {
                if line[at] == UInt8(ascii: "/") {
                    let key = Self.key(line[(at + 1)...].prefix(Self.keyLength))
                    if seen.insert(key).inserted { byKey[key, default: []].append(index) }
                }
                at += 1
            }
        }
    }

    private static func key(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Whether any line names `path`: `containsPath(line, path)` for some line.
    func anyNames(_ path: String) -> Bool {
        let needle = Array(path.utf8)
        guard let slash = needle.lastIndex(of: UInt8(ascii: "/")), needle.count - slash - 1 >= Self.keyLength else {
            return lines.contains { containsPath($0, needle) }
        }
        let candidates = byKey[Self.key(needle[(slash + 1)...].prefix(Self.keyLength))] ?? []
        return candidates.contains { containsPath(lines[$0], needle) }
    }
}

/// Whether `haystack` holds `needle` followed by something that cannot continue a file name (so
/// `/o/a.edi` does not match inside `/o/a.edi.part`). The search is libc's `memchr` and `memcmp`: the soak's oracle
/// asks this for every one of 100,000 files against each warning line, and a byte loop compiled without
/// optimisation (test builds) took minutes there.
func containsPath(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    return haystack.withUnsafeBytes { hay in
        needle.withUnsafeBytes { pattern in
            var start = 0
            // memchr for the first byte, memcmp for the rest (Glibc's module has no memmem).
            while start + pattern.count <= hay.count,
                  let found = memchr(hay.baseAddress! + start, Int32(pattern[0]), hay.count - pattern.count + 1 - start) {
                let index = hay.baseAddress!.distance(to: UnsafeRawPointer(found))
                guard memcmp(found, pattern.baseAddress!, pattern.count) == 0 else {
                    start = index + 1
                    continue
                }
                let after = index + pattern.count
                if after == hay.count { return true }
                let next = hay[after]
                let continues = next >= 0x80 || next == UInt8(ascii: ".") || next == UInt8(ascii: "-") || next == UInt8(ascii: "_")
                    || (next >= UInt8(ascii: "0") && next <= UInt8(ascii: "9")) || (next >= UInt8(ascii: "a") && next <= UInt8(ascii: "z"))
                    || (next >= UInt8(ascii: "A") && next <= UInt8(ascii: "Z"))
                if !continues { return true }
                start = index + 1
            }
            return false
        }
    }
}

/// How many times `needle` occurs in `haystack`.
func occurrences(of needle: String, in haystack: [UInt8]) -> Int {
    let pattern = Array(needle.utf8)
    guard !pattern.isEmpty, haystack.count >= pattern.count else { return 0 }
    var count = 0
    var index = 0
    while index <= haystack.count - pattern.count {
        if haystack[index] == pattern[0], haystack[index..<(index + pattern.count)].elementsEqual(pattern) {
            count += 1
            index += pattern.count
        } else {
            index += 1
        }
    }
    return count
}

/// A failure of the test's own machinery (not a finding about ferry), with what to do about it.
struct ChaosSetupError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// The producers' system calls: plain POSIX, close-on-exec (so a ferry started while a slow writer
/// holds its file never inherits the writer's descriptor), EINTR retried.
enum ChaosFS {
    static func openForWriting(_ path: String, truncate: Bool = true) throws -> Int32 {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0)
        while true {
            let fd = open(path, flags, 0o644)
            if fd >= 0 { return fd }
            if errno != EINTR { throw ChaosSetupError(message: "open \(path) for writing: errno \(errno)") }
        }
    }

    static func writeAll(_ fd: Int32, _ data: Data) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw ChaosSetupError(message: "write: errno \(errno)")
                }
                offset += written
            }
        }
    }

    static func closeFile(_ fd: Int32) { _ = close(fd) }

    /// Creates (or truncates) `path`, writes `data` in one go and closes it.
    static func writeFile(_ path: String, _ data: Data) throws {
        let fd = try openForWriting(path)
        defer { closeFile(fd) }
        try writeAll(fd, data)
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw ChaosSetupError(message: "rename \(from) → \(to): errno \(errno)") }
    }

    static func symlink(target: String, at path: String) throws {
        guard Glibc.symlink(target, path) == 0 else { throw ChaosSetupError(message: "symlink \(path): errno \(errno)") }
    }

    static func hardLink(_ existing: String, _ new: String) throws {
        guard link(existing, new) == 0 else { throw ChaosSetupError(message: "link \(existing) → \(new): errno \(errno)") }
    }

    static func fifo(_ path: String) throws {
        guard mkfifo(path, 0o644) == 0 else { throw ChaosSetupError(message: "mkfifo \(path): errno \(errno)") }
    }

    /// `chmod` and `touch` through the descriptor of a file still open for writing (IN_ATTRIB events).
    static func chmodAndTouch(_ fd: Int32, mode: mode_t) {
        _ = fchmod(fd, mode)
        _ = futimens(fd, nil)
    }

    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Regular files under `folder`, recursively, without following symbolic links.
    static func regularFiles(under folder: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        var files: [String] = []
        for name in names {
            let path = folder + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFREG: files.append(path)
            case S_IFDIR: files += regularFiles(under: path)
            default: break
            }
        }
        return files
    }

    /// Runs a command to completion; returns its exit status and combined output.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}

/// POSTs `/faults` to the emulator's control endpoint with any body, so fault modes and fields added to
/// the emulator later (`lost_answer`, `late_504`, `operations`) can be played by name without waiting
/// for a Swift helper. Returns the status and body.
func postEmulatorControl(_ controlURL: String, path: String, body: [String: Any]) async throws -> (status: Int, body: String) {
    guard let url = URL(string: controlURL + path) else { throw ChaosSetupError(message: "bad control URL \(controlURL)") }
    var request = URLRequest(url: url, timeoutInterval: 15)
    request.httpMethod = "POST"
    request.httpBody = try JSONSerialization.data(withJSONObject: body)
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// Which of `kinds` the emulator knows: it refuses an unknown fault kind with 400, so a plan's new kinds
/// are played as soon as the emulator has them, and left out (with a note) until then.
func supportedFaultKinds(_ controlURL: String, of kinds: [String]) async throws -> Set<String> {
    var supported: Set<String> = []
    for kind in kinds {
        let answer = try await postEmulatorControl(controlURL, path: "/faults", body: ["rate": 0.0, "kinds": [kind], "latency_ms": 0])
        if answer.status == 200 { supported.insert(kind) }
    }
    return supported
}

/// The kinds of a fault window the emulator can play; `unavailable` when it knows none of them.
func playableFaultKinds(_ kinds: [String], supported: Set<String>) -> [String] {
    let playable = kinds.filter(supported.contains)
    return playable.isEmpty ? ["unavailable"] : playable
}
