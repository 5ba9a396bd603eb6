import Foundation

/// A real HTTP receiver on 127.0.0.1 for alert tests: a small Python `http.server` that records every
/// POST (path, headers, body) as one JSON line, or — `hanging` — accepts connections and never answers.
/// Stopped by its pid in deinit.
public final class WebhookReceiver: @unchecked Sendable {
    /// One request as received.
    public struct Request: Sendable {
        public let path: String
        public let headers: [String: String]
        public let body: Data
    }

    public let process: Process
    public let port: Int
    private let recordPath: String
    private let directory: TempDirectory

    public var url: String { "http://127.0.0.1:\(port)/ferry-alerts" }

    static let script = #"""
        import http.server, json, socket, sys, threading, time
        mode, record, port_file = sys.argv[1], sys.argv[2], sys.argv[3]
        lock = threading.Lock()
        def write(entry):
            with lock, open(record, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if mode == "hang":
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(64)
            open(port_file, "w").write(str(server.getsockname()[1]))
            held = []
            while True:
                connection, _ = server.accept()
                held.append(connection)  # never read from, never answered, never closed
                write({"accepted": time.time()})
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                write({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode("utf-8")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        open(port_file, "w").write(str(server.server_address[1]))
        server.serve_forever()
        """#

    /// Starts the receiver; `hanging` accepts and never answers.
    public init(hanging: Bool = false) throws {
        directory = try TempDirectory(prefix: "webhook-receiver")
        recordPath = directory.path + "/requests.jsonl"
        let scriptPath = directory.path + "/receiver.py"
        let portFile = directory.path + "/port"
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestSupportError("python3 is needed for the webhook receiver: apt-get install python3")
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [scriptPath, hanging ? "hang" : "record", recordPath, portFile]
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        var port = 0
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let value = Int(text) { port = value; break }
            guard process.isRunning else { break }
            usleep(20_000)
        }
        guard port > 0 else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw TestSupportError("the webhook receiver (python3 http.server) did not start")
        }
        self.port = port
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    private var lines: [[String: Any]] {
        let text = (try? String(contentsOfFile: recordPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The POSTs received so far, in order.
    public var requests: [Request] {
        lines.compactMap { line in
            guard let path = line["path"] as? String, let body = line["body"] as? String else { return nil }
            return Request(path: path, headers: line["headers"] as? [String: String] ?? [:], body: Data(body.utf8))
        }
    }

    /// How many connections a hanging receiver has accepted.
    public var acceptedConnections: Int { lines.filter { $0["accepted"] != nil }.count }
}

/// A test prerequisite or helper failed; the message says how to fix it.
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
