"""Transfer Family's connector operations (JSON 1.1, `X-Amz-Target: TransferService.<Op>`).

Every operation validates its input as the API reference constrains it, answers at once, and leaves
the real work (SFTP send, retrieve, listing, move, delete) to the connector process (connector.py):
one worker thread per SFTP connection there, `SftpConfig.MaxConcurrentConnections` of them (AWS's
default, 1: one file at a time). Each file's status comes back from it and is kept here, where
ListFileTransferResults reads it.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field

from .connector import ConnectorProcess, split_s3
from .partner import SftpPartner

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
    pending: int = 0  # transfers with a file not yet finished, against the queue quota
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


class TransferService:
    """All connectors, transfers and their workers; `handle` answers one API call."""

    def __init__(self, s3_backend, partner: SftpPartner, region: str, account_id: str,
                 transfer_delay_ms: int, as2_inbox: str, max_pending: int = 1000):
        self.s3 = s3_backend
        self.partner = partner
        self.region, self.account_id = region, account_id
        self.max_pending = max_pending
        self.as2_inbox = as2_inbox
        self.connectors: dict[str, Connector] = {}
        self.transfers: dict[str, Transfer] = {}
        self.lock = threading.Lock()
        self.worker = ConnectorProcess({
            "partner_root": partner.root, "chrooted": partner.chrooted, "user": partner.user,
            "user_key_path": partner.user_key_path, "as2_inbox": as2_inbox, "deliveries_path": partner.deliveries_path,
            "partner_ops_path": partner.partner_ops_path, "transfer_delay": transfer_delay_ms / 1000.0,
        }, self._file_status, self._connector_process_lost)
        self.worker.read_object = self._read_s3
        self.worker.put_object = self.s3.put_object
        self.worker.start()

    # ---- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self.worker.stop()

    def create_connector(self, url: str, access_role: str, as2_config: dict | None = None,
                         sftp_config: dict | None = None, logging_role: str | None = None,
                         tags: list | None = None) -> Connector:
        cid = "c-" + secrets.token_hex(9)[:17]
        c = Connector(connector_id=cid, arn=f"arn:aws:transfer:{self.region}:{self.account_id}:connector/{cid}",
                      url=url, access_role=access_role, kind="as2" if as2_config is not None else "sftp",
                      as2_config=as2_config, sftp_config=sftp_config, logging_role=logging_role, tags=tags or [])
        with self.lock:
            self.connectors[cid] = c
        self.worker.add(cid, c.kind, url, (sftp_config or {}).get("MaxConcurrentConnections") or 1,
                        (sftp_config or {}).get("TrustedHostKeys") or [])
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

    def _file_status(self, transfer_id: str, index: int, status: str, code: str | None, message: str | None) -> None:
        """A file's change, from the connector process; a transfer whose last file finished leaves the
        connector's queue quota."""
        with self.lock:
            t = self.transfers.get(transfer_id)
            if t is None:
                return
            f = t.files[index]
            f.status, f.failure_code, f.failure_message = status, code, message
            if status in ("COMPLETED", "FAILED") and all(x.status in ("COMPLETED", "FAILED") for x in t.files):
                c = self.connectors.get(t.connector_id)
                if c is not None:
                    c.pending -= 1

    def _connector_process_lost(self, message: str) -> None:
        with self.lock:
            unfinished = [(t.transfer_id, i) for t in self.transfers.values()
                          for i, f in enumerate(t.files) if f.status not in ("COMPLETED", "FAILED")]
        for transfer_id, index in unfinished:
            self._file_status(transfer_id, index, "FAILED", "INTERNAL_ERROR", message)

    def _read_s3(self, path: str) -> bytes | None:
        """An object's bytes for the connector process, when a file is sent; None when there is none."""
        bucket, key = split_s3(path)
        try:
            obj = self.s3.get_object(bucket, key) if bucket and key else None
        except Exception:
            obj = None
        return None if obj is None else obj.value

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
        self.worker.remove(c.connector_id)
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
        for index, f in enumerate(t.files):
            if not self.worker.job(cid, "file", t.transfer_id, index, t.direction, f.path, remote_dir, local_dir):
                self._file_status(t.transfer_id, index, "FAILED", "INTERNAL_ERROR", "the emulator's connector process has ended")
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
        self.worker.job(cid, "listing", remote, output, min(max_items or 1000, MAX_LISTING_ITEMS), name)
        return {"ListingId": listing_id, "OutputFileName": name}, {"connector_id": cid, "paths": [remote]}

    def _op_StartRemoteDelete(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        path = v.string("DeletePath", required=True, pattern=ANY_LINE)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "StartRemoteDelete")
        self.worker.job(cid, "delete", path)
        return {"DeleteId": str(uuid.uuid4())}, {"connector_id": cid, "paths": [path]}

    def _op_StartRemoteMove(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        source = v.string("SourcePath", required=True, pattern=ANY_LINE)
        target = v.string("TargetPath", required=True, pattern=ANY_LINE)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "StartRemoteMove")
        self.worker.job(cid, "move", source, target)
        return {"MoveId": str(uuid.uuid4())}, {"connector_id": cid, "paths": [source, target]}

    def _op_TestConnection(self, body):
        v = _Validator(body)
        cid = self._connector(v)
        v.done()
        c = self._lookup(cid)
        self._sftp_only(c, "TestConnection")
        return self.worker.test(cid), {"connector_id": cid}
