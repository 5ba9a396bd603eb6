"""`Tests/Emulator/run`: start everything, print one JSON line, serve until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import string
import sys
import tempfile
import threading
import time
from typing import NoReturn

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STAGING_BUCKET = "ferry-staging"
INBOUND_BUCKET = "ferry-inbound"


def _fail(message: str) -> NoReturn:
    print(f"ferry-emulator: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="Tests/Emulator/run", description="Local AWS emulator for ferry (S3 + Transfer Family connectors + SFTP partner)")
    p.add_argument("--port", type=int, default=0, help="port for the AWS endpoint (0 = pick a free one)")
    p.add_argument("--state-dir", help="where keys, the partner's files and the request log live (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the state dir on exit")
    p.add_argument("--fault-rate", type=float, default=0.0, help="fraction (0..1) of requests answered with a fault")
    p.add_argument("--faults", default="", help="comma-separated fault kinds: throttle,unavailable,internal,slowdown,drop "
                   "(answered before any work) and lost_answer,late_504 (after the work was done)")
    p.add_argument("--fault-operations", default="", help="comma-separated operations faults are aimed at, e.g. StartFileTransfer (default: all)")
    p.add_argument("--fault-every", type=int, default=0, help="fault every N-th matching request instead of a random --fault-rate")
    p.add_argument("--retry-after-seconds", type=float, default=None, help="RetryAfterSeconds carried by Transfer ThrottlingException faults")
    p.add_argument("--latency-ms", type=int, default=0, help="latency added to every request")
    p.add_argument("--transfer-delay-ms", type=int, default=0, help="extra time each file spends IN_PROGRESS")
    p.add_argument("--max-pending", type=int, default=1000, help="pending transfers a connector accepts before ThrottlingException (AWS: 1000)")
    p.add_argument("--sftp-connections", type=int, default=1, choices=range(1, 6),
                   help="SftpConfig.MaxConcurrentConnections of the SFTP connector made at start (AWS: 1..5, default 1)")
    p.add_argument("--seed", type=int, default=None, help="seed for fault injection, for reproducible runs")
    return p.parse_args(argv)


def _random_key(length: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def main(argv: list[str] | None = None) -> None:
    started = time.monotonic()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import paramiko  # noqa: F401  (checked here so a missing package is reported before anything starts)
        from moto.moto_server.werkzeug_app import create_backend_app
        from moto.s3.models import s3_backends
    except ImportError as e:
        _fail(f"missing Python package ({e}); install the test dependencies with `make deps`")
    from .app import EmulatorApp, Faults, RequestLog
    from .partner import SftpPartner
    from .server import make_keep_alive_server
    from .sigv4 import Verifier
    from .transfer import TransferService

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

    own_state = args.state_dir is None
    state_dir = os.path.abspath(args.state_dir or tempfile.mkdtemp(prefix="ferry-emulator."))
    os.makedirs(state_dir, exist_ok=True)

    access_key = "AKIA" + _random_key(16, string.ascii_uppercase + string.digits)
    secret_key = _random_key(40, string.ascii_letters + string.digits + "+/")
    kinds = [k for k in args.faults.split(",") if k]

    partner = SftpPartner(state_dir)
    log = None
    server = None
    transfer = None

    def shutdown() -> None:
        if server is not None:
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, lambda *_: shutdown())
    signal.signal(signal.SIGINT, lambda *_: shutdown())
    # A parent that spawned us from a thread with signals blocked (Foundation's Process can) would
    # otherwise leave SIGTERM pending forever.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    parent = os.getppid()

    def follow_parent() -> None:
        # A test runner killed hard cannot stop us; don't outlive it and leak sshd and ports.
        while os.getppid() == parent:
            time.sleep(1)
        shutdown()

    threading.Thread(target=follow_parent, daemon=True).start()
    try:
        partner.start()
        faults = Faults(args.fault_rate, kinds, args.latency_ms, args.seed,
                        operations=[o for o in args.fault_operations.split(",") if o], every=args.fault_every,
                        retry_after_seconds=args.retry_after_seconds)
        backend = s3_backends[ACCOUNT_ID]["aws"]
        for bucket in (STAGING_BUCKET, INBOUND_BUCKET):
            backend.create_bucket(bucket, REGION)
        transfer = TransferService(backend, partner, REGION, ACCOUNT_ID, args.transfer_delay_ms,
                                   os.path.join(state_dir, "as2-received"), args.max_pending)
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/ferry-emulator-connector"
        sftp_connector = transfer.create_connector(
            f"sftp://{partner.host}:{partner.port}", role,
            sftp_config={"UserSecretId": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:ferry-emulator-partner",
                         "TrustedHostKeys": [partner.host_public_key], "MaxConcurrentConnections": args.sftp_connections})
        as2_connector = transfer.create_connector(
            "http://127.0.0.1:4080/as2", role,
            as2_config={"LocalProfileId": "p-" + secrets.token_hex(9)[:17], "PartnerProfileId": "p-" + secrets.token_hex(9)[:17],
                        "MessageSubject": "ferry", "Compression": "DISABLED", "EncryptionAlgorithm": "AES128_CBC",
                        "SigningAlgorithm": "SHA256", "MdnSigningAlgorithm": "NONE", "MdnResponse": "NONE"})
        log = RequestLog(os.path.join(state_dir, "requests.jsonl"))
        app = EmulatorApp(create_backend_app("s3"), Verifier(access_key, secret_key, REGION), transfer, faults, log)
        # Keep-alive, as AWS endpoints do (werkzeug's own handler closes every connection).
        server = make_keep_alive_server("127.0.0.1", args.port, app)
        port = server.server_port
        endpoint = f"http://127.0.0.1:{port}"
        info = {
            "endpoint": endpoint, "region": REGION, "access_key_id": access_key, "secret_access_key": secret_key,
            "buckets": {"staging": STAGING_BUCKET, "inbound": INBOUND_BUCKET},
            "connectors": {"sftp": sftp_connector.connector_id, "as2": as2_connector.connector_id},
            "partner_root": partner.root, "partner_chroot": partner.chrooted,
            "sftp": {"host": partner.host, "port": partner.port, "user": partner.user, "private_key": partner.user_key_path},
            "request_log": log.path, "control": f"{endpoint}/_emulator",
            "as2_inbox": transfer.as2_inbox, "state_dir": state_dir, "pid": os.getpid(), "connector_pid": transfer.worker.pid,
            "start_seconds": round(time.monotonic() - started, 3),
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        server.serve_forever(poll_interval=0.2)
    except Exception as e:
        _cleanup(partner, transfer, log, state_dir if own_state and not args.keep else None, args.keep)
        _fail(f"could not start: {e}")
    _cleanup(partner, transfer, log, state_dir if own_state and not args.keep else None, args.keep)


def _cleanup(partner, transfer, log, remove_dir: str | None, keep: bool) -> None:
    if transfer is not None:
        transfer.stop()
    partner.stop()
    if not keep:
        partner.remove_root()
    if log is not None:
        log.close()
    if remove_dir:
        shutil.rmtree(remove_dir, ignore_errors=True)
