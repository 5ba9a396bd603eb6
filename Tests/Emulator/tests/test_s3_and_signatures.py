"""S3 through the emulator, and proof that signatures are checked as AWS checks them."""
from __future__ import annotations

import datetime
import urllib.error
import urllib.request
import uuid

import botocore.auth
import pytest
from botocore.exceptions import ClientError

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
NON_ASCII = ["ü", "données-é", "日本語", "emoji-🚀", "Ωμέγα", "naïve café"]


def code_of(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo) -> int:
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_put_get_list_delete(emu):
    s3 = emu.client("s3")
    prefix = f"basic-{uuid.uuid4()}/"
    s3.put_object(Bucket="ferry-staging", Key=prefix + "a.txt", Body=b"alpha")
    s3.put_object(Bucket="ferry-staging", Key=prefix + "b.txt", Body=b"beta")
    assert s3.get_object(Bucket="ferry-staging", Key=prefix + "a.txt")["Body"].read() == b"alpha"
    assert s3.head_object(Bucket="ferry-staging", Key=prefix + "b.txt")["ContentLength"] == 4
    listed = s3.list_objects_v2(Bucket="ferry-staging", Prefix=prefix, MaxKeys=1)
    assert listed["KeyCount"] == 1 and listed["IsTruncated"]
    rest = s3.list_objects_v2(Bucket="ferry-staging", Prefix=prefix, ContinuationToken=listed["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == [prefix + "b.txt"]
    s3.delete_object(Bucket="ferry-staging", Key=prefix + "a.txt")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="ferry-staging", Key=prefix + "a.txt")
    assert code_of(e) == "NoSuchKey"


def test_multipart_upload(emu):
    s3 = emu.client("s3")
    key = f"multipart-{uuid.uuid4()}.bin"
    part1, part2 = b"x" * (5 * 1024 * 1024), b"tail"
    up = s3.create_multipart_upload(Bucket="ferry-staging", Key=key)
    etags = [s3.upload_part(Bucket="ferry-staging", Key=key, UploadId=up["UploadId"], PartNumber=i + 1, Body=body)["ETag"]
             for i, body in enumerate((part1, part2))]
    s3.complete_multipart_upload(Bucket="ferry-staging", Key=key, UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": t, "PartNumber": i + 1} for i, t in enumerate(etags)]})
    assert s3.get_object(Bucket="ferry-staging", Key=key)["Body"].read() == part1 + part2
    ops = [r["operation"] for r in emu.log() if r["key"] == key]
    assert ops == ["CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload", "GetObject"]


def test_conditional_put_refuses_to_overwrite(emu):
    s3 = emu.client("s3")
    key = f"conditional-{uuid.uuid4()}"
    s3.put_object(Bucket="ferry-staging", Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key=key, Body=b"second", IfNoneMatch="*")
    assert code_of(e) == "PreconditionFailed" and status_of(e) == 412
    assert s3.get_object(Bucket="ferry-staging", Key=key)["Body"].read() == b"first"


@pytest.mark.parametrize("char", list(PRINTABLE), ids=[f"0x{ord(c):02x}" for c in PRINTABLE])
def test_every_printable_ascii_character_in_a_key(emu, char):
    s3 = emu.client("s3")
    key = f"ascii/{ord(char):02x}/a{char}b"
    s3.put_object(Bucket="ferry-staging", Key=key, Body=char.encode())
    assert s3.get_object(Bucket="ferry-staging", Key=key)["Body"].read() == char.encode()
    listed = s3.list_objects_v2(Bucket="ferry-staging", Prefix=f"ascii/{ord(char):02x}/")
    assert [o["Key"] for o in listed["Contents"]] == [key]


@pytest.mark.parametrize("name", [PRINTABLE.replace("/", "") + "-all"] + NON_ASCII)
def test_keys_with_all_printable_and_non_ascii_characters(emu, name):
    s3 = emu.client("s3")
    key = f"unicode/{name}/{name}.txt"
    body = name.encode("utf-8")
    s3.put_object(Bucket="ferry-staging", Key=key, Body=body, Metadata={"origin": "test"})
    assert s3.head_object(Bucket="ferry-staging", Key=key)["ContentLength"] == len(body)
    assert s3.get_object(Bucket="ferry-staging", Key=key)["Body"].read() == body
    s3.copy_object(Bucket="ferry-inbound", Key=key, CopySource={"Bucket": "ferry-staging", "Key": key})
    assert s3.get_object(Bucket="ferry-inbound", Key=key)["Body"].read() == body
    s3.delete_object(Bucket="ferry-staging", Key=key)
    logged = [r for r in emu.log() if r["key"] == key]
    assert {"PutObject", "HeadObject", "GetObject", "CopyObject", "DeleteObject"} <= {r["operation"] for r in logged}
    assert all(r["status"] < 300 for r in logged)


def test_wrong_secret_is_rejected(emu):
    s3 = emu.client("s3", aws_secret_access_key="W" * 40)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key="never", Body=b"x")
    assert code_of(e) == "SignatureDoesNotMatch" and status_of(e) == 403
    assert "CanonicalRequest" in e.value.response["Error"]
    tf = emu.client("transfer", aws_secret_access_key="W" * 40)
    with pytest.raises(ClientError) as e:
        tf.describe_connector(ConnectorId=emu.sftp_id)
    assert code_of(e) == "InvalidSignatureException" and status_of(e) == 400


def test_unknown_access_key_is_rejected(emu):
    with pytest.raises(ClientError) as e:
        emu.client("s3", aws_access_key_id="AKIANOTTHEEMULATOR00").list_objects_v2(Bucket="ferry-staging")
    assert code_of(e) == "InvalidAccessKeyId" and status_of(e) == 403
    with pytest.raises(ClientError) as e:
        emu.client("transfer", aws_access_key_id="AKIANOTTHEEMULATOR00").describe_connector(ConnectorId=emu.sftp_id)
    assert code_of(e) == "UnrecognizedClientException"


@pytest.mark.parametrize("minutes", [-20, 20])
def test_stale_or_future_date_is_rejected(emu, monkeypatch, minutes):
    skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: skewed)
    with pytest.raises(ClientError) as e:
        emu.client("s3").list_objects_v2(Bucket="ferry-staging")
    assert code_of(e) == "RequestTimeTooSkewed" and status_of(e) == 403
    with pytest.raises(ClientError) as e:
        emu.client("transfer").describe_connector(ConnectorId=emu.sftp_id)
    assert code_of(e) == "InvalidSignatureException"
    assert "Signature expired" in e.value.response["Error"]["Message"]


def test_date_within_fifteen_minutes_is_accepted(emu, monkeypatch):
    skewed = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: skewed)
    assert emu.client("s3").list_objects_v2(Bucket="ferry-staging", MaxKeys=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


def _tamper(request, **_):
    # Runs after signing: the bytes on the wire no longer match what was signed.
    body = request.body if isinstance(request.body, bytes) else request.body.read()
    request.body = body.replace(b"original", b"tampered")


def test_tampered_payload_is_rejected(emu):
    s3 = emu.client("s3")
    s3.meta.events.register("before-send.s3.PutObject", _tamper)
    key = f"tampered-{uuid.uuid4()}"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key=key, Body=b"original content")
    assert code_of(e) == "XAmzContentSHA256Mismatch" and status_of(e) == 400
    with pytest.raises(ClientError):
        emu.client("s3").head_object(Bucket="ferry-staging", Key=key)

    tf = emu.client("transfer")
    tf.meta.events.register("before-send.transfer.StartFileTransfer", _tamper)
    with pytest.raises(ClientError) as e:
        tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=["/ferry-staging/original"])
    assert code_of(e) == "InvalidSignatureException"


def test_s3_request_without_payload_hash_header_is_rejected(emu):
    s3 = emu.client("s3")

    def drop_hash(request, **_):
        # After signing: S3 needs the header itself, not only a signature over it.
        del request.headers["x-amz-content-sha256"]

    s3.meta.events.register("before-send.s3.ListObjectsV2", drop_hash)
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="ferry-staging")
    assert code_of(e) == "InvalidRequest" and status_of(e) == 400
    assert "x-amz-content-sha256" in e.value.response["Error"]["Message"]


def test_unsigned_request_is_rejected(emu):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(emu.info["endpoint"] + "/ferry-staging?list-type=2", timeout=10)
    assert e.value.code == 403 and b"<Code>AccessDenied</Code>" in e.value.read()


def test_presigned_urls(emu):
    s3 = emu.client("s3")
    key = f"presigned/{uuid.uuid4()} (1)+ü.txt"
    s3.put_object(Bucket="ferry-staging", Key=key, Body=b"shared")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "ferry-staging", "Key": key}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"shared"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=10)
    assert e.value.code == 403 and b"SignatureDoesNotMatch" in e.value.read()


def test_expired_presigned_url_is_rejected(emu, monkeypatch):
    past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=5)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: past)
    url = emu.client("s3").generate_presigned_url("get_object", Params={"Bucket": "ferry-staging", "Key": "x"}, ExpiresIn=60)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 403 and b"Request has expired" in e.value.read()


def test_wrong_region_in_scope_is_rejected(emu):
    with pytest.raises(ClientError) as e:
        emu.client("s3", region_name="eu-west-1").list_objects_v2(Bucket="ferry-staging")
    assert code_of(e) == "AuthorizationHeaderMalformed"


def test_aws_cli_is_accepted(emu, tmp_path):
    import os
    import subprocess

    src = tmp_path / "cli file (1).txt"
    src.write_bytes(b"from the cli")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": emu.info["access_key_id"], "AWS_SECRET_ACCESS_KEY": emu.info["secret_access_key"],
           "AWS_DEFAULT_REGION": emu.info["region"], "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    key = f"cli/{uuid.uuid4()}/cli file (1).txt"
    subprocess.run(["aws", "--endpoint-url", emu.info["endpoint"], "s3", "cp", str(src), f"s3://ferry-staging/{key}"],
                   check=True, env=env, capture_output=True)
    assert emu.client("s3").get_object(Bucket="ferry-staging", Key=key)["Body"].read() == b"from the cli"


def test_a_second_signer_curl_is_accepted(emu, tmp_path):
    """curl's own SigV4 (not botocore's) is accepted when it signs per the spec."""
    import hashlib
    import subprocess

    body = tmp_path / "payload"
    body.write_bytes(b"signed by curl")
    auth = ["--aws-sigv4", f"aws:amz:{emu.info['region']}:s3", "--user", f"{emu.info['access_key_id']}:{emu.info['secret_access_key']}"]
    key_path = "curl/a%20b%28c%29%2Bd%C3%BC.txt"
    put = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *auth,
                          "-H", f"x-amz-content-sha256: {hashlib.sha256(body.read_bytes()).hexdigest()}",
                          "-T", str(body), f"{emu.info['endpoint']}/ferry-staging/{key_path}"], capture_output=True, text=True)
    assert put.stdout == "200", put.stderr
    assert emu.client("s3").get_object(Bucket="ferry-staging", Key="curl/a b(c)+dü.txt")["Body"].read() == b"signed by curl"
    listed = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *auth, "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                             f"{emu.info['endpoint']}/ferry-staging?list-type=2&prefix=curl%2F"], capture_output=True, text=True)
    assert listed.stdout.endswith("\n200") and "curl/a b(c)+dü.txt" in listed.stdout


def test_integrity_headers_are_checked_against_the_body(emu):
    """As S3 does: a Content-MD5 or x-amz-checksum-* that does not match the body is refused, so
    every upload ferry makes against the emulator has its checksum verified."""
    import base64
    import hashlib

    import crc32c

    s3 = emu.client("s3")
    key = f"integrity-{uuid.uuid4()}"
    body = b"invoice 42\n"
    good_crc = base64.b64encode(crc32c.crc32c(body).to_bytes(4, "big")).decode()
    good_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket="ferry-staging", Key=key, Body=body, ChecksumCRC32C=good_crc)
    s3.put_object(Bucket="ferry-staging", Key=key, Body=body, ContentMD5=good_md5)
    other_crc = base64.b64encode(crc32c.crc32c(b"invoice 43\n").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key=key + "-bad-crc", Body=body, ChecksumCRC32C=other_crc)
    assert code_of(e) == "BadDigest" and status_of(e) == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key=key + "-bad-md5", Body=body,
                      ContentMD5=base64.b64encode(hashlib.md5(b"other").digest()).decode())
    assert code_of(e) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ferry-staging", Key=key + "-malformed", Body=body, ChecksumCRC32C="not-base64!")
    assert code_of(e) == "InvalidRequest"
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket="ferry-staging", Prefix=key).get("Contents", [])}
    assert stored == {key}, "a refused upload must not be stored"
