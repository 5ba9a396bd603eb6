#!/usr/bin/env python3
"""Measures the emulator with boto3: S3 PUTs per second, then N files sent over SFTP in batches of 10.

    python3 Tests/Emulator/tools/throughput.py [N]      (default 1000)
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from conftest import start_emulator, wait_transfer  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    t0 = time.monotonic()
    emu = start_emulator()
    print(f"start: {time.monotonic() - t0:.2f} s (self-reported {emu.info['start_seconds']} s)")
    try:
        s3, tf = emu.client("s3"), emu.client("transfer")
        keys = [f"bench/{i:06d}.dat" for i in range(n)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket="ferry-staging", Key=k, Body=b"x" * 4096), keys))
        put = time.monotonic() - t0
        print(f"S3 PutObject: {n} in {put:.2f} s = {n / put:.0f}/s (8 boto3 threads, 4 KiB each)")
        t0 = time.monotonic()
        ids = [tf.start_file_transfer(ConnectorId=emu.sftp_id, SendFilePaths=[f"/ferry-staging/{k}" for k in keys[i:i + 10]])["TransferId"]
               for i in range(0, n, 10)]
        submitted = time.monotonic() - t0
        for tid in ids:
            results = wait_transfer(tf, emu.sftp_id, tid, timeout=600)
            assert all(r["StatusCode"] == "COMPLETED" for r in results), results
        total = time.monotonic() - t0
        print(f"StartFileTransfer: {len(ids)} calls in {submitted:.2f} s; {n} files COMPLETED over SFTP after {total:.2f} s = {n / total:.0f} files/s")
        assert len(os.listdir(emu.partner_root)) == n
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
