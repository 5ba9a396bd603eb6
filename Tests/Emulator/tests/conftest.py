"""Starts real emulators (moto S3 + Transfer + sshd) for the boto3 suite; boto3 is the reference client."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run")


@dataclass
class Emulator:
    info: dict
    process: subprocess.Popen
    stderr_path: str

    def client(self, service: str, validate: bool = True, retries: int = 0, **overrides):
        # SigV4 everywhere, presigned URLs included (boto3 would presign S3 with SigV2 otherwise).
        kwargs = dict(endpoint_url=self.info["endpoint"], region_name=self.info["region"],
                      aws_access_key_id=self.info["access_key_id"], aws_secret_access_key=self.info["secret_access_key"],
                      config=Config(signature_version="s3v4" if service == "s3" else None, parameter_validation=validate, retries={"total_max_attempts": retries + 1, "mode": "standard"},
                                    s3={"addressing_style": "path"}))
        kwargs.update(overrides)
        return boto3.client(service, **kwargs)

    @property
    def sftp_id(self) -> str:
        return self.info["connectors"]["sftp"]

    @property
    def as2_id(self) -> str:
        return self.info["connectors"]["as2"]

    @property
    def partner_root(self) -> str:
        return self.info["partner_root"]

    def control(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.info["control"] + path, data=data, method="GET" if data is None else "POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def log(self) -> list[dict]:
        with open(self.info["request_log"], encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_emulator(*args: str, env: dict | None = None) -> Emulator:
    err = tempfile.NamedTemporaryFile(prefix="ferry-emulator-stderr.", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, RUN, *args], stdout=subprocess.PIPE, stderr=err, text=True,
                               env=None if env is None else {**os.environ, **env})
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        with open(err.name) as f:
            pytest.fail(f"emulator did not start (exit {process.returncode}): {f.read()}")
    return Emulator(json.loads(line), process, err.name)


@pytest.fixture(scope="session")
def emu():
    e = start_emulator()
    yield e
    e.stop()


@pytest.fixture
def calm(emu):
    """The shared emulator with faults switched off again after the test, whatever it set."""
    yield emu
    emu.control("/faults", {"rate": 0, "kinds": [], "latency_ms": 0, "operations": None, "every": None, "retry_after_seconds": None})


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_transfer(tf, connector_id: str, transfer_id: str, timeout: float = 20.0) -> list[dict]:
    def done():
        results = tf.list_file_transfer_results(ConnectorId=connector_id, TransferId=transfer_id)["FileTransferResults"]
        return results if all(r["StatusCode"] in ("COMPLETED", "FAILED") for r in results) else None
    return wait_for(done, timeout)
