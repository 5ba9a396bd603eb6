"""The emulator's HTTP/1.1 server keeps connections open, as AWS endpoints do, and frames every
request and response exactly, whatever the client sends or the application leaves unread."""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlparse


def _connection(emu) -> http.client.HTTPConnection:
    url = urlparse(emu.info["endpoint"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.connect()
    return conn


def _get(conn, path: str, headers: dict | None = None):
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def test_requests_share_one_connection(emu):
    conn = _connection(emu)
    local = conn.sock.getsockname()
    for _ in range(3):
        response, body = _get(conn, "/_emulator/health")
        assert response.status == 200 and json.loads(body) == {"ok": True}
        assert response.getheader("Connection") != "close"
        assert response.getheader("Date"), "clients correct clock skew from Date"
    assert conn.sock is not None and conn.sock.getsockname() == local, "the same TCP connection served every request"
    conn.close()


def test_unread_and_chunked_bodies_do_not_spill_into_the_next_request(emu):
    conn = _connection(emu)
    # A body the health endpoint never reads must be drained, or it would be parsed as the next request.
    conn.request("GET", "/_emulator/health", body=b"GET /not-a-request HTTP/1.1\r\n\r\n" * 20,
                 headers={"Content-Type": "text/plain"})
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"ok": True}
    # A chunked body (length unknown up front) is read to its end as well.
    conn.putrequest("POST", "/_emulator/faults")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    payload = json.dumps({"latency_ms": 0}).encode()
    conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["latency_ms"] == 0
    response, body = _get(conn, "/_emulator/health")
    assert response.status == 200 and json.loads(body) == {"ok": True}
    conn.close()


def test_connection_close_is_honoured(emu):
    url = urlparse(emu.info["endpoint"])
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break  # the server closed its end after the response
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert json.loads(body) == {"ok": True}


def test_errors_keep_their_framing(emu):
    conn = _connection(emu)
    response, body = _get(conn, "/_emulator/no-such-endpoint")
    assert response.status == 404 and b"no control endpoint" in body
    # Unsigned S3 request: an error document with a length, and the connection still usable.
    response, body = _get(conn, "/ferry-staging/some-key")
    assert response.status == 403 and b"<Error>" in body
    response, body = _get(conn, "/_emulator/health")
    assert response.status == 200
    conn.close()


def test_a_malformed_request_line_gets_an_error_not_a_hang(emu):
    url = urlparse(emu.info["endpoint"])
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"GET /a b c HTTP/1.1\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.")
