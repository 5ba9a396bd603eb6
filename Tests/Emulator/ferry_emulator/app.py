"""The emulator's front door: one WSGI app that logs, injects faults, checks signatures and routes
to moto's S3 or to our Transfer Family service; plus the unsigned control endpoint under /_emulator."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import socket
import threading
import time
import uuid
from email.utils import formatdate
from io import BytesIO
from urllib.parse import unquote
from xml.sax.saxutils import escape

try:
    import crc32c as _crc32c
except ImportError as e:  # pragma: no cover - a set-up problem, named clearly
    raise SystemExit("the emulator needs the crc32c module to check x-amz-checksum-crc32c: "
                     "pip install crc32c (make deps installs it)") from e

from .sigv4 import AuthError, Verifier
from .transfer import TransferError, TransferService

CONTROL_PREFIX = "/_emulator"
FAULT_KINDS = ("throttle", "unavailable", "internal", "slowdown", "drop", "lost_answer", "late_504", "access_denied")
# Faults that strike after the operation was performed, as a real lost answer does: the work is done
# (a transfer queued, an object written) and only the answer goes missing or turns into a 504.
AFTER_WORK_KINDS = ("lost_answer", "late_504")
# What the default kind list (no kinds given) draws from: the answered-before-any-work errors only.
DEFAULT_KINDS = ("throttle", "unavailable", "internal", "slowdown")
_S3_CODE = re.compile(rb"<Code>([^<]+)</Code>")

# (status, S3 code, S3 message) and (status, Transfer __type, message) per fault kind.
S3_FAULTS = {
    "throttle": (503, "SlowDown", "Please reduce your request rate."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "unavailable": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
    # An IAM or bucket policy that denies the call (credentials valid, permission missing or revoked).
    "access_denied": (403, "AccessDenied", "Access Denied"),
}
TRANSFER_FAULTS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "slowdown": (400, "ThrottlingException", "Rate exceeded"),
    "unavailable": (503, "ServiceUnavailableException", "The request has failed because the AWS Transfer Family service is unavailable."),
    "internal": (500, "InternalServiceError", "This exception is thrown when an error occurs in the AWS Transfer Family service."),
    "access_denied": (400, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/ferry/i-0 is not authorized to perform: transfer:StartFileTransfer"),
}
# How each signature failure is answered: (S3 status, S3 code), (Transfer status, Transfer type).
AUTH_ERRORS = {
    "missing": ((403, "AccessDenied"), (400, "MissingAuthenticationTokenException")),
    "malformed": ((400, "AuthorizationHeaderMalformed"), (400, "IncompleteSignatureException")),
    "missing_hash": ((400, "InvalidRequest"), (400, "IncompleteSignatureException")),
    "bad_scope": ((400, "AuthorizationHeaderMalformed"), (400, "InvalidSignatureException")),
    "unknown_key": ((403, "InvalidAccessKeyId"), (400, "UnrecognizedClientException")),
    "bad_signature": ((403, "SignatureDoesNotMatch"), (400, "InvalidSignatureException")),
    "skewed": ((403, "RequestTimeTooSkewed"), (400, "InvalidSignatureException")),
    "expired": ((403, "AccessDenied"), (400, "InvalidSignatureException")),
    "payload_mismatch": ((400, "XAmzContentSHA256Mismatch"), (400, "InvalidSignatureException")),
}
# S3 operations that change a bucket's objects: refused with 403 AccessDenied on a bucket whose writes are
# denied through the control endpoint, as S3 answers when a bucket policy or IAM denies s3:PutObject and
# s3:DeleteObject (reads and listings still work, which is how such a misconfiguration looks).
S3_WRITE_OPERATIONS = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
                                 "CompleteMultipartUpload", "AbortMultipartUpload", "DeleteObject", "DeleteObjects",
                                 "PutObjectTagging", "PostObject"})
# The integrity headers S3 checks against the body it received: name -> (label, checksum of the body).
INTEGRITY_HEADERS = {
    "HTTP_CONTENT_MD5": ("Content-MD5", lambda body: hashlib.md5(body).digest()),
    "HTTP_X_AMZ_CHECKSUM_CRC32C": ("CRC32C", lambda body: _crc32c.crc32c(body).to_bytes(4, "big")),
    "HTTP_X_AMZ_CHECKSUM_CRC32": ("CRC32", lambda body: binascii.crc32(body).to_bytes(4, "big")),
    "HTTP_X_AMZ_CHECKSUM_SHA1": ("SHA1", lambda body: hashlib.sha1(body).digest()),
    "HTTP_X_AMZ_CHECKSUM_SHA256": ("SHA256", lambda body: hashlib.sha256(body).digest()),
}


def integrity_error(environ: dict, body: bytes) -> tuple[int, list, bytes] | None:
    """As S3 does: a request whose Content-MD5 or x-amz-checksum-* header does not match its body is
    refused with BadDigest (InvalidDigest/InvalidRequest when the value is not base64 of the right size).
    Streaming (aws-chunked) bodies carry their checksums in trailers, which moto decodes: not checked here."""
    if "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", "") or \
            environ.get("HTTP_X_AMZ_CONTENT_SHA256", "").startswith("STREAMING-"):
        return None
    for key, (label, digest) in INTEGRITY_HEADERS.items():
        value = environ.get(key)
        if value is None:
            continue
        expected = digest(body)
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = None
        if given is None or len(given) != len(expected):
            if label == "Content-MD5":
                return _s3_error(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
            return _s3_error(400, "InvalidRequest", f"Value for x-amz-checksum-{label.lower()} header is invalid.")
        if given != expected:
            what = "Content-MD5" if label == "Content-MD5" else label
            return _s3_error(400, "BadDigest", f"The {what} you specified did not match the calculated checksum.")
    return None


STATUS_TEXT = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
               500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}
# What a front-end proxy answers when the service behind it took too long: not an AWS error document.
GATEWAY_TIMEOUT_BODY = b"<html><body><h1>504 Gateway Time-out</h1></body></html>\n"


class Faults:
    """The current fault settings; changed at run time through the control endpoint.

    A request is eligible when `operations` is empty or names its operation. With `every` > 0 every
    `every`-th eligible request gets a fault (deterministic, for tests that count); otherwise each
    eligible request gets one with probability `rate`. `retry_after_seconds`, when set, is carried by
    Transfer Family ThrottlingException answers, as AWS does."""

    def __init__(self, rate: float, kinds: list[str], latency_ms: int, seed: int | None,
                 operations: list[str] | None = None, every: int = 0, retry_after_seconds: float | None = None):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.set(rate, kinds, latency_ms, operations or [], every, retry_after_seconds)

    def set(self, rate: float, kinds: list[str], latency_ms: int, operations: list[str] | None = None,
            every: int | None = None, retry_after_seconds: float | None = None) -> None:
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(FAULT_KINDS)}")
        if not 0 <= rate <= 1:
            raise ValueError("fault rate must be between 0 and 1")
        operations = operations or []
        if not isinstance(operations, list) or not all(isinstance(o, str) and o for o in operations):
            raise ValueError("operations must be a list of operation names, e.g. [\"StartFileTransfer\"]")
        every = every or 0
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise ValueError("every must be a whole number >= 0 (0: use rate)")
        if retry_after_seconds is not None and (isinstance(retry_after_seconds, bool)
                                                or not isinstance(retry_after_seconds, (int, float)) or retry_after_seconds < 0):
            raise ValueError("retry_after_seconds must be a number >= 0, or null")
        with self.lock:
            self.rate, self.kinds, self.latency_ms = float(rate), list(kinds) or list(DEFAULT_KINDS), int(latency_ms)
            self.operations, self.every, self.retry_after_seconds = list(operations), every, retry_after_seconds
            self.eligible_seen = 0  # counts toward `every`; a new setting starts counting afresh

    def settings(self) -> dict:
        with self.lock:
            return {"rate": self.rate, "kinds": self.kinds, "latency_ms": self.latency_ms, "operations": self.operations,
                    "every": self.every, "retry_after_seconds": self.retry_after_seconds}

    def draw(self, operation: str | None = None) -> tuple[str | None, float]:
        with self.lock:
            latency = self.latency_ms / 1000
            if self.operations and operation not in self.operations:
                return None, latency
            if self.every > 0:
                self.eligible_seen += 1
                if self.eligible_seen % self.every == 0:
                    return self.rng.choice(self.kinds), latency
                return None, latency
            if self.rate > 0 and self.rng.random() < self.rate:
                return self.rng.choice(self.kinds), latency
            return None, latency


class RequestLog:
    """Appends one JSON line per request; cheap enough to keep on for 10,000-file runs."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock:
            self.file.write(line)
            self.file.flush()

    def reset(self) -> None:
        with self.lock:
            self.file.truncate(0)
            self.file.seek(0)

    def close(self) -> None:
        with self.lock:
            self.file.close()


def s3_operation(method: str, path: str, query: str, environ: dict) -> tuple[str, str | None]:
    """Names the S3 operation a request is, for the log; returns (operation, decoded key or None)."""
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = unquote(parts[1]) if len(parts) > 1 and parts[1] != "" else None
    q = {p.split("=", 1)[0] for p in query.split("&") if p}
    if not bucket:
        return "ListBuckets", None
    if key is None:
        if method == "GET":
            if "list-type" in q:
                return "ListObjectsV2", None
            for sub, op in (("uploads", "ListMultipartUploads"), ("versions", "ListObjectVersions"),
                            ("location", "GetBucketLocation"), ("versioning", "GetBucketVersioning")):
                if sub in q:
                    return op, None
            return "ListObjects", None
        if method == "HEAD":
            return "HeadBucket", None
        if method == "PUT":
            return ("PutBucketVersioning" if "versioning" in q else "CreateBucket"), None
        if method == "POST" and "delete" in q:
            return "DeleteObjects", None
        if method == "DELETE":
            return "DeleteBucket", None
        return f"{method}Bucket", None
    copy = "HTTP_X_AMZ_COPY_SOURCE" in environ
    if method == "GET":
        return ("ListParts" if "uploadId" in q else "GetObjectTagging" if "tagging" in q else "GetObject"), key
    if method == "HEAD":
        return "HeadObject", key
    if method == "PUT":
        if "partNumber" in q and "uploadId" in q:
            return ("UploadPartCopy" if copy else "UploadPart"), key
        return ("PutObjectTagging" if "tagging" in q else "CopyObject" if copy else "PutObject"), key
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload", key
        if "uploadId" in q:
            return "CompleteMultipartUpload", key
        return "PostObject", key
    if method == "DELETE":
        return ("AbortMultipartUpload" if "uploadId" in q else "DeleteObject"), key
    return method, key


def _read_body(environ: dict) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return stream.read()
    return b""


def _s3_error(status: int, code: str, message: str, **extra) -> tuple[int, list, bytes]:
    fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in extra.items() if v)
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}</Message>'
            f"{fields}<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>").encode()
    return status, [("Content-Type", "application/xml")], body


def _json_response(status: int, payload: dict, error_type: str | None = None) -> tuple[int, list, bytes]:
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return status, headers, json.dumps(payload).encode()


def _s3_object_app(environ, start_response):
    """An object request served by moto's S3 exactly as its Flask app serves it (the view that app routes
    `/<bucket>/<key>` to: `S3Response.key_dispatch` with the request, its URL and headers, its
    (status, headers, body) made into a response the same way), without the Flask layer around it: URL
    routing, the application and request contexts, the CORS hooks and the request recorder. That layer
    cost a fifth of the emulator's HTTP process per PutObject (py-spy, docs/emulator.md), and moto's S3
    does the same work either way. Only object requests take this path; everything else goes through
    moto's Flask app."""
    from botocore.exceptions import ClientError
    from flask import Response
    from moto.s3.responses import S3Response
    from werkzeug.wrappers import Request  # moto's view sees a werkzeug object (Flask's `request` proxy) and
    # reads the key from RAW_URI when it does (BaseResponse.is_werkzeug_request): so must it here.

    request = Request(environ)
    try:
        result = S3Response.key_dispatch(request, request.url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    status, headers, content = result if len(result) == 3 else (200, {}, result)
    response = Response(response=content, status=status, headers=headers)
    if request.method == "HEAD" and "content-length" in headers:
        response.headers["Content-Length"] = headers["content-length"]
    return response(environ, start_response)


class EmulatorApp:
    """The WSGI application werkzeug serves."""

    def __init__(self, s3_app, verifier: Verifier, transfer: TransferService, faults: Faults, log: RequestLog):
        self.s3_app, self.verifier, self.transfer, self.faults, self.log = s3_app, verifier, transfer, faults, log
        self.lock = threading.Lock()
        # Seconds the emulator's clock runs ahead of this machine's (negative: behind), set through the
        # control endpoint: signatures are judged and `Date` headers written with the shifted clock, so a
        # client's clock-skew handling can be tested without changing the system clock.
        self.clock_offset = 0.0
        # Buckets whose writes answer 403 AccessDenied (see S3_WRITE_OPERATIONS).
        self.write_denied: set[str] = set()

    def now(self) -> float:
        with self.lock:
            return time.time() + self.clock_offset

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self._control(environ, start_response, path[len(CONTROL_PREFIX):])
        plain_start_response = start_response

        def start_response(status, headers, exc_info=None):
            # Every answer carries the emulator's (possibly shifted) time, as AWS's do: clients learn skew from it.
            dated = [(n, v) for n, v in headers if n.lower() != "date"] + [("Date", formatdate(self.now(), usegmt=True))]
            return plain_start_response(status, dated, exc_info)
        body = _read_body(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        service = "transfer" if target.startswith("TransferService.") else "s3"
        record = {"ts": round(time.time(), 6), "service": service, "operation": None, "status": None,
                  "fault": None, "error_code": None, "key": None, "connector_id": None, "transfer_id": None, "paths": None}
        raw_uri = environ.get("RAW_URI") or path
        raw_path, _, raw_query = raw_uri.partition("?")
        if service == "transfer":
            record["operation"] = target.split(".", 1)[1]
            if record["operation"] == "StartFileTransfer":
                # Logged even when a fault answers before any work, so that a test can tell which files a
                # request that did nothing carried (a resend after it duplicates nothing).
                try:
                    request = json.loads(body or b"{}")
                    paths = request.get("SendFilePaths") or request.get("RetrieveFilePaths") if isinstance(request, dict) else None
                    if isinstance(paths, list):
                        record["paths"] = [p for p in paths if isinstance(p, str)]
                except (json.JSONDecodeError, UnicodeDecodeError):
                    pass
        else:
            record["operation"], record["key"] = s3_operation(environ.get("REQUEST_METHOD", "GET"), raw_path, raw_query, environ)

        fault, latency = self.faults.draw(record["operation"])
        if latency:
            time.sleep(latency)
        if fault == "drop":
            record["fault"] = "drop"
            self.log.write(record)
            return self._drop(environ, start_response)
        if fault in AFTER_WORK_KINDS:
            return self._after_work(environ, start_response, record, body, service, fault)
        if fault is not None:
            record["fault"] = fault
            if service == "s3":
                status, code, message = S3_FAULTS[fault]
                response = _s3_error(status, code, message)
            else:
                status, code, message = TRANSFER_FAULTS[fault]
                payload = {"__type": code, "Message": message}
                retry_after = self.faults.settings()["retry_after_seconds"]
                if code == "ThrottlingException" and retry_after is not None:
                    # A string in the service model (botocore transfer ThrottlingException.RetryAfterSeconds).
                    payload["RetryAfterSeconds"] = f"{retry_after:g}"
                response = _json_response(status, payload, code)
            return self._finish(start_response, record, response, code)
        return self._serve(environ, start_response, record, body, service)

    def _after_work(self, environ, start_response, record: dict, body: bytes, service: str, fault: str):
        """Performs the request in full, as if no fault were set, then loses its answer (`lost_answer`:
        the connection is closed without a response) or replaces it with a 504 (`late_504`). The log
        line says what was done (`work_status`, `transfer_id`) and what the client was told (`status`)."""
        def swallow(status, headers, exc_info=None):
            return lambda data: None

        # The log line is written here, once it also says what the client was told.
        result = self._serve(environ, swallow, record, body, service, write_log=lambda r: None)
        for _ in result:  # run moto's response to its end: its work is done once it is consumed
            pass
        if hasattr(result, "close"):
            result.close()
        record["fault"] = fault
        record["work_status"] = record.get("status")
        if fault == "lost_answer":
            record["status"] = None
            self.log.write(record)
            return self._drop(environ, start_response)
        record["status"], record["error_code"] = 504, "GatewayTimeout"
        self.log.write(record)
        start_response("504 Gateway Timeout", [("Content-Type", "text/html"), ("Content-Length", str(len(GATEWAY_TIMEOUT_BODY)))])
        return [GATEWAY_TIMEOUT_BODY]

    def _serve(self, environ, start_response, record: dict, body: bytes, service: str, write_log=None):
        """The request as AWS would answer it: signature, then Transfer Family or moto's S3.
        `write_log` receives the finished log record (default: the request log)."""
        write_log = write_log or self.log.write
        try:
            self.verifier.verify(environ, body, service, now=self.now())
        except AuthError as e:
            return self._finish(start_response, record, *self._auth_error(e, service), write_log=write_log)
        if service == "s3" and record["operation"] in S3_WRITE_OPERATIONS:
            bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
            with self.lock:
                denied = bucket in self.write_denied
            if denied:
                return self._finish(start_response, record, _s3_error(403, "AccessDenied", "Access Denied"), "AccessDenied",
                                    write_log=write_log)

        if service == "transfer":
            return self._finish(start_response, record, *self._transfer(record, body), write_log=write_log)
        bad = integrity_error(environ, body)
        if bad is not None:
            return self._finish(start_response, record, bad, _S3_CODE.search(bad[2]).group(1).decode(), write_log=write_log)

        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        # `record["key"]` is set for path-style object requests (`/bucket/key`, s3_operation): the ones
        # moto's Flask app routes to `key_dispatch`.
        result = (_s3_object_app if record["key"] is not None else self.s3_app)(environ, capture)
        status = int(captured.get("status", "500").split(" ", 1)[0])
        record["status"] = status
        if status >= 300:
            # Error bodies are small; buffer them to log the error code. Successful GETs stream untouched.
            chunks = b"".join(result)
            if hasattr(result, "close"):
                result.close()
            m = _S3_CODE.search(chunks)
            record["error_code"] = m.group(1).decode() if m else None
            result = [chunks]
        write_log(record)
        return result

    def _finish(self, start_response, record, response, error_code=None, write_log=None):
        status, headers, payload = response
        record["status"] = status
        record["error_code"] = error_code
        (write_log or self.log.write)(record)
        start_response(f"{status} {STATUS_TEXT.get(status, 'Error')}", headers + [("Content-Length", str(len(payload)))])
        return [payload]

    def _auth_error(self, e: AuthError, service: str):
        (s3_status, s3_code), (tf_status, tf_code) = AUTH_ERRORS[e.code]
        if service == "s3":
            extra = {}
            if e.code == "bad_signature":
                extra = {"AWSAccessKeyId": self.verifier.access_key_id, "StringToSign": e.string_to_sign,
                         "CanonicalRequest": e.canonical_request}
            elif e.code == "skewed":
                extra = {"RequestTime": e.request_time, "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now())),
                         "MaxAllowedSkewMilliseconds": "900000"}
            return _s3_error(s3_status, s3_code, e.message, **extra), s3_code
        message = e.message
        if e.code == "bad_signature":
            message += (f"\n\nThe Canonical String for this request should have been\n'{e.canonical_request}'\n\n"
                        f"The String-to-Sign should have been\n'{e.string_to_sign}'\n")
        elif e.code == "skewed":
            now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now()))
            message = f"Signature expired: {e.request_time} is now earlier or later than {now} by more than 15 min."
        elif e.code == "unknown_key":
            message = "The security token included in the request is invalid."
        return _json_response(tf_status, {"__type": tf_code, "Message": message}, tf_code), tf_code

    def _transfer(self, record: dict, body: bytes):
        try:
            request = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            e = TransferError("SerializationException", "Request body is not valid JSON")
            return _json_response(e.status, e.body(), e.kind), e.kind
        if isinstance(request, dict) and isinstance(request.get("ConnectorId"), str):
            record["connector_id"] = request["ConnectorId"]
        try:
            response, fields = self.transfer.handle(record["operation"], request)
        except TransferError as e:
            return _json_response(e.status, e.body(), e.kind), e.kind
        record.update(fields)
        return _json_response(200, response), None

    def _drop(self, environ, start_response):
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        start_response("500 Dropped", [("Content-Length", "0")])
        return [b""]

    def _control(self, environ, start_response, sub: str):
        method = environ.get("REQUEST_METHOD", "GET")
        status, payload = 200, {"ok": True}
        try:
            if sub == "/health" and method == "GET":
                payload = {"ok": True}
            elif sub == "/faults" and method == "POST":
                data = json.loads(_read_body(environ) or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the /faults body must be a JSON object")
                # A field left out keeps its current value; null switches operations/every/retry_after_seconds off.
                current = self.faults.settings()
                merged = {name: data.get(name, value) for name, value in current.items()}
                self.faults.set(merged["rate"], merged["kinds"], merged["latency_ms"], merged["operations"],
                                merged["every"], merged["retry_after_seconds"])
                payload = self.faults.settings()
            elif sub == "/faults" and method == "GET":
                payload = self.faults.settings()
            elif sub == "/reset-log" and method == "POST":
                self.log.reset()
            elif sub.startswith("/connectors/") and method == "POST":
                data = json.loads(_read_body(environ) or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the /connectors/<id> body must be a JSON object")
                payload = self.transfer.set_status(sub[len("/connectors/"):], data.get("Status", "ACTIVE"), data.get("ErrorMessage"))
            elif sub == "/clock" and method == "POST":
                data = json.loads(_read_body(environ) or b"{}")
                offset = data.get("offset_seconds") if isinstance(data, dict) else None
                if isinstance(offset, bool) or not isinstance(offset, (int, float)):
                    raise ValueError('the /clock body must be {"offset_seconds": <number>}')
                with self.lock:
                    self.clock_offset = float(offset)
                payload = {"offset_seconds": float(offset)}
            elif sub == "/clock" and method == "GET":
                with self.lock:
                    payload = {"offset_seconds": self.clock_offset}
            elif sub.startswith("/buckets/") and method == "POST":
                bucket = sub[len("/buckets/"):]
                data = json.loads(_read_body(environ) or b"{}")
                deny = data.get("deny_writes") if isinstance(data, dict) else None
                if not bucket or "/" in bucket or not isinstance(deny, bool):
                    raise ValueError('POST /buckets/<bucket> takes {"deny_writes": true|false}')
                with self.lock:
                    (self.write_denied.add if deny else self.write_denied.discard)(bucket)
                payload = {"bucket": bucket, "deny_writes": deny}
            else:
                status, payload = 404, {"error": f"no control endpoint {method} {sub}"}
        except (ValueError, TypeError) as e:
            status, payload = 400, {"error": str(e)}
        data = json.dumps(payload).encode()
        start_response(f"{status} {STATUS_TEXT.get(status, 'Error')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]
