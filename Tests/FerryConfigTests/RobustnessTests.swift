import Foundation
import Testing
import FerryConfig
import FerryTestSupport

/// Damages a rules file the ways editors, copy-paste and disks do.
enum Mutator {
    /// Bytes that tend to change YAML's structure rather than just a value.
    static let structural: [UInt8] = Array(":-[]{}#&*!|>'\"\t\n ,?%@`\\".utf8) + [0x00, 0xFF, 0xC3]

    static func mutate(_ original: [UInt8], index: Int) -> [UInt8] {
        var random = SeededGenerator(state: 0xFE44_5EED ^ UInt64(index))
        var bytes = original
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            guard !bytes.isEmpty else { break }
            switch Int.random(in: 0..<6, using: &random) {
            case 0: // truncation
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &random)))
            case 1: // byte flip
                let at = Int.random(in: 0..<bytes.count, using: &random)
                bytes[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
            case 2: // a structural character replaced or inserted
                let at = Int.random(in: 0..<bytes.count, using: &random)
                let byte = structural.randomElement(using: &random)!
                if Bool.random(using: &random) { bytes[at] = byte } else { bytes.insert(byte, at: at) }
            default:
                var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
                let at = Int.random(in: 0..<lines.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: // deleted line
                    lines.remove(at: at)
                case 1: // shuffled indentation
                    let body = lines[at].drop { $0 == UInt8(ascii: " ") }
                    lines[at] = Array(repeating: UInt8(ascii: " "), count: Int.random(in: 0...10, using: &random)) + body
                default: // duplicated or swapped line
                    let other = Int.random(in: 0..<lines.count, using: &random)
                    if Bool.random(using: &random) { lines.insert(lines[at], at: other) } else { lines.swapAt(at, other) }
                }
                bytes = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
            }
        }
        return bytes
    }

    static func example() throws -> [UInt8] {
        Array(try Repository.text("rules.example.yaml").utf8)
    }
}

@Test func tenThousandMutatedRulesFilesAlwaysGiveRulesOrErrors() throws {
    let example = try Mutator.example()
    var valid = 0, invalid = 0
    for index in 0..<10_000 {
        let mutant = Mutator.mutate(example, index: index)
        let result = RulesLoader.load(contents: mutant, path: "mutant-\(index).yaml")
        if result.rules != nil {
            #expect(result.errors.isEmpty, "mutant \(index) gave rules and errors")
            valid += 1
        } else {
            #expect(!result.errors.isEmpty, "mutant \(index) gave neither rules nor an error")
            invalid += 1
        }
        for diagnostic in result.diagnostics {
            #expect(diagnostic.line >= 1 && diagnostic.column >= 1, "mutant \(index): \(diagnostic)")
        }
    }
    // Both outcomes must occur, or the mutations are not exercising the validator.
    #expect(valid > 100 && invalid > 1000, "valid \(valid), invalid \(invalid)")
}

@Test func ferryValidateExitsZeroOrSeventyEightOnMutatedFiles() throws {
    let folder = try TempDirectory(prefix: "ferry-mutants")
    let example = try Mutator.example()
    var statuses: [Int32: Int] = [:]
    // A different slice of the same sequence than the in-process test, so the binary sees fresh cases.
    for index in 20_000..<20_300 {
        let path = "\(folder.path)/mutant-\(index).yaml"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(Mutator.mutate(example, index: index))))
        let result = try FerryBinary.run(["validate", "--config", path])
        statuses[result.status, default: 0] += 1
        #expect(result.status == 0 || result.status == 78, "mutant \(index) exited \(result.status): \(result.stderr)")
        if result.status == 78 {
            #expect(result.stderr.contains("\(path):"), "mutant \(index) failed without a located diagnostic")
        } else {
            #expect(result.stdout.hasPrefix("\(path): OK"))
        }
    }
    #expect(statuses[0, default: 0] > 0 && statuses[78, default: 0] > 0, "\(statuses)")
}
