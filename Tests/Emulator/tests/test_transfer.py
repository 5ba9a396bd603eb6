"""Transfer Family connector operations through boto3: every operation, its success and its errors,
and sends/retrieves that really cross SFTP to the sshd partner."""
from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import start_emulator, wait_for, wait_transfer

UNKNOWN_CONNECTOR = "c-0123456789abcdef0"


def code_of(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def stage(emu, body: bytes, name: str | None = None) -> str:
    key = f"outbound/{uuid.uuid4()}/{name or 'file.txt'}"
    emu.client("s3").put_object(Bucket="ferry-staging", Key=key, Body=body)
    return f"/ferry-staging/{key}"


def partner_dir(emu, relative: str) -> str:
    path = os.path.join(emu.partner_root, relative.strip("/"))
    os.makedirs(path, exist_ok=True)
    return path


# ---- CreateConnector / DescribeConnector / ListConnectors / DeleteConnector ----------------------

ROLE = "arn:aws:iam::123456789012:role/ferry-test"


def test_preconfigured_connectors_are_described(emu):
    tf = emu.client("transfer")
    sftp = tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]
    assert sftp["ConnectorId"] == emu.sftp_id
    assert sftp["Url"] == f"sftp://127.0.0.1:{emu.info['sftp']['port']}"
    assert sftp["SftpConfig"]["TrustedHostKeys"][0].startswith("ssh-ed25519 ")
    as2 = tf.describe_connector(ConnectorId=emu.as2_id)["Connector"]
    assert "As2Config" in as2 and "SftpConfig" not in as2
    listed = {c["ConnectorId"] for c in tf.list_connectors()["Connectors"]}
    assert {emu.sftp_id, emu.as2_id} <= listed


def _model_shape(name: str) -> dict:
    """A shape of botocore's own Transfer Family service model (the one boto3 ships)."""
    import botocore.session
    return botocore.session.get_session().get_service_model("transfer").shape_for(name)


def test_describe_connector_carries_the_models_required_members_and_settable_status(emu):
    tf = emu.client("transfer")
    described = tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]
    shape = _model_shape("DescribedConnector")
    for member in shape.required_members:
        assert member in described, f"DescribedConnector requires {member}"
    assert set(described) <= set(shape.members), set(described) - set(shape.members)
    assert described["Status"] == "ACTIVE" and described["EgressType"] in _model_shape("ConnectorEgressType").enum
    assert "ErrorMessage" not in described
    # The control endpoint plays a connector being created, then failing, then recovering.
    emu.control(f"/connectors/{emu.sftp_id}", {"Status": "PENDING"})
    assert tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]["Status"] == "PENDING"
    emu.control(f"/connectors/{emu.sftp_id}", {"Status": "ERRORED", "ErrorMessage": "Secret not found"})
    errored = tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]
    assert (errored["Status"], errored["ErrorMessage"]) == ("ERRORED", "Secret not found")
    assert errored["Status"] in _model_shape("ConnectorStatus").enum
    emu.control(f"/connectors/{emu.sftp_id}", {"Status": "ACTIVE"})
    active = tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]
    assert active["Status"] == "ACTIVE" and "ErrorMessage" not in active
    with pytest.raises(urllib.error.HTTPError):
        emu.control(f"/connectors/{emu.sftp_id}", {"Status": "BROKEN"})


def test_create_describe_delete_connector(emu):
    tf = emu.client("transfer")
    cid = tf.create_connector(Url=f"sftp://127.0.0.1:{emu.info['sftp']['port']}", AccessRole=ROLE,
                              SftpConfig={"UserSecretId": "secret", "TrustedHostKeys": []})["ConnectorId"]
    assert cid.startswith("c-") and len(cid) == 19
    assert tf.describe_connector(ConnectorId=cid)["Connector"]["Arn"].endswith(f":connector/{cid}")
    assert tf.test_connection(ConnectorId=cid)["Status"] == "OK"
    tf.delete_connector(ConnectorId=cid)
    with pytest.raises(ClientError) as e:
        tf.describe_connector(ConnectorId=cid)
    assert code_of(e) == "ResourceNotFoundException"
    assert cid not in {c["ConnectorId"] for c in tf.list_connectors()["Connectors"]}
    with pytest.raises(ClientError) as e:
        tf.delete_connector(ConnectorId=cid)
    assert code_of(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        emu.client("transfer", validate=False).delete_connector(ConnectorId="c-x")
    assert code_of(e) == "ValidationException"


def test_create_connector_errors(emu):
    tf = emu.client("transfer", validate=False)
    with pytest.raises(ClientError) as e:
        tf.create_connector(AccessRole=ROLE, SftpConfig={})
    assert code_of(e) == "ValidationException" and "url" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        tf.create_connector(Url="sftp://127.0.0.1:22", AccessRole="not-a-role-arn-at-all", SftpConfig={})
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        tf.create_connector(Url="sftp://127.0.0.1:22", AccessRole=ROLE, SftpConfig={}, As2Config={})
    assert code_of(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        tf.create_connector(Url="https://partner.example/as2", AccessRole=ROLE, SftpConfig={})
    assert code_of(e) == "InvalidRequestException"


def test_describe_connector_errors(emu):
    tf = emu.client("transfer", validate=False)
    with pytest.raises(ClientError) as e:
        tf.describe_connector(ConnectorId=UNKNOWN_CONNECTOR)
    assert code_of(e) == "ResourceNotFoundException"
    assert e.value.response["Error"]["Message"] == f"Unknown Connector: {UNKNOWN_CONNECTOR}"
    with pytest.raises(ClientError) as e:
        tf.describe_connector(ConnectorId="c-NOT-VALID")
    assert code_of(e) == "ValidationException"
    assert "c-([0-9a-f]{17})" in e.value.response["Error"]["Message"] or "length" in e.value.response["Error"]["Message"]


# ---- StartFileTransfer: sends -------------------------------------------------------------------

def test_send_crosses_sftp_to_the_partner_home(emu):
    tf = emu.client("transfer")
    body = os.urandom(100_000)
    name = f"invoice-{uuid.uuid4()}.edi"
    path = stage(emu, body, name)
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path])["TransferId"]
    assert wait_transfer(tf, emu.sftp_id, tid) == [{"FilePath": path, "StatusCode": "COMPLETED"}]
    with open(os.path.join(emu.partner_root, name), "rb") as f:
        assert f.read() == body
    logged = [r for r in emu.log() if r["transfer_id"] == tid and r["operation"] == "StartFileTransfer"]
    assert logged[0]["paths"] == [path] and logged[0]["connector_id"] == emu.sftp_id


def test_send_ten_files_into_a_remote_directory(emu):
    tf = emu.client("transfer")
    target = partner_dir(emu, f"inbound/invoices-{uuid.uuid4()}")
    remote = "/" + os.path.relpath(target, emu.partner_root)
    paths = [stage(emu, f"file {i}".encode(), f"f{i} (ü).txt") for i in range(10)]
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=paths, RemoteDirectoryPath=remote)["TransferId"]
    results = wait_transfer(tf, emu.sftp_id, tid)
    assert [r["StatusCode"] for r in results] == ["COMPLETED"] * 10
    assert sorted(os.listdir(target)) == sorted(f"f{i} (ü).txt" for i in range(10))


def test_send_to_missing_remote_directory_fails_without_creating_it(emu):
    tf = emu.client("transfer")
    path = stage(emu, b"x")
    missing = f"/no-such-dir-{uuid.uuid4()}"
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path], RemoteDirectoryPath=missing)["TransferId"]
    [result] = wait_transfer(tf, emu.sftp_id, tid)
    assert result["StatusCode"] == "FAILED" and result["FailureCode"] == "REMOTE_DIRECTORY_NOT_FOUND"
    assert missing in result["FailureMessage"]
    assert not os.path.exists(os.path.join(emu.partner_root, missing.lstrip("/")))


def test_send_of_a_missing_s3_object_fails(emu):
    tf = emu.client("transfer")
    path = f"/ferry-staging/missing/{uuid.uuid4()}.txt"
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path])["TransferId"]
    [result] = wait_transfer(tf, emu.sftp_id, tid)
    assert result["StatusCode"] == "FAILED" and result["FailureCode"] == "SEND_FILE_NOT_FOUND"


def test_remote_path_cannot_escape_the_partner_root(emu):
    tf = emu.client("transfer")
    path = stage(emu, b"x")
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[path], RemoteDirectoryPath="/../..")["TransferId"]
    [result] = wait_transfer(tf, emu.sftp_id, tid)
    assert result["StatusCode"] == "FAILED" and result["FailureCode"] == "INVALID_PATH"


def test_as2_send_completes(emu):
    tf = emu.client("transfer")
    name = f"as2-{uuid.uuid4()}.edi"
    path = stage(emu, b"ISA*00", name)
    tid = tf.start_file_transfer(ConnectorId=emu.as2_id, SendFilePaths=[path])["TransferId"]
    assert wait_transfer(tf, emu.as2_id, tid)[0]["StatusCode"] == "COMPLETED"
    with open(os.path.join(emu.info["as2_inbox"], name), "rb") as f:
        assert f.read() == b"ISA*00"


# ---- StartFileTransfer: retrieves ---------------------------------------------------------------

def test_retrieve_crosses_sftp_into_s3(emu):
    tf = emu.client("transfer")
    folder = partner_dir(emu, f"outbound/reports-{uuid.uuid4()}")
    body = os.urandom(50_000)
    with open(os.path.join(folder, "report 1.csv"), "wb") as f:
        f.write(body)
    remote = "/" + os.path.relpath(folder, emu.partner_root) + "/report 1.csv"
    prefix = f"inbound/{uuid.uuid4()}"
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, RetrieveFilePaths=[remote],
                                 LocalDirectoryPath=f"/ferry-inbound/{prefix}")["TransferId"]
    assert wait_transfer(tf, emu.sftp_id, tid) == [{"FilePath": remote, "StatusCode": "COMPLETED"}]
    got = emu.client("s3").get_object(Bucket="ferry-inbound", Key=f"{prefix}/report 1.csv")["Body"].read()
    assert got == body


def test_retrieve_of_a_missing_remote_file_fails(emu):
    tf = emu.client("transfer")
    remote = f"/outbound/{uuid.uuid4()}.csv"
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, RetrieveFilePaths=[remote],
                                 LocalDirectoryPath="/ferry-inbound/x")["TransferId"]
    [result] = wait_transfer(tf, emu.sftp_id, tid)
    assert result == {"FilePath": remote, "StatusCode": "FAILED", "FailureCode": "RETRIEVE_FILE_NOT_FOUND",
                      "FailureMessage": result["FailureMessage"]}


# ---- StartFileTransfer: input constraints -------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    ({"SendFilePaths": [f"/ferry-staging/{i}" for i in range(11)]}, "ValidationException"),
    ({"SendFilePaths": []}, "ValidationException"),
    ({"SendFilePaths": ["/ferry-staging/" + "a" * 1010]}, "ValidationException"),
    ({"SendFilePaths": [""]}, "ValidationException"),
    ({"RetrieveFilePaths": ["/x"], "LocalDirectoryPath": ""}, "ValidationException"),
    ({"SendFilePaths": ["/ferry-staging/a"], "RetrieveFilePaths": ["/a"], "LocalDirectoryPath": "/ferry-inbound"}, "InvalidRequestException"),
    ({}, "InvalidRequestException"),
    ({"RetrieveFilePaths": ["/a"]}, "InvalidRequestException"),
])
def test_start_file_transfer_input_errors(emu, kwargs, expected):
    tf = emu.client("transfer", validate=False)
    with pytest.raises(ClientError) as e:
        tf.start_file_transfer(ConnectorId=emu.sftp_id, **kwargs)
    assert code_of(e) == expected
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_start_file_transfer_connector_errors(emu):
    tf = emu.client("transfer", validate=False)
    with pytest.raises(ClientError) as e:
        tf.start_file_transfer(ConnectorId=UNKNOWN_CONNECTOR, SendFilePaths=["/ferry-staging/a"])
    assert code_of(e) == "ResourceNotFoundException"
    assert e.value.response["Error"]["Message"] == f"Unknown Connector: {UNKNOWN_CONNECTOR}"
    with pytest.raises(ClientError) as e:
        tf.start_file_transfer(ConnectorId="c-123", SendFilePaths=["/ferry-staging/a"])
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        tf.start_file_transfer(ConnectorId=emu.as2_id, RetrieveFilePaths=["/a"], LocalDirectoryPath="/ferry-inbound")
    assert code_of(e) == "InvalidRequestException"


def test_exactly_ten_paths_of_1024_characters_are_accepted(emu):
    tf = emu.client("transfer")
    long_path = "/ferry-staging/" + "k" * (1024 - len("/ferry-staging/"))
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[long_path] * 10)["TransferId"]
    assert len(wait_transfer(tf, emu.sftp_id, tid)) == 10


# ---- ListFileTransferResults --------------------------------------------------------------------

def test_list_file_transfer_results_pages(emu):
    tf = emu.client("transfer")
    paths = [stage(emu, b"p", f"page{i}.txt") for i in range(10)]
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=paths)["TransferId"]
    wait_transfer(tf, emu.sftp_id, tid)
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = tf.list_file_transfer_results(ConnectorId=emu.sftp_id, TransferId=tid, MaxResults=3, **kwargs)
        pages += 1
        seen += [r["FilePath"] for r in page["FileTransferResults"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 4 and seen == paths


def test_list_file_transfer_results_errors(emu):
    tf = emu.client("transfer", validate=False)
    with pytest.raises(ClientError) as e:
        tf.list_file_transfer_results(ConnectorId=emu.sftp_id, TransferId=str(uuid.uuid4()))
    assert code_of(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        tf.list_file_transfer_results(ConnectorId=UNKNOWN_CONNECTOR, TransferId=str(uuid.uuid4()))
    assert code_of(e) == "ResourceNotFoundException"
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[stage(emu, b"x")])["TransferId"]
    with pytest.raises(ClientError) as e:
        tf.list_file_transfer_results(ConnectorId=emu.as2_id, TransferId=tid)
    assert code_of(e) == "ResourceNotFoundException"
    for bad in ({"MaxResults": 0}, {"MaxResults": 1001}, {"TransferId": "bad id!"}):
        with pytest.raises(ClientError) as e:
            tf.list_file_transfer_results(**{"ConnectorId": emu.sftp_id, "TransferId": tid, **bad})
        assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        tf.list_file_transfer_results(ConnectorId=emu.sftp_id, TransferId=tid, NextToken="garbage")
    assert code_of(e) == "InvalidNextTokenException"


def test_delivery_log_says_when_each_file_started_and_was_delivered():
    slow = start_emulator("--transfer-delay-ms", "300")
    try:
        tf = slow.client("transfer")
        paths = [stage(slow, f"timed {i}".encode(), f"timed{i}.txt") for i in range(3)]
        sent = time.monotonic()
        tid = tf.start_file_transfer(ConnectorId=slow.sftp_id, SendFilePaths=paths)["TransferId"]
        results = wait_transfer(tf, slow.sftp_id, tid, timeout=30)
        # One connection, one file at a time, each IN_PROGRESS for at least the service time (its own
        # work included): the three cannot be done sooner than 3 x 300 ms after they were asked for.
        assert time.monotonic() - sent >= 0.9
        assert [r["StatusCode"] for r in results] == ["COMPLETED"] * 3
        with open(os.path.join(slow.info["state_dir"], "deliveries.jsonl")) as f:
            lines = [json.loads(x) for x in f]
        assert [(x["transfer_id"], x["remote_path"], x["size"], x["sha256"]) for x in lines] == [
            (tid, f"/timed{i}.txt", 7, hashlib.sha256(f"timed {i}".encode()).hexdigest()) for i in range(3)]
        # The first file on a connection waits the whole service time before its bytes move.
        assert lines[0]["ts"] - lines[0]["started"] >= 0.3
        assert lines[0]["started"] < lines[1]["started"] < lines[2]["started"]
    finally:
        slow.stop()


def test_sftp_connections_flag_sends_that_many_files_at_once():
    wide = start_emulator("--transfer-delay-ms", "600", "--sftp-connections", "3")
    try:
        tf = wide.client("transfer")
        assert tf.describe_connector(ConnectorId=wide.sftp_id)["Connector"]["SftpConfig"]["MaxConcurrentConnections"] == 3
        paths = [stage(wide, f"wide {i}".encode(), f"wide{i}.txt") for i in range(3)]
        sent = time.monotonic()
        tid = tf.start_file_transfer(ConnectorId=wide.sftp_id, SendFilePaths=paths)["TransferId"]
        assert [r["StatusCode"] for r in wait_transfer(tf, wide.sftp_id, tid, timeout=30)] == ["COMPLETED"] * 3
        # Three sessions, a file each: all three in one service time, not three in a row (1.8 s).
        assert time.monotonic() - sent < 1.5
        with open(os.path.join(wide.info["state_dir"], "deliveries.jsonl")) as f:
            starts = sorted(json.loads(x)["started"] for x in f)
        assert starts[-1] - starts[0] < 0.5
    finally:
        wide.stop()


def test_files_go_queued_then_in_progress_then_completed():
    slow = start_emulator("--transfer-delay-ms", "1500")
    try:
        tf = slow.client("transfer")
        paths = [stage(slow, b"slow", f"s{i}.txt") for i in range(3)]
        tid = tf.start_file_transfer(ConnectorId=slow.sftp_id, SendFilePaths=paths)["TransferId"]
        observed: list[tuple[str, ...]] = []

        def finished():
            results = tf.list_file_transfer_results(ConnectorId=slow.sftp_id, TransferId=tid)["FileTransferResults"]
            states = tuple(r["StatusCode"] for r in results)
            if not observed or observed[-1] != states:
                observed.append(states)
            return all(s == "COMPLETED" for s in states)

        wait_for(finished, timeout=30, interval=0.05)
        assert ("IN_PROGRESS", "QUEUED", "QUEUED") in observed
        assert ("COMPLETED", "IN_PROGRESS", "QUEUED") in observed
        assert observed[-1] == ("COMPLETED",) * 3
    finally:
        slow.stop()


# ---- StartDirectoryListing ----------------------------------------------------------------------

def _listing(emu, remote: str, **kwargs) -> dict:
    tf = emu.client("transfer")
    out_prefix = f"listings/{uuid.uuid4()}"
    r = tf.start_directory_listing(ConnectorId=emu.sftp_id, RemoteDirectoryPath=remote,
                                   OutputDirectoryPath=f"/ferry-inbound/{out_prefix}", **kwargs)
    assert r["OutputFileName"] == f"{emu.sftp_id}-{r['ListingId']}.json"
    s3 = emu.client("s3")

    def fetch():
        try:
            return s3.get_object(Bucket="ferry-inbound", Key=f"{out_prefix}/{r['OutputFileName']}")["Body"].read()
        except ClientError:
            return None
    return json.loads(wait_for(fetch))


def test_directory_listing_in_aws_format(emu):
    folder = partner_dir(emu, f"outbound/list-{uuid.uuid4()}")
    remote = "/" + os.path.relpath(folder, emu.partner_root)
    for name, size in (("a.csv", 3), ("b.csv", 10)):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"z" * size)
    os.mkdir(os.path.join(folder, "archive"))
    os.utime(os.path.join(folder, "a.csv"), (1700000000, 1700000000))
    listing = _listing(emu, remote)
    assert listing["truncated"] is False
    assert listing["paths"] == [{"path": f"{remote}/archive"}]
    assert listing["files"] == [
        {"filePath": f"{remote}/a.csv", "modifiedTimestamp": "2023-11-14T22:13:20Z", "size": 3},
        {"filePath": f"{remote}/b.csv", "modifiedTimestamp": listing["files"][1]["modifiedTimestamp"], "size": 10},
    ]


def test_directory_listing_honours_max_items(emu):
    folder = partner_dir(emu, f"outbound/many-{uuid.uuid4()}")
    for i in range(5):
        open(os.path.join(folder, f"{i}.txt"), "w").close()
    remote = "/" + os.path.relpath(folder, emu.partner_root)
    listing = _listing(emu, remote, MaxItems=2)
    assert listing["truncated"] is True and len(listing["files"]) + len(listing["paths"]) == 2
    assert _listing(emu, remote, MaxItems=5)["truncated"] is False


def test_directory_listing_errors(emu):
    tf = emu.client("transfer", validate=False)
    with pytest.raises(ClientError) as e:
        tf.start_directory_listing(ConnectorId=emu.as2_id, RemoteDirectoryPath="/", OutputDirectoryPath="/ferry-inbound/l")
    assert code_of(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        tf.start_directory_listing(ConnectorId=UNKNOWN_CONNECTOR, RemoteDirectoryPath="/", OutputDirectoryPath="/ferry-inbound/l")
    assert code_of(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        tf.start_directory_listing(ConnectorId=emu.sftp_id, RemoteDirectoryPath="/")
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        tf.start_directory_listing(ConnectorId=emu.sftp_id, RemoteDirectoryPath="/", OutputDirectoryPath="/ferry-inbound/l", MaxItems=0)
    assert code_of(e) == "ValidationException"


# ---- StartRemoteDelete / StartRemoteMove --------------------------------------------------------

def test_remote_move_and_delete_act_on_the_partner_disk(emu):
    tf = emu.client("transfer")
    folder = partner_dir(emu, f"outbound/move-{uuid.uuid4()}")
    os.mkdir(os.path.join(folder, "archive"))
    with open(os.path.join(folder, "r.csv"), "w") as f:
        f.write("data")
    remote = "/" + os.path.relpath(folder, emu.partner_root)
    move_id = tf.start_remote_move(ConnectorId=emu.sftp_id, SourcePath=f"{remote}/r.csv", TargetPath=f"{remote}/archive/r.csv")["MoveId"]
    assert move_id
    wait_for(lambda: os.path.exists(os.path.join(folder, "archive", "r.csv")))
    wait_for(lambda: not os.path.exists(os.path.join(folder, "r.csv")))
    assert tf.start_remote_delete(ConnectorId=emu.sftp_id, DeletePath=f"{remote}/archive/r.csv")["DeleteId"]
    wait_for(lambda: not os.path.exists(os.path.join(folder, "archive", "r.csv")))
    tf.start_remote_delete(ConnectorId=emu.sftp_id, DeletePath=f"{remote}/archive")
    wait_for(lambda: not os.path.exists(os.path.join(folder, "archive")))


def test_remote_move_and_delete_errors(emu):
    tf = emu.client("transfer", validate=False)
    for call, kwargs in ((tf.start_remote_move, {"SourcePath": "/a", "TargetPath": "/b"}),
                         (tf.start_remote_delete, {"DeletePath": "/a"})):
        with pytest.raises(ClientError) as e:
            call(ConnectorId=emu.as2_id, **kwargs)
        assert code_of(e) == "InvalidRequestException"
        with pytest.raises(ClientError) as e:
            call(ConnectorId=UNKNOWN_CONNECTOR, **kwargs)
        assert code_of(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        tf.start_remote_move(ConnectorId=emu.sftp_id, SourcePath="/a")
    assert code_of(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        tf.start_remote_delete(ConnectorId=emu.sftp_id, DeletePath="x" * 1025)
    assert code_of(e) == "ValidationException"


# ---- TestConnection -----------------------------------------------------------------------------

def test_test_connection(emu):
    tf = emu.client("transfer", validate=False)
    ok = tf.test_connection(ConnectorId=emu.sftp_id)
    assert ok["Status"] == "OK" and ok["ConnectorId"] == emu.sftp_id
    assert ok["SftpConnectionDetails"]["HostKey"] == emu.client("transfer").describe_connector(
        ConnectorId=emu.sftp_id)["Connector"]["SftpConfig"]["TrustedHostKeys"][0]
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dead = tf.create_connector(Url=f"sftp://127.0.0.1:{closed_port}", AccessRole=ROLE, SftpConfig={"UserSecretId": "s"})["ConnectorId"]
    failed = tf.test_connection(ConnectorId=dead)
    assert failed["Status"] == "ERROR" and failed["StatusMessage"]
    mismatched = tf.create_connector(Url=f"sftp://127.0.0.1:{emu.info['sftp']['port']}", AccessRole=ROLE,
                                     SftpConfig={"UserSecretId": "s", "TrustedHostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKey"]})["ConnectorId"]
    assert tf.test_connection(ConnectorId=mismatched)["Status"] == "ERROR"
    with pytest.raises(ClientError) as e:
        tf.test_connection(ConnectorId=emu.as2_id)
    assert code_of(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        tf.test_connection(ConnectorId=UNKNOWN_CONNECTOR)
    assert code_of(e) == "ResourceNotFoundException"


def test_send_through_an_unreachable_connector_fails_the_file(emu):
    tf = emu.client("transfer")
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dead = tf.create_connector(Url=f"sftp://127.0.0.1:{closed_port}", AccessRole=ROLE, SftpConfig={"UserSecretId": "s"})["ConnectorId"]
    tid = tf.start_file_transfer(ConnectorId=dead, SendFilePaths=[stage(emu, b"x")])["TransferId"]
    [result] = wait_transfer(tf, dead, tid)
    assert result["StatusCode"] == "FAILED" and result["FailureCode"] == "CONNECTION_ERROR"


def test_unknown_operation(emu):
    import botocore.awsrequest
    import botocore.auth
    import botocore.credentials
    import urllib.request

    request = botocore.awsrequest.AWSRequest(method="POST", url=emu.info["endpoint"] + "/", data=b"{}",
                                             headers={"X-Amz-Target": "TransferService.DoSomethingElse",
                                                      "Content-Type": "application/x-amz-json-1.1"})
    creds = botocore.credentials.Credentials(emu.info["access_key_id"], emu.info["secret_access_key"])
    botocore.auth.SigV4Auth(creds, "transfer", emu.info["region"]).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400
    body = json.loads(e.value.read())
    assert body["__type"] == "UnknownOperationException" and "DoSomethingElse" in body["Message"]


def test_max_concurrent_connections_runs_files_in_parallel():
    slow = start_emulator("--transfer-delay-ms", "1500")
    try:
        tf = slow.client("transfer", validate=False)
        cid = tf.create_connector(Url=f"sftp://127.0.0.1:{slow.info['sftp']['port']}", AccessRole=ROLE,
                                  SftpConfig={"UserSecretId": "s", "MaxConcurrentConnections": 3})["ConnectorId"]
        paths = [stage(slow, b"p", f"par{i}.txt") for i in range(3)]
        tid = tf.start_file_transfer(ConnectorId=cid, SendFilePaths=paths)["TransferId"]
        wait_for(lambda: [r["StatusCode"] for r in tf.list_file_transfer_results(ConnectorId=cid, TransferId=tid)["FileTransferResults"]]
                 == ["IN_PROGRESS"] * 3, timeout=10, interval=0.02)
        assert [r["StatusCode"] for r in wait_transfer(tf, cid, tid)] == ["COMPLETED"] * 3
        with pytest.raises(ClientError) as e:
            tf.create_connector(Url="sftp://127.0.0.1:22", AccessRole=ROLE, SftpConfig={"UserSecretId": "s", "MaxConcurrentConnections": 6})
        assert code_of(e) == "ValidationException"
    finally:
        slow.stop()


def test_pending_transfer_quota():
    slow = start_emulator("--transfer-delay-ms", "1500", "--max-pending", "2")
    try:
        tf = slow.client("transfer")
        path = stage(slow, b"q")
        first = tf.start_file_transfer(ConnectorId=slow.sftp_id, SendFilePaths=[path])["TransferId"]
        tf.start_file_transfer(ConnectorId=slow.sftp_id, SendFilePaths=[path])
        with pytest.raises(ClientError) as e:
            tf.start_file_transfer(ConnectorId=slow.sftp_id, SendFilePaths=[path])
        assert code_of(e) == "ThrottlingException"
        wait_transfer(tf, slow.sftp_id, first)
        assert tf.start_file_transfer(ConnectorId=slow.sftp_id, SendFilePaths=[path])["TransferId"]
    finally:
        slow.stop()


def test_remote_ops_log_names_the_bytes_retrieved_listed_deleted_and_moved(emu):
    """`remote_ops.jsonl` is the inbound chaos test's ground truth: which bytes each retrieval fetched,
    each listing saw, and each remote delete or move removed from the partner."""
    import hashlib

    tf = emu.client("transfer")
    folder = partner_dir(emu, f"outbound/ops-{uuid.uuid4()}")
    os.mkdir(os.path.join(folder, "archive"))
    remote = "/" + os.path.relpath(folder, emu.partner_root)
    bodies = {"a b.csv": os.urandom(300), "c.csv": os.urandom(200)}
    for name, body in bodies.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(body)
    sha = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    tf.start_directory_listing(ConnectorId=emu.sftp_id, RemoteDirectoryPath=remote, OutputDirectoryPath=f"/ferry-inbound/listings-{uuid.uuid4()}")
    tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, RetrieveFilePaths=[f"{remote}/a b.csv"],
                                 LocalDirectoryPath=f"/ferry-inbound/ops-{uuid.uuid4()}")["TransferId"]
    assert wait_transfer(tf, emu.sftp_id, tid)[0]["StatusCode"] == "COMPLETED"
    tf.start_remote_delete(ConnectorId=emu.sftp_id, DeletePath=f"{remote}/a b.csv")
    tf.start_remote_move(ConnectorId=emu.sftp_id, SourcePath=f"{remote}/c.csv", TargetPath=f"{remote}/archive/c.csv")
    tf.start_remote_delete(ConnectorId=emu.sftp_id, DeletePath=f"{remote}/gone.csv")
    log = os.path.join(emu.info["state_dir"], "remote_ops.jsonl")

    def ops():
        with open(log, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    wait_for(lambda: sum(1 for o in ops() if o["op"] in ("delete", "move") and o["remote_path"].startswith(remote + "/")) == 3)
    mine = [o for o in ops() if o["remote_path"].startswith(remote + "/")]
    listed = {o["remote_path"]: o["sha256"] for o in mine if o["op"] == "listed"}
    assert listed == {f"{remote}/a b.csv": sha["a b.csv"], f"{remote}/c.csv": sha["c.csv"]}
    assert [(o["remote_path"], o["sha256"], o["size"]) for o in mine if o["op"] == "retrieve"] == [(f"{remote}/a b.csv", sha["a b.csv"], 300)]
    removed = [(o["op"], o["remote_path"], o["sha256"], o["ok"], o.get("target")) for o in mine if o["op"] in ("delete", "move")]
    assert removed == [("delete", f"{remote}/a b.csv", sha["a b.csv"], True, None),
                       ("move", f"{remote}/c.csv", sha["c.csv"], True, f"{remote}/archive/c.csv"),
                       ("delete", f"{remote}/gone.csv", None, False, None)]
