#!/usr/bin/env python3
"""An HTTP/1.1 server on 127.0.0.1 that closes connections, for tests of the connection pool.

Prints {"port": N} once listening.
  GET /echo/<text>   answers <text> and keeps the connection open, but closes any connection that
                     stays idle for 0.2 s (as load balancers close idle keep-alive connections);
  GET /close/<text>  answers <text> with "Connection: close" and closes the connection.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 0.2  # idle connections are closed after this long

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, _, text = self.path.lstrip("/").partition("/")
        body = text.encode()
        self.send_response(200 if kind in ("echo", "close") else 404)
        self.send_header("Content-Length", str(len(body)))
        if kind == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
