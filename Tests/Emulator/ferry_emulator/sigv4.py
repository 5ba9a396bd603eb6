"""SigV4 verification done the way AWS does it, from the request exactly as it arrived.

S3 signs the path as sent (no normalisation, no re-encoding); every other service signs the
normalised path URI-encoded once more. We rebuild the canonical request from the raw URI that
werkzeug hands us as RAW_URI, so keys with reserved or non-ASCII characters verify correctly.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_to_bytes

MAX_SKEW_SECONDS = 15 * 60
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<sh>[^,\s]+)\s*,\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)


@dataclass
class AuthError(Exception):
    """Why a request was refused; `code` is the service-neutral reason, mapped per service by the caller."""

    code: str  # missing | missing_hash | malformed | unknown_key | bad_signature | skewed | expired | payload_mismatch | bad_scope
    message: str
    canonical_request: str = ""
    string_to_sign: str = ""
    request_time: str = ""


def _uri_encode(text: str, safe: str = "") -> str:
    return quote(text, safe="-_.~" + safe)


def canonical_query(raw_query: str, drop_signature: bool) -> str:
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if drop_signature and name == "X-Amz-Signature":
            continue
        # Decode to bytes and re-encode: the canonical form is independent of how the client escaped.
        pairs.append((quote(unquote_to_bytes(name), safe="-_.~"), quote(unquote_to_bytes(value), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _remove_dot_segments(path: str) -> str:
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
        else:
            out.append(segment)
    result = "/" + "/".join(out)
    if path.endswith("/") and result != "/":
        result += "/"
    return result


def canonical_uri(raw_path: str, service: str) -> str:
    if service == "s3":
        return raw_path or "/"
    return _uri_encode(_remove_dot_segments(raw_path), safe="/")


def _header(environ: dict, name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def _wire_bytes(text: str) -> bytes:
    # WSGI hands headers over as latin-1 decoded bytes; encoding back gives the bytes the client signed.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _parse_amz_date(value: str) -> float | None:
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except (ValueError, TypeError):
        return None


class Verifier:
    """Checks SigV4 signatures for one access key pair in one region."""

    def __init__(self, access_key_id: str, secret_access_key: str, region: str):
        self.access_key_id = access_key_id
        self.secret = secret_access_key
        self.region = region
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def _signing_key(self, date: str, region: str, service: str) -> bytes:
        cached = self._keys.get((date, region, service))
        if cached is None:
            k = hmac.new(("AWS4" + self.secret).encode(), date.encode(), hashlib.sha256).digest()
            for part in (region, service, "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            cached = self._keys[(date, region, service)] = k
        return cached

    def verify(self, environ: dict, body: bytes, service: str, now: float | None = None) -> None:
        """Raises AuthError unless the request is correctly signed, fresh, and (for S3) its payload hash matches."""
        now = time.time() if now is None else now
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        if raw_uri.startswith(("http://", "https://")):
            raw_uri = "/" + raw_uri.split("/", 3)[3] if raw_uri.count("/") >= 3 else "/"
        raw_path, _, raw_query = raw_uri.partition("?")
        auth = environ.get("HTTP_AUTHORIZATION")
        presigned = auth is None and "X-Amz-Signature=" in raw_query
        if auth is None and not presigned:
            raise AuthError("missing", "Request is missing Authentication Token")

        if presigned:
            params = {}
            for part in raw_query.split("&"):
                name, _, value = part.partition("=")
                params[unquote(name)] = unquote(value)
            if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
                raise AuthError("malformed", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
            credential = params.get("X-Amz-Credential", "")
            signed_headers = params.get("X-Amz-SignedHeaders", "")
            signature = params.get("X-Amz-Signature", "")
            amz_date = params.get("X-Amz-Date", "")
            payload_hash = params.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
            try:
                expires = int(params.get("X-Amz-Expires", "0"))
            except ValueError:
                raise AuthError("malformed", "X-Amz-Expires should be a number")
        else:
            m = _AUTH_RE.match(auth.strip())
            if not m:
                raise AuthError("malformed", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters of the AWS4-HMAC-SHA256 algorithm")
            credential, signed_headers, signature = m.group("cred"), m.group("sh"), m.group("sig").lower()
            amz_date = environ.get("HTTP_X_AMZ_DATE") or ""
            if service == "s3":
                payload_hash = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
                if payload_hash is None:
                    raise AuthError("missing_hash", "Missing required header for this request: x-amz-content-sha256")
            else:
                payload_hash = hashlib.sha256(body).hexdigest()

        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise AuthError("malformed", f"Credential should be scoped to a valid region, not '{credential}'")
        key_id, scope_date, scope_region, scope_service, _ = parts
        if key_id != self.access_key_id:
            raise AuthError("unknown_key", "The AWS Access Key Id you provided does not exist in our records.")
        request_time = _parse_amz_date(amz_date)
        if request_time is None:
            raise AuthError("malformed", "Missing or malformed X-Amz-Date (expected YYYYMMDDTHHMMSSZ)")
        if scope_date != amz_date[:8]:
            raise AuthError("bad_scope", f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{amz_date[:8]}'")
        if scope_region != self.region:
            raise AuthError("bad_scope", f"the region '{scope_region}' is wrong; expecting '{self.region}'")
        if scope_service != service:
            raise AuthError("bad_scope", f"Credential should be scoped to correct service: '{service}'.")

        if presigned:
            if now > request_time + expires:
                raise AuthError("expired", "Request has expired", request_time=amz_date)
            if request_time - now > MAX_SKEW_SECONDS:
                raise AuthError("expired", "Request is not yet valid", request_time=amz_date)
        elif abs(now - request_time) > MAX_SKEW_SECONDS:
            raise AuthError("skewed", "The difference between the request time and the current time is too large.", request_time=amz_date)

        headers = signed_headers.split(";")
        header_lines = []
        for name in headers:
            value = _header(environ, name)
            if value is None:
                value = ""
            header_lines.append(f"{name}:{' '.join(value.split())}\n")
        canonical = "\n".join([
            environ.get("REQUEST_METHOD", "GET"),
            canonical_uri(raw_path, service),
            canonical_query(raw_query, drop_signature=presigned),
            "".join(header_lines),
            signed_headers,
            payload_hash,
        ])
        scope = f"{scope_date}/{scope_region}/{scope_service}/aws4_request"
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(_wire_bytes(canonical)).hexdigest()
        ])
        expected = hmac.new(self._signing_key(scope_date, scope_region, scope_service), string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise AuthError("bad_signature", "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                            canonical_request=canonical, string_to_sign=string_to_sign)

        if service == "s3" and _HEX64.match(payload_hash or "") and payload_hash != hashlib.sha256(body).hexdigest():
            raise AuthError("payload_mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
