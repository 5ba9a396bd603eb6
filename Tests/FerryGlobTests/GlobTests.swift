import Testing
import FerryGlob

struct GlobTests {
    @Test(arguments: [
        ("*.edi", "invoice.edi", true),
        ("*.edi", "a/b/invoice.edi", true),
        ("*.edi", "invoice.edi.tmp", false),
        ("inv-??.xml", "inv-01.xml", true),
        ("inv-??.xml", "inv-1.xml", false),
        ("[a-c]*.csv", "b1.csv", true),
        ("[!a-c]*.csv", "b1.csv", false),
        ("[^a-c]*.csv", "d1.csv", true),
        ("reports/*.csv", "reports/x.csv", true),
        ("reports/*.csv", "reports/sub/x.csv", false),
        ("reports/**/*.csv", "reports/x.csv", true),
        ("reports/**/*.csv", "reports/a/b/x.csv", true),
        ("**/*.csv", "x.csv", true),
        ("a/**", "a/b/c", true),
        ("a/**", "b/c", false),
        ("\\*.txt", "*.txt", true),
        ("\\*.txt", "a.txt", false),
        ("*", "ünïcödé name.pdf", true),
        ("?", "é", true),
        ("x/*", "x/", true),
    ])
    func matching(pattern: String, path: String, expected: Bool) throws {
        #expect(try Glob(pattern).matches(path) == expected, "\(pattern) vs \(path)")
    }

    @Test(arguments: [
        ("", 1, "the pattern is empty"),
        ("[abc", 1, "'[' is never closed with ']'; write '\\[' for a literal bracket"),
        ("ab\\", 3, "a trailing '\\' escapes nothing; write '\\\\' for a backslash"),
        ("x[z-a]", 3, "range 'z-a' is reversed; write 'a-z'"),
        ("[a/b]", 3, "'/' cannot appear inside [...]: a set matches one character of a name"),
    ])
    func syntaxErrors(pattern: String, position: Int, reason: String) {
        #expect(throws: Glob.SyntaxError(position: position, reason: reason)) { try Glob(pattern) }
    }

    @Test func pathologicalPatternFinishes() throws {
        let glob = try Glob(String(repeating: "*a", count: 30) + "b")
        #expect(!glob.matches(String(repeating: "a", count: 200)))
    }

    @Test func defaultIgnoresAndHiddenFolders() throws {
        let filter = try FileFilter(include: ["*.edi"], exclude: ["draft-*"])
        #expect(filter.accepts("x.edi"))
        #expect(filter.accepts("sub/x.edi"))
        #expect(!filter.accepts(".x.edi"))
        #expect(!filter.accepts("x.edi.part"))
        #expect(!filter.accepts("~x.edi"))
        #expect(!filter.accepts("draft-1.edi"))
        #expect(!filter.accepts(".ferry/sent/x.edi"))
        #expect(!filter.accepts("x.csv"))
        let everything = try FileFilter(include: [], exclude: [])
        #expect(everything.accepts("a/b/c.bin"))
        #expect(!everything.accepts("a/.git/c.bin"))
    }
}

/// `FileFilter.refusal(of:)` names what `accepts` refuses by, for `ferry explain`; the two always agree.
struct FileFilterRefusalTests {
    @Test func eachRefusalNamesItsPatternAndAgreesWithAccepts() throws {
        let filter = try FileFilter(include: ["*.edi", "**/*.xml"], exclude: ["*.skip.edi"])
        let cases: [(String, FileFilter.Refusal?)] = [
            ("invoice.edi", nil),
            ("deep/a.xml", nil),
            (".hidden.edi", .excluded(by: ".*")),
            ("upload.edi.part", .excluded(by: "*.part")),
            ("report.skip.edi", .excluded(by: "*.skip.edi")),
            ("notes.txt", .notIncluded),
            (".cache/a.xml", .folderExcluded(folder: ".cache", by: ".*")),
        ]
        for (path, expected) in cases {
            #expect(filter.refusal(of: path) == expected, "\(path)")
            #expect(filter.accepts(path) == (expected == nil), "\(path)")
        }
    }
}
