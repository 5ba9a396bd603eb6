"""The trading partner: a real OpenSSH sshd on 127.0.0.1, and the connector's SFTP client to it.

As root, sshd chroots the SFTP user into `partner_root`, so '/' over SFTP is the partner root for
anyone who logs in. ChrootDirectory needs every component of that path root-owned and not writable
by group or others, which no temp dir is, so the root lives under /var/lib/ferry-emulator/. Without
root the chroot is impossible: the client then maps the partner's absolute paths under
`partner_root` itself. Either way a path with '..' is refused.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import posixpath
import socket
import shutil
import signal
import subprocess
import tempfile
import threading
import time

SSHD = "/usr/sbin/sshd"
CHROOT_BASE = "/var/lib/ferry-emulator"


class PartnerPathError(ValueError):
    """A remote path that would leave the partner's root."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroot_root() -> str | None:
    """A fresh folder sshd accepts as ChrootDirectory, or None when that cannot be had."""
    if os.geteuid() != 0 or os.environ.get("FERRY_EMULATOR_NO_CHROOT"):
        return None
    try:
        os.makedirs(CHROOT_BASE, mode=0o755, exist_ok=True)
        root = tempfile.mkdtemp(prefix="partner.", dir=CHROOT_BASE)
        os.chmod(root, 0o755)
    except OSError:
        return None
    path = root
    while True:
        st = os.stat(path)
        if st.st_uid != 0 or st.st_mode & 0o022:
            shutil.rmtree(root, ignore_errors=True)
            return None
        if path == "/":
            return root
        path = os.path.dirname(path)


def die_with_parent() -> None:
    # If the emulator is SIGKILLed it cannot stop sshd; the kernel then does (PR_SET_PDEATHSIG).
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def _keygen(path: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-emulator", "-f", path],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class SftpPartner:
    """Owns the sshd child process, its keys, and the partner's root folder."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        # Append-only ground truth for tests: one line per file completed to a partner (see DeliveryLog).
        self.deliveries_path = os.path.join(state_dir, "deliveries.jsonl")
        # The same for the inbound direction: every retrieval's bytes, and every remote delete or move
        # with the bytes it removed (see PartnerOpLog).
        self.partner_ops_path = os.path.join(state_dir, "remote_ops.jsonl")
        chroot = _chroot_root()
        self.chrooted = chroot is not None
        self.root = chroot or os.path.join(state_dir, "partner")
        self.ssh_dir = os.path.join(state_dir, "ssh")
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.ssh_dir, mode=0o700, exist_ok=True)
        self.user = getpass.getuser()
        self.host = "127.0.0.1"
        self.port = 0
        self.host_key_path = os.path.join(self.ssh_dir, "host_ed25519")
        self.user_key_path = os.path.join(self.ssh_dir, "user_ed25519")
        self.process: subprocess.Popen | None = None
        self.log_path = os.path.join(state_dir, "sshd.log")

    @property
    def host_public_key(self) -> str:
        with open(self.host_key_path + ".pub") as f:
            return " ".join(f.read().split()[:2])

    def start(self, timeout: float = 10.0) -> None:
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} not found: install openssh-server (`make deps`)")
        _keygen(self.host_key_path)
        _keygen(self.user_key_path)
        authorized = os.path.join(self.ssh_dir, "authorized_keys")
        with open(self.user_key_path + ".pub") as src, open(authorized, "w") as dst:
            dst.write(src.read())
        if os.geteuid() == 0:
            # sshd refuses to start as root without its privilege-separation directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        last_error = ""
        for _ in range(5):
            self.port = free_port()
            config = os.path.join(self.ssh_dir, "sshd_config")
            with open(config, "w") as f:
                f.write("\n".join([
                    f"ListenAddress 127.0.0.1:{self.port}",
                    f"HostKey {self.host_key_path}",
                    f"AuthorizedKeysFile {authorized}",
                    "PidFile none",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    f"AllowUsers {self.user}",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "LogLevel ERROR",
                    "Subsystem sftp internal-sftp",
                    *([f"ChrootDirectory {self.root}", "ForceCommand internal-sftp -d /"] if self.chrooted
                      else [f"ForceCommand internal-sftp -d {self.root}"]),
                    "",
                ]))
            log = open(self.log_path, "ab")
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                        s.settimeout(2)
                        if s.recv(4).startswith(b"SSH-"):
                            return
                except OSError:
                    time.sleep(0.02)
            self.stop()
            with open(self.log_path, "rb") as f:
                last_error = f.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"sshd did not start: {last_error}")

    def remove_root(self) -> None:
        """Removes a chroot partner root, which lives outside the state dir."""
        if self.chrooted:
            shutil.rmtree(self.root, ignore_errors=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def sftp_path(remote: str, root: str, chrooted: bool) -> str:
    """The path to ask sshd for, for the partner's `remote` path ('/' is the partner root)."""
    parts = [p for p in remote.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PartnerPathError(f"path {remote!r} contains '..'")
    base = "/" if chrooted else root
    return posixpath.join(base, *parts) if parts else base


class DeliveryLog:
    """`deliveries.jsonl`: one JSON line per file completed to a partner, with the sha256 of the bytes as
    delivered. The partner's folder shows only the last file of each name; this log shows every one, so a
    test can tell a duplicate, a partial file or a stray name from a correct delivery."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8")

    def record(self, connector_id: str, transfer_id: str, remote_path: str, data: bytes, started: float) -> None:
        """`started`: when the file went IN_PROGRESS (so `ts - started` is its time at the connector)."""
        line = json.dumps({"ts": time.time(), "connector_id": connector_id, "transfer_id": transfer_id,
                           "remote_path": remote_path, "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "started": started}, ensure_ascii=False) + "\n"
        with self.lock:
            if self.file.closed:
                return
            self.file.write(line)
            self.file.flush()

    def close(self) -> None:
        with self.lock:
            self.file.close()


class PartnerOpLog:
    """`remote_ops.jsonl`: one JSON line per retrieval (`op` "retrieve": the bytes read from the partner
    and written to S3), per listing entry (`op` "listed": what a StartDirectoryListing saw, with the
    sha256 of the file at that moment) and per remote delete or move done by a connector (`op` "delete" /
    "move": the bytes that were removed from the path, `ok` false when the SFTP call failed). A test can
    then tell which version of a name ferry fetched and which version it deleted or moved, and when."""

    def __init__(self, path: str, partner_root: str, chrooted: bool):
        self.path = path
        self.partner_root = partner_root
        self.chrooted = chrooted
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8")
        self.digests: dict[tuple, str] = {}

    def local_path(self, sftp_path: str) -> str:
        """The file on this machine behind an SFTP path as `sftp_path` gives it."""
        return os.path.join(self.partner_root, sftp_path.lstrip("/")) if self.chrooted else sftp_path

    @staticmethod
    def digest(local: str) -> tuple[int | None, str | None]:
        try:
            with open(local, "rb") as f:
                data = f.read()
            return len(data), hashlib.sha256(data).hexdigest()
        except OSError:
            return None, None

    def digest_if(self, local: str, size: int | None, mtime: float | None) -> str | None:
        """The sha256 of `local` if it is, before and after the read, the file a listing saw (same size and
        whole-second mtime, same inode); None when it changed in between.

        A file listed again unchanged is not read again: digests are remembered by the file's identity
        (path, inode, size, mtime and ctime in nanoseconds; any write or rename onto the path changes one of
        them), so a folder listed after every in-doubt batch costs a stat per entry, not a read and a hash
        (the soak lists its partner's folders over a thousand times)."""
        try:
            before = os.stat(local)
        except OSError:
            return None
        if size is None or before.st_size != size or mtime is None or int(before.st_mtime) != int(mtime):
            return None
        identity = (local, before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
        with self.lock:
            known = self.digests.get(identity)
        if known is not None:
            return known
        try:
            with open(local, "rb") as f:
                data = f.read()
            after = os.stat(local)
        except OSError:
            return None
        if identity != (local, after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) or len(data) != size:
            return None
        digest = hashlib.sha256(data).hexdigest()
        with self.lock:
            if len(self.digests) >= self.DIGESTS_KEPT:
                self.digests.clear()
            self.digests[identity] = digest
        return digest

    DIGESTS_KEPT = 100_000

    @staticmethod
    def line(op: str, remote_path: str, size: int | None, sha256: str | None, ok: bool = True,
             target: str | None = None, **extra) -> str:
        entry = {"ts": time.time(), "op": op, "remote_path": remote_path, "size": size, "sha256": sha256, "ok": ok}
        if target is not None:
            entry["target"] = target
        entry.update(extra)
        return json.dumps(entry, ensure_ascii=False) + "\n"

    def record(self, op: str, remote_path: str, size: int | None, sha256: str | None, ok: bool = True,
               target: str | None = None, **extra) -> None:
        self.write([self.line(op, remote_path, size, sha256, ok, target, **extra)])

    def write(self, lines: list[str]) -> None:
        """Appends `lines` (from `line`) in one write: a listing's entries together."""
        with self.lock:
            if self.file.closed or not lines:
                return
            self.file.write("".join(lines))
            self.file.flush()

    def close(self) -> None:
        with self.lock:
            self.file.close()


class SftpSession:
    """One reusable SFTP connection for a connector; every call is serialised by the caller's lock."""

    def __init__(self, host: str, port: int, user: str, key_path: str, trusted_host_keys: list[str]):
        self.host, self.port, self.user, self.key_path = host, port, user, key_path
        self.trusted = [" ".join(k.split()[:2]) for k in trusted_host_keys]
        self.lock = threading.Lock()
        self._transport = None
        self._sftp = None
        self.host_key = ""

    def client(self):
        import paramiko

        if self._sftp is not None and self._transport is not None and self._transport.is_active():
            return self._sftp
        self.close()
        key = paramiko.Ed25519Key.from_private_key_file(self.key_path)
        sock = socket.create_connection((self.host, self.port), timeout=10)
        transport = paramiko.Transport(sock)
        transport.start_client(timeout=10)
        server_key = transport.get_remote_server_key()
        self.host_key = f"{server_key.get_name()} {server_key.get_base64()}"
        if self.trusted and self.host_key not in self.trusted:
            transport.close()
            raise ConnectionError(f"host key {self.host_key} is not one of the connector's TrustedHostKeys")
        transport.auth_publickey(self.user, key)
        self._transport = transport
        self._sftp = paramiko.SFTPClient.from_transport(transport)
        return self._sftp

    def alive(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def close(self) -> None:
        for thing in (self._sftp, self._transport):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass
        self._sftp = self._transport = None
