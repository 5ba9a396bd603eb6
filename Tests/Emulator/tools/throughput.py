#!/usr/bin/env python3
"""Measures the emulator with boto3: S3 PUTs per second; N files sent over SFTP in batches of 10; then the
two at once, as ferry drives it (N new PUTs by 8 threads while N files are sent over a connector with
--connections connections): PUTs/s and files/s each keeps while the other runs.

    python3 Tests/Emulator/tools/throughput.py [N] [--connections 5]      (default 1000, 5)
"""
import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from conftest import start_emulator, wait_transfer  # noqa: E402


def put_all(s3, keys):
    """Seconds to PUT `keys` (4 KiB each) with 8 boto3 threads."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket="ferry-staging", Key=k, Body=b"x" * 4096), keys))
    return time.monotonic() - t0


def send_all(tf, connector_id, keys, remote="/"):
    """(seconds to submit, seconds until every file COMPLETED) for `keys` sent in transfers of 10."""
    t0 = time.monotonic()
    ids = [tf.start_file_transfer(ConnectorId=connector_id, SendFilePaths=[f"/ferry-staging/{k}" for k in keys[i:i + 10]],
                                  RemoteDirectoryPath=remote)["TransferId"]
           for i in range(0, len(keys), 10)]
    submitted = time.monotonic() - t0
    for tid in ids:
        results = wait_transfer(tf, connector_id, tid, timeout=600)
        assert all(r["StatusCode"] == "COMPLETED" for r in results), results
    return submitted, time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("files", type=int, nargs="?", default=1000)
    p.add_argument("--connections", type=int, default=5, choices=range(1, 6))
    args = p.parse_args()
    n, connections = args.files, args.connections
    t0 = time.monotonic()
    emu = start_emulator()
    print(f"start: {time.monotonic() - t0:.2f} s (self-reported {emu.info['start_seconds']} s)")
    try:
        s3, tf = emu.client("s3"), emu.client("transfer")
        keys = [f"bench/{i:06d}.dat" for i in range(n)]
        put = put_all(s3, keys)
        print(f"S3 PutObject: {n} in {put:.2f} s = {n / put:.0f}/s (8 boto3 threads, 4 KiB each)")
        submitted, total = send_all(tf, emu.sftp_id, keys)
        print(f"StartFileTransfer: {n // 10} calls in {submitted:.2f} s; {n} files COMPLETED over SFTP after {total:.2f} s "
              f"= {n / total:.0f} files/s (1 connection)")
        assert len(os.listdir(emu.partner_root)) == n

        # Both at once: the old keys sent again (into /both) over a connector with `connections` connections
        # while new keys arrive.
        config = dict(tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]["SftpConfig"], MaxConcurrentConnections=connections)
        described = tf.describe_connector(ConnectorId=emu.sftp_id)["Connector"]
        wide = tf.create_connector(Url=described["Url"], AccessRole=described["AccessRole"], SftpConfig=config)["ConnectorId"]
        os.makedirs(os.path.join(emu.partner_root, "both"))
        sent = {}
        sender = threading.Thread(target=lambda: sent.update(zip(("submitted", "total"), send_all(tf, wide, keys, "/both"))))
        t0 = time.monotonic()
        sender.start()
        put = put_all(s3, [f"more/{i:06d}.dat" for i in range(n)])
        sender.join()
        print(f"both at once ({connections} connections): S3 PutObject {n / put:.0f}/s while sending; "
              f"{n} files COMPLETED over SFTP after {sent['total']:.2f} s = {n / sent['total']:.0f} files/s while PUTs arrived; "
              f"all done in {time.monotonic() - t0:.2f} s")
        assert len(os.listdir(os.path.join(emu.partner_root, "both"))) == n
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
