"""The emulator's HTTP/1.1 server: werkzeug's threaded server and request environ, with keep-alive.

werkzeug's development server answers every request with `Connection: close` (it cannot tell where an
unread request body ends). Real AWS endpoints keep connections open, and a client that pays a TCP
connect and close per request here would be measured doing work it does not do against AWS. This
handler keeps the connection open whenever it can frame both directions exactly:

- the request body is read through a stream that knows its length (Content-Length or chunked), and
  whatever the application left unread is drained before the next request is parsed;
- the response carries Content-Length, or is sent chunked, or the connection is closed after it.

It closes the connection when the client asks (`Connection: close`, HTTP/1.0), when a body could not
be drained, after an injected "drop" fault (the application shut the socket down), and after a
connection has been idle for `IDLE_SECONDS`.
"""
from __future__ import annotations

import itertools
import socket
import sys

from werkzeug.serving import WSGIRequestHandler, make_server

IDLE_SECONDS = 120
_DRAIN_LIMIT = 64 << 20
_NO_BODY_STATUS = {204, 304}


class _CountedInput:
    """A request body of known length: reads never run into the next request on the connection."""

    def __init__(self, stream, length: int):
        self.stream, self.remaining = stream, length

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.stream.read(size)
        self.remaining -= len(data)
        if len(data) < size:
            self.remaining = 0
            raise ConnectionError("the client closed the connection inside a request body")
        return data

    def readline(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.stream.readline(size)
        self.remaining -= len(data)
        return data

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self) -> bool:
        """Reads what the application left; False when too much is left to be worth reading."""
        if self.remaining > _DRAIN_LIMIT:
            return False
        while self.remaining > 0:
            if not self.read(min(self.remaining, 1 << 20)):
                return False
        return True


class KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def run_wsgi(self) -> None:  # called by werkzeug for every HTTP method
        environ = self.make_environ()
        counted = None
        if "wsgi.input_terminated" not in environ:  # not chunked: the body is exactly CONTENT_LENGTH bytes
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.send_error(400, "bad Content-Length")
                self.close_connection = True
                return
            counted = _CountedInput(self.rfile, length)
            environ["wsgi.input"] = counted
        if self.headers.get("Connection", "").lower() == "close" or self.request_version != "HTTP/1.1":
            self.close_connection = True
        self.environ = environ
        try:
            self._respond(environ)
        except (ConnectionError, socket.timeout, OSError):
            self.close_connection = True
            return
        # Frame the next request: whatever body the application did not read must go first.
        try:
            if counted is not None:
                if not counted.drain():
                    self.close_connection = True
            elif environ["wsgi.input"].read(_DRAIN_LIMIT + 1)[_DRAIN_LIMIT:]:
                self.close_connection = True
        except (ConnectionError, socket.timeout, OSError, ValueError):
            self.close_connection = True

    def _respond(self, environ) -> None:
        state: dict = {}
        written: list[bytes] = []

        def start_response(status, headers, exc_info=None):
            if exc_info and state.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"], state["headers"] = status, list(headers)
            return written.append  # the legacy write() callable

        try:
            result = self.server.app(environ, start_response)
        except (ConnectionError, socket.timeout):
            raise
        except Exception as e:  # the application failed: a 500, and a fresh connection next time
            self._internal_error(environ, e)
            return
        try:
            names = {name.lower() for name, _ in state.get("headers", [])}
            code = int(state.get("status", "500").split(" ", 1)[0])
            if "content-length" in names or environ["REQUEST_METHOD"] == "HEAD" or code in _NO_BODY_STATUS:
                # Framed by the application (large GetObject bodies stream through here).
                sent = self._send_head(state, None)
                for data in itertools.chain(written, result):
                    if data and environ["REQUEST_METHOD"] != "HEAD" and code not in _NO_BODY_STATUS:
                        self.wfile.write(data)
                        sent += len(data)
            else:
                body = b"".join(itertools.chain(written, result))
                self._send_head(state, len(body))
                self.wfile.write(body)
                sent = len(body)
            self.wfile.flush()
            self.log_request(code, sent)
        except (ConnectionError, socket.timeout):
            raise
        except Exception as e:
            if state.get("sent"):
                self.close_connection = True  # part of a response went out: the only honest end is a close
                print(f"emulator: error while answering {environ.get('REQUEST_METHOD')} {environ.get('RAW_URI')}: {e!r}", file=sys.stderr)
            else:
                self._internal_error(environ, e)
        finally:
            if hasattr(result, "close"):
                result.close()

    def _send_head(self, state: dict, length: int | None) -> int:
        status = state["status"]
        code, _, reason = status.partition(" ")
        self.send_response_only(int(code), reason)
        names = {name.lower() for name, _ in state["headers"]}
        # As werkzeug (and AWS) do: clients correct clock skew from Date.
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        if "server" not in names:
            self.send_header("Server", self.version_string())
        for name, value in state["headers"]:
            if name.lower() != "connection":
                self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        state["sent"] = True
        return 0

    def _internal_error(self, environ, error: Exception) -> None:
        print(f"emulator: error in request {environ.get('REQUEST_METHOD')} {environ.get('RAW_URI')}: {error!r}", file=sys.stderr)
        self.close_connection = True
        body = b"internal error in the emulator\n"
        self._send_head({"status": "500 Internal Server Error", "headers": [("Content-Type", "text/plain")]}, len(body))
        self.wfile.write(body)
        self.wfile.flush()


def make_keep_alive_server(host: str, port: int, app):
    server = make_server(host, port, app, threaded=True, request_handler=KeepAliveHandler)
    server.daemon_threads = True
    return server
