"""The SFTP partner itself: a real sshd whose '/' is partner_root, reached with the advertised key."""
from __future__ import annotations

import os
import uuid

import paramiko
import pytest

from conftest import start_emulator, wait_transfer


def _login(info: dict) -> paramiko.SFTPClient:
    transport = paramiko.Transport((info["sftp"]["host"], info["sftp"]["port"]))
    transport.connect(username=info["sftp"]["user"], pkey=paramiko.Ed25519Key.from_private_key_file(info["sftp"]["private_key"]))
    return paramiko.SFTPClient.from_transport(transport)


def test_partner_root_is_slash_over_sftp(emu):
    if not emu.info["partner_chroot"]:
        pytest.fail("sshd is not chrooted into partner_root; run the suite as root (CI does) so '/' over SFTP is partner_root")
    marker = f"marker-{uuid.uuid4()}"
    open(os.path.join(emu.partner_root, marker), "w").close()
    sftp = _login(emu.info)
    try:
        assert marker in sftp.listdir("/")
        assert sftp.normalize(".") == "/"
        with sftp.open(f"/{marker}.up", "wb") as f:
            f.write(b"via sftp")
    finally:
        sftp.close()
    with open(os.path.join(emu.partner_root, f"{marker}.up"), "rb") as f:
        assert f.read() == b"via sftp"


def test_partner_refuses_password_and_unknown_keys(emu):
    transport = paramiko.Transport((emu.info["sftp"]["host"], emu.info["sftp"]["port"]))
    try:
        with pytest.raises(paramiko.AuthenticationException):
            transport.connect(username=emu.info["sftp"]["user"], pkey=paramiko.RSAKey.generate(2048))
    finally:
        transport.close()


def test_without_chroot_the_connector_maps_paths_under_partner_root():
    emu = start_emulator(env={"FERRY_EMULATOR_NO_CHROOT": "1"})
    try:
        assert emu.info["partner_chroot"] is False
        s3, tf = emu.client("s3"), emu.client("transfer")
        os.makedirs(os.path.join(emu.partner_root, "inbound"))
        s3.put_object(Bucket="ferry-staging", Key="o/a.txt", Body=b"mapped")
        tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=["/ferry-staging/o/a.txt"], RemoteDirectoryPath="/inbound")["TransferId"]
        assert wait_transfer(tf, emu.sftp_id, tid)[0]["StatusCode"] == "COMPLETED"
        with open(os.path.join(emu.partner_root, "inbound", "a.txt"), "rb") as f:
            assert f.read() == b"mapped"
        tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, RetrieveFilePaths=["/inbound/a.txt"], LocalDirectoryPath="/ferry-inbound/back")["TransferId"]
        assert wait_transfer(tf, emu.sftp_id, tid)[0]["StatusCode"] == "COMPLETED"
        assert s3.get_object(Bucket="ferry-inbound", Key="back/a.txt")["Body"].read() == b"mapped"
        tid = tf.start_file_transfer(ConnectorId=emu.sftp_id, RetrieveFilePaths=["/../../etc/passwd"], LocalDirectoryPath="/ferry-inbound/x")["TransferId"]
        [result] = wait_transfer(tf, emu.sftp_id, tid)
        assert result["StatusCode"] == "FAILED" and result["FailureCode"] == "INVALID_PATH"
    finally:
        emu.stop()


def test_listing_digests_follow_every_rewrite_even_of_the_same_size_within_the_second(tmp_path):
    """The listing log's digests are remembered by the file's identity: a file listed again unchanged is
    not read again, and a rewrite of the same size within the same second still gets its new digest."""
    import hashlib
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from ferry_emulator.partner import PartnerOpLog

    ops = PartnerOpLog(str(tmp_path / "ops.jsonl"), str(tmp_path), True)
    path = tmp_path / "a.edi"
    path.write_bytes(b"first")
    listed = os.stat(path)
    assert ops.digest_if(str(path), listed.st_size, listed.st_mtime) == hashlib.sha256(b"first").hexdigest()
    assert len(ops.digests) == 1
    assert ops.digest_if(str(path), listed.st_size, listed.st_mtime) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"other")  # same size, most likely the same second
    again = os.stat(path)
    assert ops.digest_if(str(path), again.st_size, again.st_mtime) == hashlib.sha256(b"other").hexdigest()
    # What the listing saw no longer matches the file (another size): no digest, as before.
    assert ops.digest_if(str(path), 99, again.st_mtime) is None
    ops.close()
