"""Transfer Family's connector operations (JSON 1.1, `X-Amz-Target: TransferService.<Op>`).

Every operation validates its input as the API reference constrains it, answers at once, and leaves
the real work (SFTP send, retrieve, listing, move, delete) to the connector's worker threads: one
per SFTP connection, `SftpConfig.MaxConcurrentConnections` of them (AWS's default, 1: one file at a time).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import posixpath
import queue
import re
import secrets
import stat
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .partner import DeliveryLog, PartnerOpLog, PartnerPathError, SftpPartner, SftpSession

CONNECTOR_ID = re.compile(r"c-([0-9a-f]{17})")
TRANSFER_ID = re.compile(r"[0-9a-zA-Z./-]+")
ANY_LINE = re.compile(r"(.)+")  # the API's `(.)+`: at least one character, no line terminators
ROLE_ARN = re.compile(r"arn:.*role/\S+")
MAX_PATHS = 10
MAX_LISTING_ITEMS = 10_000  # AWS quota: a listing never holds more, whatever MaxItems says


class TransferError(Exception):
    """An error answered as `{"__type": kind, "Message": message, ...extra}` with `status`."""

    def __init__(self, kind: str, message: str, status: int = 400, **extra):
        super().__init__(message)
        self.kind, self.message, self.status, self.extra = kind, message, status, extra

    def body(self) -> dict:
        return {"__type": self.kind, "Message": self.message, **self.extra}


def not_found(resource: str, resource_type: str) -> TransferError:
    return TransferError("ResourceNotFoundException", f"Unknown {resource_type}: {resource}",
                         Resource=resource, ResourceType=resource_type)


class _Validator:
    """Collects constraint violations in AWS's wording; raises one ValidationException for all."""

    def __init__(self, body: dict):
        self.body = body
        self.errors: list[str] = []

    def _member(self, name: str) -> str:
        return name[0].lower() + name[1:]

    def _fail(self, name: str, value, constraint: str) -> None:
        shown = "null" if value is None else f"'{value}'"
        self.errors.append(f"Value {shown} at '{self._member(name)}' failed to satisfy constraint: Member must {constraint}")

    def string(self, name: str, required: bool = False, min_len: int = 1, max_len: int = 1024,
               pattern: re.Pattern | None = None, value=None, label: str | None = None):
        value = self.body.get(name) if value is None else value
        label = label or name
        if value is None:
            if required:
                self._fail(label, None, "not be null")
            return None
        if not isinstance(value, str):
            raise TransferError("SerializationException", f"Expected a string for {label}")
        if not (min_len <= len(value) <= max_len):
            self._fail(label, value, f"have length between {min_len} and {max_len}" if min_len != max_len
                       else f"have length equal to {min_len}")
        elif pattern is not None and not pattern.fullmatch(value):
            self._fail(label, value, f"satisfy regular expression pattern: {pattern.pattern}")
        return value

    def integer(self, name: str, low: int, high: int):
        value = self.body.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TransferError("SerializationException", f"Expected an integer for {name}")
        if not (low <= value <= high):
            self._fail(name, value, f"have value between {low} and {high}" if high < 2**31 else f"have value greater than or equal to {low}")
        return value

    def paths(self, name: str):
        value = self.body.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            raise TransferError("SerializationException", f"Expected a list for {name}")
        if not (1 <= len(value) <= MAX_PATHS):
            self._fail(name, value, f"have length less than or equal to {MAX_PATHS}" if value else "have length greater than or equal to 1")
            return value
        for item in value:
            if isinstance(item, str):
                self.string(name, required=True, pattern=ANY_LINE, value=item)
            else:
                self._fail(name, item, "be a string")
        return value

    def done(self) -> None:
        if self.errors:
            n = len(self.errors)
            raise TransferError("ValidationException",
                                f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(self.errors))


@dataclass
class FileResult:
    path: str
    status: str = "QUEUED"
    failure_code: str | None = None
    failure_message: str | None = None

    def as_dict(self) -> dict:
        d = {"FilePath": self.path, "StatusCode": self.status}
        if self.failure_code:
            d["FailureCode"] = self.failure_code
            d["FailureMessage"] = self.failure_message or ""
        return d


@dataclass
class Transfer:
    transfer_id: str
    connector_id: str
    files: list[FileResult]
    direction: str  # send | retrieve
    local_directory: str | None
    remote_directory: str | None


@dataclass
class Connector:
    connector_id: str
    arn: str
    url: str
    access_role: str
    kind: str  # sftp | as2
    as2_config: dict | None = None
    sftp_config: dict | None = None
    logging_role: str | None = None
    tags: list = field(default_factory=list)
    security_policy: str = "TransferSFTPConnectorSecurityPolicy-2024-03"
    jobs: queue.Queue = field(default_factory=queue.Queue)
    pending: int = 0  # transfers with a file not yet finished, against the queue quota
    sessions: list[SftpSession] = field(default_factory=list)
    workers: list[threading.Thread] = field(default_factory=list)
    # DescribeConnector's required Status (ACTIVE | PENDING | ERRORED) and its ErrorMessage; tests set
    # them through the control endpoint (POST /_emulator/connectors/<id>) to play a connector that is
    # still being created or has failed. The emulator itself keeps working whatever they say: whether
    # ferry holds its work is what the tests check.
    status: str = "ACTIVE"
    error_message: str | None = None

    def describe(self) -> dict:
        d = {"Arn": self.arn, "ConnectorId": self.connector_id, "Url": self.url, "AccessRole": self.access_role,
             "Tags": self.tags, "SecurityPolicyName": self.security_policy,
             "ServiceManagedEgressIpAddresses": ["127.0.0.1"], "EgressType": "SERVICE_MANAGED",
             "Status": self.status}
        if self.error_message:
            d["ErrorMessage"] = self.error_message
        if self.logging_role:
            d["LoggingRole"] = self.logging_role
        if self.as2_config is not None:
            d["As2Config"] = self.as2_config
        if self.sftp_config is not None:
            d["SftpConfig"] = self.sftp_config
        return d


class _FileFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _split_s3(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


class TransferService:
    """All connectors, transfers and their workers; `handle` answers one API call."""

    def __init__(self, s3_backend, partner: SftpPartner, region: str, account_id: str,
                 transfer_delay_ms: int, as2_inbox: str, max_pending: int = 1000):
        self.s3 = s3_backend
        self.partner = partner
        self.region, self.account_id = region, account_id
        self.transfer_delay = transfer_delay_ms / 1000.0
        self.max_pending = max_pending
        self.as2_inbox = as2_inbox
        self.deliveries = DeliveryLog(partner.deliveries_path)
        self.partner_ops = PartnerOpLog(partner.partner_ops_path, partner.root, partner.chrooted)
        self.connectors: dict[str, Connector] = {}
        self.transfers: dict[str, Transfer] = {}
        self.lock = threading.Lock()
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True
        with self.lock:
            connectors = list(self.connectors.values())
        for c in connectors:
            self._stop_connector(c)
        self.deliveries.close()
        self.partner_ops.close()

    def _stop_connector(self, c: Connector) -> None:
        for _ in c.workers:
            c.jobs.put(None)
        for worker in c.workers:
            worker.join(timeout=5)
        for session in c.sessions:
            session.close()

    def create_connector(self, url: str, access_role: str, as2_config: dict | None = None,
                         sftp_config: dict | None = None, logging_role: str | None = None,
                         tags: list | None = None) -> Connector:
        cid = "c-" + secrets.token_hex(9)[:17]
        c = Connector(connector_id=cid, arn=f"arn:aws:transfer:{self.region}:{self.account_id}:connector/{cid}",
                      url=url, access_role=access_role, kind="as2" if as2_config is not None else "sftp",
                      as2_config=as2_config, sftp_config=sftp_config, logging_role=logging_role, tags=tags or [])
        if c.kind == "sftp":
            host, port = self._sftp_address(url)
            trusted = (sftp_config or {}).get("TrustedHostKeys") or []
            connections = (sftp_config or {}).get("MaxConcurrentConnections") or 1
            c.sessions = [SftpSession(host, port, self.partner.user, self.partner.user_key_path, trusted)
                          for _ in range(connections)]
        for session in c.sessions or [None]:
            worker = threading.Thread(target=self._work, args=(c, session), name=f"connector-{cid}", daemon=True)
            c.workers.append(worker)
            worker.start()
        with self.lock:
            self.connectors[cid] = c
        return c

    def set_status(self, cid: str, status: str, error_message: str | None) -> dict:
        """Control endpoint: what DescribeConnector says of a connector from now on."""
        if status not in ("ACTIVE", "PENDING", "ERRORED"):
            raise ValueError(f"Status must be ACTIVE, PENDING or ERRORED, not {status!r}")
        with self.lock:
            c = self.connectors.get(cid)
            if c is None:
                raise ValueError(f"no connector {cid}")
            c.status, c.error_message = status, error_message
            return c.describe()

    @staticmethod
    def _sftp_address(url: str) -> tuple[str, int]:
        rest = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, port = rest.partition(":")
        return host, int(port) if port.isdigit() else 22

    # ---- API -------------------------------------------------------------------------------
    def handle(self, operation: str, body: dict) -> tuple[dict, dict]:
        """Returns (response, log fields) or raises TransferError."""
        handler = getattr(self, "_op_" + operation, None)
        if handler is None:
            raise TransferError("UnknownOperationException", f"Unknown operation {operation}")
        if not isinstance(body, dict):
            raise TransferError("SerializationException", "Request body must be a JSON object")
        return handler(body)

    @staticmethod
    def _connector(v: _Validator) -> str:
        return v.string("ConnectorId", required=True, min_len=19, max_len=19, pattern=CONNECTOR_ID)

    def _lookup(self, cid: str) -> Connector:
        with self.lock:
            c = self.connectors.get(cid)
        if c is None:
            raise not_found(cid, "Connector")
        return c

    def _op_CreateConnector(self, body):
        v = _Validator(body)
        url = v.string("Url", required=True, min_len=0, max_len=255)
        role = v.string("AccessRole", required=True, min_len=20, max_len=2048, pattern=ROLE_ARN)
        logging_role = v.string("LoggingRole", min_len=20, max_len=2048, pattern=ROLE_ARN)
        v.done()
        as2, sftp = body.get("As2Config"), body.get("SftpConfig")
        if (as2 is None) == (sftp is None):
            raise TransferError("InvalidRequestException", "Exactly one of As2Config or SftpConfig must be specified")
        connections = (sftp or {}).get("MaxConcurrentConnections") if isinstance(sftp, dict) else None
        if connections is not None and (not isinstance(connections, int) or not 1 <= connections <= 5):
            raise TransferError("ValidationException", "1 validation error detected: Value at 'sftpConfig.maxConcurrentConnections' "
                                "failed to satisfy constraint: Member must have value between 1 and 5")
        if sftp is not None and not url.startswith("sftp://"):
            raise TransferError("InvalidRequestException", "An SFTP connector's Url must start with sftp://")
        if as2 is not None and not url.startswith(("http://", "https://")):
            raise TransferError("InvalidRequestException", "An AS2 connector's Url must start with http:// or https://")
        c = self.create_connector(url, role, as2, sftp, logging_role, body.get("Tags"))
        return {"ConnectorId": c.connector_id}, {"connector_id": c.connector_id}

    def _op_DescribeConnector(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        v.done()
        return {"Connector": self._lookup(cid).describe()}, {"connector_id": cid}

    def _op_ListConnectors(self, body):
        with self.lock:
            items = [{"Arn": c.arn, "ConnectorId": c.connector_id, "Url": c.url} for c in self.connectors.values()]
        return {"Connectors": items}, {}

    def _op_DeleteConnector(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        v.done()
        c = self._lookup(cid)
        with self.lock:
            self.connectors.pop(cid, None)
        self._stop_connector(c)
        return {}, {"connector_id": cid}

    def _op_StartFileTransfer(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        send = v.paths("SendFilePaths")
        retrieve = v.paths("RetrieveFilePaths")
        local_dir = v.string("LocalDirectoryPath", pattern=ANY_LINE)
        remote_dir = v.string("RemoteDirectoryPath", pattern=ANY_LINE)
        v.done()
        c = self._lookup(cid)
        if (send is None) == (retrieve is None):
            raise TransferError("InvalidRequestException", "Exactly one of SendFilePaths or RetrieveFilePaths must be specified")
        if retrieve is not None:
            if c.kind == "as2":
                raise TransferError("InvalidRequestException", "AS2 connectors can only send files: RetrieveFilePaths is not supported")
            if local_dir is None:
                raise TransferError("InvalidRequestException", "LocalDirectoryPath is required when RetrieveFilePaths is specified")
        paths = send if send is not None else retrieve
        t = Transfer(transfer_id=str(uuid.uuid4()), connector_id=cid, files=[FileResult(p) for p in paths],
                     direction="send" if send is not None else "retrieve",
                     local_directory=local_dir, remote_directory=remote_dir)
        with self.lock:
            if c.pending >= self.max_pending:
                raise TransferError("ThrottlingException", f"Connector {cid} already has {c.pending} pending file transfers "
                                    f"(quota {self.max_pending}); wait for some to finish")
            c.pending += 1
            self.transfers[t.transfer_id] = t
        for f in t.files:
            c.jobs.put(("file", t, f))
        return {"TransferId": t.transfer_id}, {"connector_id": cid, "transfer_id": t.transfer_id, "paths": list(paths)}

    def _op_ListFileTransferResults(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        tid = v.string("TransferId", required=True, max_len=512, pattern=TRANSFER_ID)
        token = v.string("NextToken", max_len=6144)
        max_results = v.integer("MaxResults", 1, 1000)
        v.done()
        self._lookup(cid)
        with self.lock:
            t = self.transfers.get(tid)
            if t is None or t.connector_id != cid:
                raise not_found(tid, "Transfer")
            results = [f.as_dict() for f in t.files]
        start = 0
        if token is not None:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = int(decoded["offset"])
                if decoded["transfer"] != tid or not 0 <= start <= len(results):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise TransferError("InvalidNextTokenException", "The NextToken is not valid for this request")
        end = len(results) if max_results is None else min(len(results), start + max_results)
        out = {"FileTransferResults": results[start:end]}
        if end < len(results):
            out["NextToken"] = base64.urlsafe_b64encode(json.dumps({"transfer": tid, "offset": end}).encode()).decode()
        return out, {"connector_id": cid, "transfer_id": tid}

    def _sftp_only(self, c: Connector, operation: str) -> None:
        if c.kind != "sftp":
            raise TransferError("InvalidRequestException", f"{operation} is only supported for SFTP connectors")

    def _op_StartDirectoryListing(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        remote = v.string("RemoteDirectoryPath", required=True, pattern=ANY_LINE)
        output = v.string("OutputDirectoryPath", required=True, pattern=ANY_LINE)
        max_items = v.integer("MaxItems", 1, 2**31 - 1)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "StartDirectoryListing")
        listing_id = str(uuid.uuid4())
        name = f"{cid}-{listing_id}.json"
        c.jobs.put(("listing", remote, output, min(max_items or 1000, MAX_LISTING_ITEMS), name))
        return {"ListingId": listing_id, "OutputFileName": name}, {"connector_id": cid, "paths": [remote]}

    def _op_StartRemoteDelete(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        path = v.string("DeletePath", required=True, pattern=ANY_LINE)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "StartRemoteDelete")
        c.jobs.put(("delete", path))
        return {"DeleteId": str(uuid.uuid4())}, {"connector_id": cid, "paths": [path]}

    def _op_StartRemoteMove(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        source = v.string("SourcePath", required=True, pattern=ANY_LINE)
        target = v.string("TargetPath", required=True, pattern=ANY_LINE)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "StartRemoteMove")
        c.jobs.put(("move", source, target))
        return {"MoveId": str(uuid.uuid4())}, {"connector_id": cid, "paths": [source, target]}

    def _op_TestConnection(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "TestConnection")
        try:
            session = c.sessions[0]
            with session.lock:
                session.client().stat(self.partner.sftp_path("/"))
            out = {"ConnectorId": cid, "Status": "OK", "StatusMessage": "Connection succeeded",
                   "SftpConnectionDetails": {"HostKey": session.host_key}}
        except Exception as e:  # any failure to connect is reported, not raised, as AWS does
            c.sessions[0].close()
            out = {"ConnectorId": cid, "Status": "ERROR", "StatusMessage": f"Connection failed: {e}"}
        return out, {"connector_id": cid}

    # ---- the worker ------------------------------------------------------------------------
    def _work(self, c: Connector, session: SftpSession | None) -> None:
        while True:
            job = c.jobs.get()
            if job is None or self._stopping:
                return
            try:
                if job[0] == "file":
                    self._run_file(c, session, job[1], job[2])
                elif job[0] == "listing":
                    self._sftp(c, session, lambda sftp: self._listing(sftp, *job[1:]))
                elif job[0] == "delete":
                    self._sftp(c, session, lambda sftp: self._delete(sftp, job[1]))
                elif job[0] == "move":
                    self._sftp(c, session, lambda sftp: self._move(sftp, job[1], job[2]))
            except Exception as e:  # the worker must survive anything one job does
                print(f"ferry-emulator: connector {c.connector_id}: {job[0]} failed: {e}", file=sys.stderr, flush=True)

    def _sftp(self, c: Connector, session: SftpSession, action):
        """Runs `action(sftp)` on one of the connector's connections, reconnecting once if it broke."""
        with session.lock:
            for attempt in (1, 2):
                try:
                    sftp = session.client()
                except Exception as e:
                    session.close()
                    raise _FileFailed("CONNECTION_ERROR", f"Could not connect to {c.url}: {e}")
                try:
                    return action(sftp)
                except (_FileFailed, FileNotFoundError, PermissionError):
                    raise
                except Exception:
                    # Only a broken connection is worth one reconnect; an SFTP error on a live one is the answer.
                    if attempt == 2 or session.alive():
                        raise
                    session.close()

    def _set(self, f: FileResult, status: str, code: str | None = None, message: str | None = None) -> None:
        with self.lock:
            f.status, f.failure_code, f.failure_message = status, code, message

    def _run_file(self, c: Connector, session: SftpSession | None, t: Transfer, f: FileResult) -> None:
        self._set(f, "IN_PROGRESS")
        if self.transfer_delay:
            time.sleep(self.transfer_delay)
        try:
            if t.direction == "send":
                self._send(c, session, t, f.path)
            else:
                self._retrieve(c, session, t, f.path)
            self._set(f, "COMPLETED")
        except _FileFailed as e:
            self._set(f, "FAILED", e.code, e.message)
        except PartnerPathError as e:
            self._set(f, "FAILED", "INVALID_PATH", str(e))
        except Exception as e:
            self._set(f, "FAILED", "INTERNAL_ERROR", f"{type(e).__name__}: {e}")
        with self.lock:
            if all(x.status in ("COMPLETED", "FAILED") for x in t.files):
                c.pending -= 1

    def _read_s3(self, path: str) -> bytes:
        bucket, key = _split_s3(path)
        try:
            obj = self.s3.get_object(bucket, key) if bucket and key else None
        except Exception:
            obj = None
        if obj is None:
            raise _FileFailed("SEND_FILE_NOT_FOUND", f"The file {path} was not found in Amazon S3")
        return obj.value

    def _send(self, c: Connector, session: SftpSession | None, t: Transfer, path: str) -> None:
        data = self._read_s3(path)
        name = posixpath.basename(path)
        if not name:
            raise _FileFailed("SEND_FILE_NOT_FOUND", f"{path} does not name a file")
        if c.kind == "as2":
            os.makedirs(self.as2_inbox, exist_ok=True)
            with open(os.path.join(self.as2_inbox, name), "wb") as out:
                out.write(data)
            self.deliveries.record(c.connector_id, t.transfer_id, posixpath.join("/", name), data)
            return
        remote_dir = t.remote_directory or "/"
        local_dir = self.partner.sftp_path(remote_dir)

        def upload(sftp):
            try:
                if not stat.S_ISDIR(sftp.stat(local_dir).st_mode):
                    raise _FileFailed("REMOTE_DIRECTORY_NOT_FOUND", f"{remote_dir} on the remote server is not a directory")
            except FileNotFoundError:
                raise _FileFailed("REMOTE_DIRECTORY_NOT_FOUND", f"The directory {remote_dir} does not exist on the remote server")
            try:
                with sftp.open(posixpath.join(local_dir, name), "wb") as out:
                    out.set_pipelined(True)
                    out.write(data)
            except PermissionError as e:
                raise _FileFailed("REMOTE_PERMISSION_DENIED", f"Permission denied writing {posixpath.join(remote_dir, name)}: {e}")

        self._sftp(c, session, upload)
        # Only now is the file whole on the partner (the upload was written and closed without error).
        self.deliveries.record(c.connector_id, t.transfer_id, posixpath.join(remote_dir, name), data)

    def _retrieve(self, c: Connector, session: SftpSession | None, t: Transfer, path: str) -> None:
        local = self.partner.sftp_path(path)

        def download(sftp):
            try:
                with sftp.open(local, "rb") as src:
                    src.prefetch()
                    return src.read()
            except FileNotFoundError:
                raise _FileFailed("RETRIEVE_FILE_NOT_FOUND", f"The file {path} was not found on the remote server")
            except PermissionError as e:
                raise _FileFailed("REMOTE_PERMISSION_DENIED", f"Permission denied reading {path}: {e}")

        data = self._sftp(c, session, download)
        bucket, prefix = _split_s3(t.local_directory or "")
        key = posixpath.join(prefix, posixpath.basename(path)) if prefix else posixpath.basename(path)
        try:
            self.s3.put_object(bucket, key, data)
        except Exception as e:
            raise _FileFailed("LOCAL_DIRECTORY_NOT_FOUND", f"Could not write s3://{bucket}/{key}: {type(e).__name__}")
        self.partner_ops.record("retrieve", path, len(data), hashlib.sha256(data).hexdigest(), key=f"{bucket}/{key}",
                                transfer_id=t.transfer_id)

    def _listing(self, sftp, remote: str, output: str, max_items: int, name: str) -> None:
        local = self.partner.sftp_path(remote)
        entries = sorted(sftp.listdir_attr(local), key=lambda a: a.filename)
        base = remote.rstrip("/") or ""
        files, paths = [], []
        for a in entries[:max_items]:
            full = f"{base}/{a.filename}"
            if stat.S_ISDIR(a.st_mode or 0):
                paths.append({"path": full})
            else:
                item = {"filePath": full}
                if a.st_mtime is not None:
                    item["modifiedTimestamp"] = datetime.fromtimestamp(a.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                if a.st_size is not None:
                    item["size"] = a.st_size
                files.append(item)
                # The bytes are read after listdir_attr: only when the file still has the listed size and
                # mtime (second) are they the listed version's; otherwise the log says the bytes are unknown.
                digest = self.partner_ops.digest_if(self.partner_ops.local_path(posixpath.join(local, a.filename)),
                                                    a.st_size, a.st_mtime)
                self.partner_ops.record("listed", full, a.st_size, digest, modified=item.get("modifiedTimestamp"))
        document = {"files": files, "paths": paths, "truncated": len(entries) > max_items}
        bucket, prefix = _split_s3(output)
        key = posixpath.join(prefix, name) if prefix else name
        self.s3.put_object(bucket, key, json.dumps(document).encode())

    def _delete(self, sftp, path: str) -> None:
        local = self.partner.sftp_path(path)
        try:
            is_dir = stat.S_ISDIR(sftp.stat(local).st_mode)
        except Exception as e:
            self.partner_ops.record("delete", path, None, None, ok=False, error=f"{type(e).__name__}: {e}")
            raise
        if is_dir:
            sftp.rmdir(local)
            return
        # The bytes are read just before the remove, through an open descriptor, so the log names the
        # version that was there when the connector acted (a rename onto the name in between is the
        # only thing that can make it wrong, and it would take microseconds).
        size, digest = self.partner_ops.digest(self.partner_ops.local_path(local))
        try:
            sftp.remove(local)
        except Exception as e:
            self.partner_ops.record("delete", path, size, digest, ok=False, error=f"{type(e).__name__}: {e}")
            raise
        self.partner_ops.record("delete", path, size, digest)

    def _move(self, sftp, source: str, target: str) -> None:
        source_local, target_local = self.partner.sftp_path(source), self.partner.sftp_path(target)
        before = self.partner_ops.digest(self.partner_ops.local_path(source_local))
        try:
            sftp.rename(source_local, target_local)
        except Exception as e:
            self.partner_ops.record("move", source, before[0], before[1], ok=False, target=target, error=f"{type(e).__name__}: {e}")
            raise
        # After the rename the target holds exactly the bytes that left `source`.
        size, digest = self.partner_ops.digest(self.partner_ops.local_path(target_local))
        self.partner_ops.record("move", source, size, digest, target=target)
