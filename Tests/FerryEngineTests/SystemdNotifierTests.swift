import Foundation
import Testing
import FerryTestSupport
@testable import FerryEngine

/// Plays systemd's side: a real `AF_UNIX` datagram socket the notifier sends to.
final class NotifyListener {
    let address: String
    private let descriptor: Int32

    /// Binds a socket at `path`, or at the abstract name `@name` when `path` starts with `@`.
    init(_ path: String) throws {
        address = path
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        // A guard against a hung test run, not a timing assertion: a missing message fails the test.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        let bytes: [UInt8] = path.hasPrefix("@") ? [0] + Array(path.utf8.dropFirst()) : Array(path.utf8)
        withUnsafeMutableBytes(of: &storage.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count + (path.hasPrefix("@") ? 0 : 1))
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else {
            let error = errno
            close(descriptor)
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EIO)
        }
    }

    deinit { close(descriptor) }

    /// The next datagram, as text; throws when none arrives.
    func receive() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }
}

@Suite struct SystemdNotifierTests {
    @Test func sendsEachLifecycleMessageToAPathSocket() throws {
        let folder = try TempDirectory(prefix: "ferry-notify")
        let listener = try NotifyListener("\(folder.path)/notify.sock")
        let notifier = try SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.address])
        #expect(notifier.isEnabled)

        try notifier.ready()
        #expect(try listener.receive() == "READY=1")
        try notifier.status("2 rules active\n0 files waiting")
        #expect(try listener.receive() == "STATUS=2 rules active 0 files waiting")
        try notifier.watchdog()
        #expect(try listener.receive() == "WATCHDOG=1")
        try notifier.reloading()
        let reload = try listener.receive().split(separator: "\n")
        #expect(reload.first == "RELOADING=1")
        let stamp = try #require(reload.last?.split(separator: "=").last.flatMap { UInt64($0) })
        #expect(reload.count == 2 && reload[1].hasPrefix("MONOTONIC_USEC=") && stamp > 0)
        try notifier.stopping()
        #expect(try listener.receive() == "STOPPING=1")
    }

    @Test func sendsToAnAbstractSocket() throws {
        let name = "@ferry-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let listener = try NotifyListener(name)
        let notifier = try SystemdNotifier(environment: ["NOTIFY_SOCKET": name])
        try notifier.ready()
        #expect(try listener.receive() == "READY=1")
    }

    @Test func doesNothingWithoutNotifySocket() throws {
        let notifier = try SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000"])
        #expect(!notifier.isEnabled)
        try notifier.ready()
        try notifier.status("running")
        try notifier.watchdog()
        try notifier.stopping()
        // The watchdog interval still follows the environment; feeding it is then harmless.
        #expect(notifier.watchdogInterval == .milliseconds(500))
    }

    @Test func watchdogIntervalIsHalfOfWatchdogUsecForThisProcessOnly() throws {
        let me = getpid()
        func interval(_ environment: [String: String]) throws -> Duration? {
            try SystemdNotifier(environment: environment, processID: me).watchdogInterval
        }
        #expect(try interval(["WATCHDOG_USEC": "3000000"]) == .milliseconds(1500))
        #expect(try interval(["WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "\(me)"]) == .milliseconds(1500))
        #expect(try interval(["WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "\(me + 1)"]) == nil)
        #expect(try interval(["WATCHDOG_USEC": "0"]) == nil)
        #expect(try interval(["WATCHDOG_USEC": "soon"]) == nil)
        #expect(try interval([:]) == nil)
    }

    @Test func rejectsAnAddressThatIsNeitherAPathNorAbstract() {
        #expect {
            try SystemdNotifier(environment: ["NOTIFY_SOCKET": "run/systemd/notify"])
        } throws: { error in
            (error as? SystemdNotifierError)?.code == .invalidAddress
        }
        let tooLong = "/" + String(repeating: "x", count: 200)
        #expect {
            try SystemdNotifier(environment: ["NOTIFY_SOCKET": tooLong])
        } throws: { error in
            (error as? SystemdNotifierError)?.code == .invalidAddress
        }
    }

    @Test func reportsErrnoWhenNobodyListens() throws {
        let folder = try TempDirectory(prefix: "ferry-notify")
        let notifier = try SystemdNotifier(environment: ["NOTIFY_SOCKET": "\(folder.path)/absent.sock"])
        let error = try #require(throws: SystemdNotifierError.self) { try notifier.ready() }
        #expect(error.code == .sendFailed)
        #expect(error.errno == .noSuchFileOrDirectory)
        #expect(error.message.contains("absent.sock") && error.message.contains("No such file"))
    }
}
