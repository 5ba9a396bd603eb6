import FerrySystem
import FerryTestSupport
import Foundation
import Testing

/// One type for a local file's version, whoever takes it: the stat fields, and the identity a rename
/// keeps and a replacement changes.
struct FileVersionTests {
    @Test func versionOfARealFileAndItsIdentity() throws {
        let dir = try TempDirectory()
        let path = dir.path + "/a.edi"
        try Data("12345".utf8).write(to: URL(fileURLWithPath: path))
        var info = stat()
        #expect(lstat(path, &info) == 0)
        let version = FileVersion(info)
        #expect(version.size == 5)
        #expect(version.inode == UInt64(info.st_ino) && version.device == UInt64(info.st_dev))
        #expect(version.mtimeNanoseconds == Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))

        // Renamed: the same file. Rewritten in place: the same file, another version.
        #expect(rename(path, dir.path + "/b.edi") == 0)
        #expect(lstat(dir.path + "/b.edi", &info) == 0)
        #expect(FileVersion(info) == version)
        try Data("1234567".utf8).write(to: URL(fileURLWithPath: dir.path + "/c.edi"))
        #expect(rename(dir.path + "/c.edi", dir.path + "/b.edi") == 0)
        #expect(lstat(dir.path + "/b.edi", &info) == 0)
        let replaced = FileVersion(info)
        #expect(replaced != version)
        #expect(replaced.identity != version.identity, "another file renamed over the name is another identity")
        #expect(replaced.identity == FileIdentity(device: replaced.device, inode: replaced.inode))
    }
}
