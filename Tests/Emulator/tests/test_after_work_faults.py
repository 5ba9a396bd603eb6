"""Faults that strike after the work was done (lost_answer, late_504), throttling that says when to
come back (RetryAfterSeconds), and aiming faults at one operation, every N-th time."""
from __future__ import annotations

import os
import urllib.error
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from conftest import start_emulator, wait_for


def stage(emu, body: bytes, name: str) -> str:
    key = f"outbound/{uuid.uuid4()}/{name}"
    emu.client("s3").put_object(Bucket="ferry-staging", Key=key, Body=body)
    return f"/ferry-staging/{key}"


def starts(emu) -> list[dict]:
    return [r for r in emu.log() if r["operation"] == "StartFileTransfer"]


def test_lost_answer_queues_the_transfer_and_delivers_it(calm):
    emu = calm
    name = f"lost-{uuid.uuid4()}.edi"
    path = stage(emu, b"payment file", name)
    emu.control("/reset-log", {})
    emu.control("/faults", {"rate": 1.0, "kinds": ["lost_answer"], "operations": ["StartFileTransfer"]})
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        emu.client("transfer").start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path])
    [record] = starts(emu)
    # The client heard nothing, yet the transfer exists and the partner gets the file.
    assert record["fault"] == "lost_answer" and record["status"] is None and record["work_status"] == 200
    assert record["transfer_id"] and record["paths"] == [path]
    emu.control("/faults", {"rate": 0})
    tf = emu.client("transfer")
    results = wait_for(lambda: [r for r in tf.list_file_transfer_results(
        ConnectorId=emu.sftp_id, TransferId=record["transfer_id"])["FileTransferResults"] if r["StatusCode"] == "COMPLETED"])
    assert [r["FilePath"] for r in results] == [path]
    with open(os.path.join(emu.partner_root, name), "rb") as f:
        assert f.read() == b"payment file"


def test_late_504_queues_the_transfer_then_answers_gateway_timeout(calm):
    emu = calm
    path = stage(emu, b"x", "late.edi")
    emu.control("/reset-log", {})
    emu.control("/faults", {"rate": 1.0, "kinds": ["late_504"], "operations": ["StartFileTransfer"]})
    with pytest.raises(ClientError) as e:
        emu.client("transfer").start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 504
    [record] = starts(emu)
    assert (record["fault"], record["status"], record["work_status"], record["error_code"]) == ("late_504", 504, 200, "GatewayTimeout")
    assert record["transfer_id"]


def test_after_work_faults_on_s3_do_the_work(calm):
    emu = calm
    key = f"after-work/{uuid.uuid4()}"
    emu.control("/faults", {"rate": 1.0, "kinds": ["late_504"], "operations": ["PutObject"]})
    s3 = emu.client("s3")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key=key, Body=b"written anyway")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 504
    # Aimed at PutObject only: the GetObject is answered, and shows the object was written.
    assert s3.get_object(Bucket="ferry-staging", Key=key)["Body"].read() == b"written anyway"


def test_throttle_carries_retry_after_seconds(calm):
    emu = calm
    settings = emu.control("/faults", {"rate": 1.0, "kinds": ["throttle"], "retry_after_seconds": 2})
    assert settings["retry_after_seconds"] == 2
    with pytest.raises(ClientError) as e:
        emu.client("transfer").describe_connector(ConnectorId=emu.sftp_id)
    error = e.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    # botocore's model: ThrottlingException { RetryAfterSeconds: string }, parsed from the JSON body.
    assert error["RetryAfterSeconds"] == "2"
    emu.control("/faults", {"retry_after_seconds": None})
    with pytest.raises(ClientError) as e:
        emu.client("transfer").describe_connector(ConnectorId=emu.sftp_id)
    assert "RetryAfterSeconds" not in e.value.response, "unset, throttling answers stay as before"


def test_every_third_matching_request_and_only_that_operation(calm):
    emu = calm
    emu.control("/reset-log", {})
    emu.control("/faults", {"kinds": ["internal"], "every": 3, "operations": ["DescribeConnector"]})
    tf, s3 = emu.client("transfer"), emu.client("s3")
    outcomes = []
    for _ in range(9):
        s3.list_objects_v2(Bucket="ferry-staging", MaxKeys=1)  # not aimed at: never faulted, not counted
        try:
            tf.describe_connector(ConnectorId=emu.sftp_id)
            outcomes.append("ok")
        except ClientError as e:
            outcomes.append(e.response["Error"]["Code"])
    assert outcomes == ["ok", "ok", "InternalServiceError"] * 3
    log = emu.log()
    assert [r["fault"] for r in log if r["operation"] == "DescribeConnector"] == [None, None, "internal"] * 3
    assert all(r["fault"] is None for r in log if r["operation"] == "ListObjectsV2")
    # Left out of a later setting, operations and every stay; null switches them off.
    assert emu.control("/faults", {"latency_ms": 0})["every"] == 3
    assert emu.control("/faults", {"every": None, "operations": None})["operations"] == []


def test_bad_new_settings_are_refused(calm):
    for bad in ({"every": -1}, {"every": "3"}, {"operations": "StartFileTransfer"}, {"retry_after_seconds": "soon"},
                {"kinds": ["lost_answers"]}):
        with pytest.raises(urllib.error.HTTPError) as e:
            calm.control("/faults", bad)
        assert e.value.code == 400, bad


def test_command_line_aims_every_nth_lost_answer():
    emu = start_emulator("--faults", "lost_answer", "--fault-every", "2", "--fault-operations", "StartFileTransfer",
                         "--retry-after-seconds", "5")
    try:
        assert emu.control("/faults") == {"rate": 0.0, "kinds": ["lost_answer"], "latency_ms": 0, "operations": ["StartFileTransfer"],
                                          "every": 2, "retry_after_seconds": 5.0}
        path = stage(emu, b"y", "cli.edi")
        tf = emu.client("transfer")
        answered, lost = 0, 0
        for _ in range(4):
            try:
                tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path])
                answered += 1
            except (ConnectionClosedError, EndpointConnectionError):
                lost += 1
        records = starts(emu)
        assert (answered, lost) == (2, 2)
        # Every request that reached the emulator created a transfer, answered or not.
        assert len(records) == 4 and all(r["transfer_id"] for r in records)
        assert [r["fault"] for r in records] == [None, "lost_answer"] * 2
    finally:
        emu.stop()
