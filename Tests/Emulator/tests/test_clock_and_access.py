"""The emulator's shifted clock (RequestTimeTooSkewed, Date) and per-bucket write denial, set through the control endpoint."""
from __future__ import annotations

import email.utils
import time
import urllib.error

import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def restored(calm):
    """The shared emulator with its clock and bucket permissions put back after the test."""
    yield calm
    calm.control("/clock", {"offset_seconds": 0})
    for bucket in ("ferry-staging", "ferry-inbound"):
        calm.control(f"/buckets/{bucket}", {"deny_writes": False})


def server_offset(response_metadata: dict) -> float:
    date = email.utils.parsedate_to_datetime(response_metadata["HTTPHeaders"]["date"])
    return date.timestamp() - time.time()


def test_a_shifted_clock_rejects_fresh_signatures_and_shows_in_date(restored):
    emu = restored
    s3, transfer = emu.client("s3"), emu.client("transfer")
    ok = s3.list_objects_v2(Bucket="ferry-staging")
    assert abs(server_offset(ok["ResponseMetadata"])) < 5
    assert emu.control("/clock", {"offset_seconds": 1200}) == {"offset_seconds": 1200.0}
    assert emu.control("/clock") == {"offset_seconds": 1200.0}
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="ferry-staging")
    assert e.value.response["Error"]["Code"] == "RequestTimeTooSkewed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The answer's Date is the emulator's clock: a client corrects its skew from it.
    assert 1195 < server_offset(e.value.response["ResponseMetadata"]) < 1205
    with pytest.raises(ClientError) as e:
        transfer.describe_connector(ConnectorId=emu.sftp_id)
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "Signature expired" in e.value.response["Error"]["Message"]
    # Ten minutes off is inside AWS's 15-minute allowance: accepted, and the Date still shows the offset.
    emu.control("/clock", {"offset_seconds": -600})
    ok = transfer.describe_connector(ConnectorId=emu.sftp_id)
    assert -605 < server_offset(ok["ResponseMetadata"]) < -595
    emu.control("/clock", {"offset_seconds": 0})
    s3.list_objects_v2(Bucket="ferry-staging")


def test_denied_bucket_refuses_writes_but_not_reads(restored):
    emu = restored
    s3 = emu.client("s3")
    s3.put_object(Bucket="ferry-staging", Key="deny/before", Body=b"x")
    assert emu.control("/buckets/ferry-staging", {"deny_writes": True}) == {"bucket": "ferry-staging", "deny_writes": True}
    for call in (lambda: s3.put_object(Bucket="ferry-staging", Key="deny/after", Body=b"y"),
                 lambda: s3.delete_object(Bucket="ferry-staging", Key="deny/before"),
                 lambda: s3.create_multipart_upload(Bucket="ferry-staging", Key="deny/multi")):
        with pytest.raises(ClientError) as e:
            call()
        assert (e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]) == (403, "AccessDenied")
    assert s3.get_object(Bucket="ferry-staging", Key="deny/before")["Body"].read() == b"x"
    assert "Contents" in s3.list_objects_v2(Bucket="ferry-staging", Prefix="deny/")
    # Other buckets are not affected.
    s3.put_object(Bucket="ferry-inbound", Key="deny/elsewhere", Body=b"z")
    log = [r for r in emu.log() if r.get("key") == "deny/after"]
    assert [(r["operation"], r["status"], r["error_code"]) for r in log] == [("PutObject", 403, "AccessDenied")]
    emu.control("/buckets/ferry-staging", {"deny_writes": False})
    s3.put_object(Bucket="ferry-staging", Key="deny/after", Body=b"y")
    s3.delete_object(Bucket="ferry-staging", Key="deny/before")


def test_control_rejects_bad_clock_and_bucket_settings(restored):
    emu = restored
    for path, body in (("/clock", {"offset_seconds": "soon"}), ("/clock", {}), ("/buckets/ferry-staging", {"deny_writes": "yes"}),
                       ("/buckets/", {"deny_writes": True})):
        with pytest.raises(urllib.error.HTTPError) as e:
            emu.control(path, body)
        assert e.value.code == 400
