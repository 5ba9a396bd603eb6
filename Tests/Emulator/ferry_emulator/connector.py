"""The connectors' work, in a process of its own: SFTP sessions, the per-file service time, sends,
retrieves, listings, remote deletes and moves, and the delivery and partner-operation logs.

The HTTP process (moto's S3 and the Transfer Family API, transfer.py) starts one connector process
(`ConnectorProcess`) and talks to it over a `Channel`. Python runs one thread at a time per process, so
while the connectors' paramiko sessions lived beside moto, every delivery took turns with the arriving
PutObjects; here they only share the machine's cores. The HTTP process sends each connector's jobs;
this process answers with each file's status and asks the HTTP process for what only it holds: an S3
object's bytes to send (`read`, at the moment the file is sent, as before) and an object to write
(`put`, for retrieves and listings). A connector has one worker thread and SFTP connection per
`SftpConfig.MaxConcurrentConnections` (1..5), as before.

Run as `python3 -c ... <fd> <config JSON>` by `ConnectorProcess.start`; it ends on the HTTP process's
`stop`, when the channel closes, or (PR_SET_PDEATHSIG) when the HTTP process dies.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from .channel import Channel, ChannelClosed
from .partner import DeliveryLog, PartnerOpLog, PartnerPathError, SftpSession, die_with_parent, sftp_path

STOP_SECONDS = 5.0  # how long a stop waits for the files in progress


class FileFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def split_s3(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


class ConnectorProcess:
    """The HTTP process's handle on the connector process."""

    def __init__(self, config: dict, on_status, on_lost):
        """`config`: partner_root, chrooted, user, user_key_path, as2_inbox, deliveries_path,
        partner_ops_path, transfer_delay (s). `on_status(transfer_id, index, status, code, message)`
        receives every file's change, on the channel's reader thread; `on_lost(message)` is called if the
        process ends without being stopped (its files in progress can then never finish).
        `read_object(path)` and `put_object(bucket, key, data)` are set by the owner before `start`."""
        self.config = config
        self.on_status, self.on_lost = on_status, on_lost
        self.read_object = None
        self.put_object = None
        self.process: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self.stopping = False

    def start(self) -> None:
        import socket

        mine, theirs = socket.socketpair()
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = (f"import sys; sys.path.insert(0, {package_parent!r}); "
                "from ferry_emulator.connector import main; main()")
        # Started from the main thread: PR_SET_PDEATHSIG fires when the thread that forked it ends.
        self.process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno()), json.dumps(self.config)],
                                        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        theirs.close()
        self.channel = Channel(mine.detach(), self._handle, on_close=self._closed)
        self.channel.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _closed(self) -> None:
        if self.stopping:
            return
        code = self.process.wait()
        message = f"the emulator's connector process (pid {self.process.pid}) ended with status {code}"
        print(f"ferry-emulator: {message}; every file not yet finished fails", file=sys.stderr, flush=True)
        self.on_lost(message)

    def _handle(self, message) -> None:
        if message[0] == "status":
            self.on_status(*message[1:])
        elif message[0] == "call":
            _, call_id, name, *args = message
            try:
                value = self.read_object(*args) if name == "read" else self.put_object(*args)
                self.channel.reply(call_id, True, value)
            except Exception as e:  # reported to the caller, which fails its file (naming only the type, as before)
                self.channel.reply(call_id, False, type(e).__name__)

    def add(self, connector_id: str, kind: str, url: str, connections: int, trusted_host_keys: list[str]) -> None:
        self.channel.notify("add", connector_id, kind, url, connections, trusted_host_keys)

    def remove(self, connector_id: str) -> None:
        self.channel.notify("remove", connector_id)

    def job(self, connector_id: str, *job) -> bool:
        """Hands a job to the connector; False when the connector process is gone."""
        try:
            self.channel.notify("job", connector_id, job)
            return True
        except ChannelClosed:
            return False

    def test(self, connector_id: str) -> dict:
        return self.channel.call("test", connector_id, timeout=60)

    def stop(self) -> None:
        if self.process is None:
            return
        self.stopping = True
        try:
            self.channel.notify("stop")
        except Exception:
            pass
        try:
            self.process.wait(timeout=STOP_SECONDS + 3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.channel.reader.join(timeout=5)
        self.channel.close()
        self.process = None


class _Pace:
    """The per-file service time (`--transfer-delay-ms`) of one connection: a file is IN_PROGRESS for that
    long, the connection's own work (reading the object, the SFTP upload or download) included, as a
    connector serving one file per service time would be. The wait comes first, shortened by what the
    work took on average (an exponential moving average of this connection's last files), so the bytes
    still move at the end; a file that finished early is reported only once its service time has passed."""

    def __init__(self, service_time: float):
        self.service_time = service_time
        self.work = 0.0  # the moving average, seconds
        self.started = self.work_started = 0.0

    def before_work(self) -> None:
        self.started = time.monotonic()
        if self.service_time:
            time.sleep(max(0.0, self.service_time - self.work))
        self.work_started = time.monotonic()

    def after_work(self) -> None:
        now = time.monotonic()
        self.work = 0.8 * self.work + 0.2 * (now - self.work_started)
        left = self.started + self.service_time - now
        if left > 0:
            time.sleep(left)


class _Connector:
    def __init__(self, connector_id: str, kind: str, url: str, sessions: list[SftpSession]):
        self.connector_id, self.kind, self.url, self.sessions = connector_id, kind, url, sessions
        self.jobs: queue.Queue = queue.Queue()
        self.workers: list[threading.Thread] = []


class _Worker:
    """The connector process: its connectors, their worker threads and sessions, and the two logs."""

    def __init__(self, fd: int, config: dict):
        self.root, self.chrooted = config["partner_root"], config["chrooted"]
        self.user, self.user_key_path = config["user"], config["user_key_path"]
        self.as2_inbox = config["as2_inbox"]
        self.transfer_delay = config["transfer_delay"]
        self.deliveries = DeliveryLog(config["deliveries_path"])
        self.partner_ops = PartnerOpLog(config["partner_ops_path"], self.root, self.chrooted)
        self.connectors: dict[str, _Connector] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.channel = Channel(fd, self._handle, on_close=self.stopping.set)

    def sftp_path(self, remote: str) -> str:
        return sftp_path(remote, self.root, self.chrooted)

    def run(self) -> None:
        self.channel.start()
        self.stopping.wait()
        with self.lock:
            connectors = list(self.connectors.values())
            self.connectors.clear()
        deadline = time.monotonic() + STOP_SECONDS
        for c in connectors:
            self._stop_connector(c, deadline)
        self.deliveries.close()
        self.partner_ops.close()

    def _handle(self, message) -> None:
        kind = message[0]
        if kind == "job":
            with self.lock:
                c = self.connectors.get(message[1])
            if c is not None:
                c.jobs.put(message[2])
        elif kind == "add":
            self._add(*message[1:])
        elif kind == "remove":
            with self.lock:
                c = self.connectors.pop(message[1], None)
            if c is not None:
                threading.Thread(target=self._stop_connector, args=(c, None), daemon=True).start()
        elif kind == "call" and message[2] == "test":
            threading.Thread(target=self._test, args=(message[1], message[3]), daemon=True).start()
        elif kind == "stop":
            self.stopping.set()

    def _add(self, cid: str, kind: str, url: str, connections: int, trusted: list[str]) -> None:
        sessions = []
        if kind == "sftp":
            rest = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
            host, _, port = rest.partition(":")
            sessions = [SftpSession(host, int(port) if port.isdigit() else 22, self.user, self.user_key_path, trusted)
                        for _ in range(connections)]
        c = _Connector(cid, kind, url, sessions)
        for session in sessions or [None]:
            worker = threading.Thread(target=self._work, args=(c, session), name=f"connector-{cid}", daemon=True)
            c.workers.append(worker)
            worker.start()
        with self.lock:
            self.connectors[cid] = c

    def _stop_connector(self, c: _Connector, deadline: float | None) -> None:
        """DeleteConnector (`deadline` None) lets the jobs already queued finish; the emulator's stop
        abandons them and waits for the files in progress until `deadline`."""
        for _ in c.workers:
            c.jobs.put(None)
        for worker in c.workers:
            worker.join(timeout=STOP_SECONDS if deadline is None else max(0.0, deadline - time.monotonic()))
        for session in c.sessions:
            session.close()

    def _test(self, call_id: int, cid: str) -> None:
        with self.lock:
            c = self.connectors.get(cid)
        if c is None or not c.sessions:
            self.channel.reply(call_id, False, f"no SFTP connector {cid}")
            return
        session = c.sessions[0]
        try:
            with session.lock:
                session.client().stat(self.sftp_path("/"))
            out = {"ConnectorId": cid, "Status": "OK", "StatusMessage": "Connection succeeded",
                   "SftpConnectionDetails": {"HostKey": session.host_key}}
        except Exception as e:  # any failure to connect is reported, not raised, as AWS does
            session.close()
            out = {"ConnectorId": cid, "Status": "ERROR", "StatusMessage": f"Connection failed: {e}"}
        self.channel.reply(call_id, True, out)

    # ---- the worker threads ----------------------------------------------------------------
    def _work(self, c: _Connector, session: SftpSession | None) -> None:
        pace = _Pace(self.transfer_delay)
        while True:
            job = c.jobs.get()
            if job is None or self.stopping.is_set():
                return
            try:
                if job[0] == "file":
                    self._run_file(c, session, pace, *job[1:])
                elif job[0] == "listing":
                    self._sftp(c, session, lambda sftp: self._listing(sftp, *job[1:]))
                elif job[0] == "delete":
                    self._sftp(c, session, lambda sftp: self._delete(sftp, job[1]))
                elif job[0] == "move":
                    self._sftp(c, session, lambda sftp: self._move(sftp, job[1], job[2]))
            except Exception as e:  # the worker must survive anything one job does
                print(f"ferry-emulator: connector {c.connector_id}: {job[0]} failed: {e}", file=sys.stderr, flush=True)

    def _sftp(self, c: _Connector, session: SftpSession, action):
        """Runs `action(sftp)` on one of the connector's connections, reconnecting once if it broke."""
        with session.lock:
            for attempt in (1, 2):
                try:
                    sftp = session.client()
                except Exception as e:
                    session.close()
                    raise FileFailed("CONNECTION_ERROR", f"Could not connect to {c.url}: {e}")
                try:
                    return action(sftp)
                except (FileFailed, FileNotFoundError, PermissionError):
                    raise
                except Exception:
                    # Only a broken connection is worth one reconnect; an SFTP error on a live one is the answer.
                    if attempt == 2 or session.alive():
                        raise
                    session.close()

    def _status(self, transfer_id: str, index: int, status: str, code: str | None = None, message: str | None = None) -> None:
        self.channel.notify("status", transfer_id, index, status, code, message)

    def _run_file(self, c: _Connector, session: SftpSession | None, pace: "_Pace", transfer_id: str, index: int,
                  direction: str, path: str, remote_directory: str | None, local_directory: str | None) -> None:
        self._status(transfer_id, index, "IN_PROGRESS")
        started = time.time()
        pace.before_work()
        outcome = ("COMPLETED", None, None)
        try:
            if direction == "send":
                self._send(c, session, transfer_id, path, remote_directory, started)
            else:
                self._retrieve(session, c, transfer_id, path, local_directory)
        except FileFailed as e:
            outcome = ("FAILED", e.code, e.message)
        except PartnerPathError as e:
            outcome = ("FAILED", "INVALID_PATH", str(e))
        except Exception as e:
            outcome = ("FAILED", "INTERNAL_ERROR", f"{type(e).__name__}: {e}")
        pace.after_work()
        self._status(transfer_id, index, *outcome)

    def _send(self, c: _Connector, session: SftpSession | None, transfer_id: str, path: str, remote_directory: str | None,
              started: float) -> None:
        data = self.channel.call("read", path)
        if data is None:
            raise FileFailed("SEND_FILE_NOT_FOUND", f"The file {path} was not found in Amazon S3")
        name = posixpath.basename(path)
        if not name:
            raise FileFailed("SEND_FILE_NOT_FOUND", f"{path} does not name a file")
        if c.kind == "as2":
            os.makedirs(self.as2_inbox, exist_ok=True)
            with open(os.path.join(self.as2_inbox, name), "wb") as out:
                out.write(data)
            self.deliveries.record(c.connector_id, transfer_id, posixpath.join("/", name), data, started)
            return
        remote_dir = remote_directory or "/"
        local_dir = self.sftp_path(remote_dir)

        def upload(sftp):
            try:
                if not stat.S_ISDIR(sftp.stat(local_dir).st_mode):
                    raise FileFailed("REMOTE_DIRECTORY_NOT_FOUND", f"{remote_dir} on the remote server is not a directory")
            except FileNotFoundError:
                raise FileFailed("REMOTE_DIRECTORY_NOT_FOUND", f"The directory {remote_dir} does not exist on the remote server")
            try:
                with sftp.open(posixpath.join(local_dir, name), "wb") as out:
                    out.set_pipelined(True)
                    out.write(data)
            except PermissionError as e:
                raise FileFailed("REMOTE_PERMISSION_DENIED", f"Permission denied writing {posixpath.join(remote_dir, name)}: {e}")

        self._sftp(c, session, upload)
        # Only now is the file whole on the partner (the upload was written and closed without error).
        self.deliveries.record(c.connector_id, transfer_id, posixpath.join(remote_dir, name), data, started)

    def _retrieve(self, session: SftpSession | None, c: _Connector, transfer_id: str, path: str, local_directory: str | None) -> None:
        local = self.sftp_path(path)

        def download(sftp):
            try:
                with sftp.open(local, "rb") as src:
                    src.prefetch()
                    return src.read()
            except FileNotFoundError:
                raise FileFailed("RETRIEVE_FILE_NOT_FOUND", f"The file {path} was not found on the remote server")
            except PermissionError as e:
                raise FileFailed("REMOTE_PERMISSION_DENIED", f"Permission denied reading {path}: {e}")

        data = self._sftp(c, session, download)
        bucket, prefix = split_s3(local_directory or "")
        key = posixpath.join(prefix, posixpath.basename(path)) if prefix else posixpath.basename(path)
        try:
            self.channel.call("put", bucket, key, data)
        except Exception as e:
            raise FileFailed("LOCAL_DIRECTORY_NOT_FOUND", f"Could not write s3://{bucket}/{key}: {e}")
        self.partner_ops.record("retrieve", path, len(data), hashlib.sha256(data).hexdigest(), key=f"{bucket}/{key}",
                                transfer_id=transfer_id)

    def _listing(self, sftp, remote: str, output: str, max_items: int, name: str) -> None:
        local = self.sftp_path(remote)
        entries = sorted(sftp.listdir_attr(local), key=lambda a: a.filename)
        base = remote.rstrip("/") or ""
        files, paths, lines = [], [], []
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
                lines.append(self.partner_ops.line("listed", full, a.st_size, digest, modified=item.get("modifiedTimestamp")))
        self.partner_ops.write(lines)
        document = {"files": files, "paths": paths, "truncated": len(entries) > max_items}
        bucket, prefix = split_s3(output)
        key = posixpath.join(prefix, name) if prefix else name
        self.channel.call("put", bucket, key, json.dumps(document).encode())

    def _delete(self, sftp, path: str) -> None:
        local = self.sftp_path(path)
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
        source_local, target_local = self.sftp_path(source), self.sftp_path(target)
        before = self.partner_ops.digest(self.partner_ops.local_path(source_local))
        try:
            sftp.rename(source_local, target_local)
        except Exception as e:
            self.partner_ops.record("move", source, before[0], before[1], ok=False, target=target, error=f"{type(e).__name__}: {e}")
            raise
        # After the rename the target holds exactly the bytes that left `source`.
        size, digest = self.partner_ops.digest(self.partner_ops.local_path(target_local))
        self.partner_ops.record("move", source, size, digest, target=target)


def main() -> None:
    # Ctrl-C reaches the whole process group; the HTTP process decides when this one stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    _Worker(int(sys.argv[1]), json.loads(sys.argv[2])).run()
