import FerryGlob
import Testing
@testable import FerryWatch

@Suite struct RoutingTests {
    /// The watcher splits FileFilter's decision into a per-folder and a per-file half for speed; together
    /// they must decide exactly as `FileFilter.accepts` does.
    @Test(arguments: [
        (["*.edi"], [String]()), ([], ["archive/**"]), (["in/**/*.csv"], ["*.bak"]), ([], ["tmp", "b?d*"]), ([], []),
    ])
    func folderAndFileHalvesDecideLikeFileFilter(include: [String], exclude: [String]) throws {
        let rule = try CompiledRule(WatchRule(id: "r", root: "/srv/out", recursive: true, include: include, exclude: exclude))
        let paths = ["a.edi", "a.csv", ".hidden", "x.tmp", "in/a/b/c.csv", "in/c.csv", "archive/old.edi", "archive/x/y.csv",
                     "tmp/a.edi", "bad/a.edi", "ok/bad.edi", ".ferry/sent/a.edi", "deep/.git/a.edi", "~lock", "dir.part/a.edi",
                     "a.edi.bak", "in/x.bak", "sub/file.swp", "sub/ok.csv"]
        for path in paths {
            let folder = path.contains("/") ? "/srv/out/" + path.split(separator: "/").dropLast().joined(separator: "/") : "/srv/out"
            let split = rule.relativeFolder(of: folder) != nil && rule.selects(path)
            #expect(split == rule.filter.accepts(path), "\(path) with include \(include) exclude \(exclude)")
        }
    }
}
