"""Fault injection (per run and at run time), the request log, the control endpoint, start and stop."""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from conftest import start_emulator, wait_for, wait_transfer


def code_of(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo) -> int:
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("kind, s3_expected, transfer_expected", [
    ("throttle", (503, "SlowDown"), (400, "ThrottlingException")),
    ("slowdown", (503, "SlowDown"), (400, "ThrottlingException")),
    ("unavailable", (503, "ServiceUnavailable"), (503, "ServiceUnavailableException")),
    ("internal", (500, "InternalError"), (500, "InternalServiceError")),
])
def test_each_fault_kind_at_run_time(calm, kind, s3_expected, transfer_expected):
    emu = calm
    emu.control("/reset-log", {})
    assert emu.control("/faults", {"rate": 1.0, "kinds": [kind]}) == {"rate": 1.0, "kinds": [kind], "latency_ms": 0,
                                                                      "operations": [], "every": 0, "retry_after_seconds": None}
    with pytest.raises(ClientError) as e:
        emu.client("s3").list_objects_v2(Bucket="ferry-staging")
    assert (status_of(e), code_of(e)) == s3_expected
    with pytest.raises(ClientError) as e:
        emu.client("transfer").describe_connector(ConnectorId=emu.sftp_id)
    assert (status_of(e), code_of(e)) == transfer_expected
    log = emu.log()
    assert [(r["service"], r["operation"], r["fault"], r["status"], r["error_code"]) for r in log] == [
        ("s3", "ListObjectsV2", kind, s3_expected[0], s3_expected[1]),
        ("transfer", "DescribeConnector", kind, transfer_expected[0], transfer_expected[1]),
    ]
    emu.control("/faults", {"rate": 0})
    assert emu.client("s3").list_objects_v2(Bucket="ferry-staging", MaxKeys=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_dropped_connection(calm):
    emu = calm
    emu.control("/faults", {"rate": 1.0, "kinds": ["drop"]})
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        emu.client("s3").put_object(Bucket="ferry-staging", Key="dropped", Body=b"x")
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        emu.client("transfer").describe_connector(ConnectorId=emu.sftp_id)
    emu.control("/faults", {"rate": 0})
    with pytest.raises(ClientError):
        emu.client("s3").head_object(Bucket="ferry-staging", Key="dropped")
    assert [r["fault"] for r in emu.log() if r["operation"] == "PutObject" and r["key"] == "dropped"] == ["drop"]


def test_boto3_retries_through_faults(calm):
    emu = calm
    emu.control("/faults", {"rate": 0.3, "kinds": ["unavailable", "internal"]})
    s3 = emu.client("s3", retries=10)
    key = f"retried-{uuid.uuid4()}"

    def faulted():
        return [r for r in emu.log() if (r["key"] or "").startswith(key) and r["fault"]]

    written = 0
    # Keep going until the dice have hit at least once, so the test never passes without a fault.
    while written < 10 or (not faulted() and written < 200):
        s3.put_object(Bucket="ferry-staging", Key=f"{key}/{written}", Body=b"x")
        written += 1
    emu.control("/faults", {"rate": 0})
    assert emu.client("s3").list_objects_v2(Bucket="ferry-staging", Prefix=key)["KeyCount"] == written
    assert faulted()


def test_added_latency(calm):
    emu = calm
    emu.control("/faults", {"rate": 0, "latency_ms": 300})
    s3 = emu.client("s3")
    started = time.monotonic()
    s3.list_objects_v2(Bucket="ferry-staging", MaxKeys=1)
    assert time.monotonic() - started >= 0.3


def test_control_endpoint_rejects_bad_settings(calm):
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        calm.control("/faults", {"rate": 2})
    assert e.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        calm.control("/faults", {"kinds": ["meteor"]})
    assert e.value.code == 400
    assert calm.control("/health") == {"ok": True}


def test_faults_from_the_command_line_are_seeded_and_logged():
    def run_once() -> list[str | None]:
        emu = start_emulator("--fault-rate", "0.5", "--faults", "throttle,internal", "--seed", "7")
        try:
            s3 = emu.client("s3")
            for _ in range(30):
                try:
                    s3.list_objects_v2(Bucket="ferry-staging", MaxKeys=1)
                except ClientError as e:
                    assert e.response["Error"]["Code"] in ("SlowDown", "InternalError")
            return [r["fault"] for r in emu.log()]
        finally:
            emu.stop()

    first, second = run_once(), run_once()
    assert len(first) == 30
    assert set(first) == {None, "throttle", "internal"}
    assert first == second


def test_request_log_reset(calm):
    calm.client("s3").list_objects_v2(Bucket="ferry-staging", MaxKeys=1)
    assert calm.log()
    calm.control("/reset-log", {})
    assert calm.log() == []
    calm.client("s3").list_objects_v2(Bucket="ferry-staging", MaxKeys=1)
    [record] = calm.log()
    assert set(record) == {"ts", "service", "operation", "status", "fault", "error_code", "key", "connector_id", "transfer_id", "paths"}


def test_start_prints_one_line_and_sigterm_cleans_up(tmp_path):
    started = time.monotonic()
    emu = start_emulator()
    print(f"emulator ready after {time.monotonic() - started:.2f}s (self-reported {emu.info['start_seconds']}s)")
    info = emu.info
    for field in ("endpoint", "region", "access_key_id", "secret_access_key", "buckets", "connectors",
                  "partner_root", "sftp", "request_log", "control"):
        assert field in info
    assert os.path.isdir(info["partner_root"]) and os.path.isfile(info["sftp"]["private_key"])
    s3 = emu.client("s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"ferry-staging", "ferry-inbound"}
    with open(os.path.join(info["state_dir"], "ssh", "sshd_config")) as f:
        port_line = next(line for line in f if line.startswith("ListenAddress"))
    assert port_line.strip().endswith(f":{info['sftp']['port']}")
    assert emu.process.stdout.read() == "" if emu.stop() is not None else False
    assert emu.process.returncode == 0
    assert not os.path.exists(info["state_dir"])
    assert not os.path.exists(info["partner_root"])
    import socket
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", info["sftp"]["port"]), timeout=1).close()


def test_state_dir_and_keep(tmp_path):
    state = tmp_path / "state"
    emu = start_emulator("--state-dir", str(state))
    assert emu.info["request_log"] == str(state / "requests.jsonl")
    emu.stop()
    assert (state / "requests.jsonl").exists(), "an explicit --state-dir is the caller's and stays"


def _process_state(pid: int) -> str | None:
    """The process's state letter (R, S, Z…), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _ended(pid: int) -> bool:
    return _process_state(pid) in (None, "Z", "X")


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _send_one(emu, name: str) -> str:
    emu.client("s3").put_object(Bucket="ferry-staging", Key=f"out/{name}", Body=b"payload of " + name.encode())
    return emu.client("transfer").start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[f"/ferry-staging/out/{name}"])["TransferId"]


def test_connector_process_is_a_child_that_stop_ends():
    emu = start_emulator("--transfer-delay-ms", "1500")
    pid = emu.info["connector_pid"]
    assert pid != emu.info["pid"] and _parent_of(pid) == emu.info["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"ferry_emulator.connector" in f.read()
    tid = _send_one(emu, "in-flight.txt")
    wait_for(lambda: emu.client("transfer").list_file_transfer_results(
        ConnectorId=emu.sftp_id, TransferId=tid)["FileTransferResults"][0]["StatusCode"] == "IN_PROGRESS")
    assert emu.stop() == 0  # a file still in progress does not keep the emulator from stopping
    assert _process_state(pid) is None, "the emulator reaps its connector process: no zombie, no orphan"


def test_connector_process_ends_when_the_emulator_is_killed():
    emu = start_emulator()
    pid, sshd = emu.info["connector_pid"], None
    for child in os.listdir(f"/proc/{emu.info['pid']}/task"):
        with open(f"/proc/{emu.info['pid']}/task/{child}/children") as f:
            for c in f.read().split():
                with open(f"/proc/{c}/cmdline", "rb") as cmd:
                    if b"sshd" in cmd.read():
                        sshd = int(c)
    assert sshd is not None
    emu.process.kill()
    emu.process.wait()
    assert wait_for(lambda: _ended(pid) and _ended(sshd), timeout=10)


def test_a_lost_connector_process_fails_files_instead_of_leaving_them_in_progress():
    slow = start_emulator("--transfer-delay-ms", "1500")
    try:
        tf = slow.client("transfer")
        tid = _send_one(slow, "lost.txt")
        wait_for(lambda: tf.list_file_transfer_results(ConnectorId=slow.sftp_id, TransferId=tid)["FileTransferResults"][0]["StatusCode"] == "IN_PROGRESS")
        os.kill(slow.info["connector_pid"], signal.SIGKILL)
        [result] = wait_transfer(tf, slow.sftp_id, tid)
        assert (result["StatusCode"], result["FailureCode"]) == ("FAILED", "INTERNAL_ERROR")
        assert "connector process" in result["FailureMessage"]
        later = _send_one(slow, "later.txt")  # accepted, as AWS accepts it, and failed at once rather than queued forever
        [result] = wait_transfer(tf, slow.sftp_id, later)
        assert (result["StatusCode"], result["FailureCode"]) == ("FAILED", "INTERNAL_ERROR")
        assert not os.path.exists(os.path.join(slow.partner_root, "lost.txt"))
        with open(slow.stderr_path) as f:
            assert "connector process" in f.read()
    finally:
        assert slow.stop() == 0
