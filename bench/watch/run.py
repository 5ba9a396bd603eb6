#!/usr/bin/env python3
"""bench/watch: 100,000 files written across 1,000 folders, watched at the same time by ferry's
FolderWatcher (ferry-watch-bench) and by `inotifywait -m -r` (inotify-tools).

Prints files seen, CPU seconds (user+sys from wait4), CPU per file and peak memory (ru_maxrss) for
both, and the ratios. inotifywait only prints events; ferry also settles each file (two lstats and a
deadline) and reports it exactly once.

Usage: bench/watch/run.py [--files N] [--folders N] [--settle-ms N] [--binary PATH]
(`make bench-watch` builds the release binary and runs this.)
"""
import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def wait_for_line(proc, prefix, timeout, stream):
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.split(b"\n"):
                if line.startswith(prefix):
                    return line.decode()
        if proc.poll() is not None:
            break
    raise SystemExit(f"timed out waiting for {prefix!r}; got {buffer[-500:]!r}")


def count_close_writes(path):
    with open(path, "rb") as handle:
        return sum(1 for line in handle if b"CLOSE_WRITE" in line)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=1_000)
    parser.add_argument("--settle-ms", type=int, default=1000)
    parser.add_argument("--binary", default=".build/release/ferry-watch-bench")
    args = parser.parse_args()
    if shutil.which("inotifywait") is None:
        raise SystemExit("inotifywait not found: install inotify-tools (apt-get install inotify-tools)")
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"{args.binary} missing: run `make bench-watch`")

    work = tempfile.mkdtemp(prefix="ferry-bench-watch.")
    root = os.path.join(work, "tree")
    try:
        folders = [os.path.join(root, f"d{i:04d}") for i in range(args.folders)]
        for folder in folders:
            os.makedirs(folder)

        events_path = os.path.join(work, "inotifywait.out")
        events = open(events_path, "wb")
        peer = subprocess.Popen(["inotifywait", "-m", "-r", "-q", root], stdout=events, stderr=subprocess.PIPE)
        ferry = subprocess.Popen([args.binary, root, str(args.files), str(args.settle_ms), "3000"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_line(ferry, b"ready", 60, ferry.stdout)
        # inotifywait -q prints nothing when ready; give its recursive setup the same head start.
        time.sleep(2.0)

        started = time.monotonic()
        payload = b"x" * 100
        for index in range(args.files):
            path = os.path.join(folders[index % args.folders], f"file{index:06d}.dat")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, payload)
            os.close(fd)
        written = time.monotonic() - started

        _, ferry_status, ferry_usage = os.wait4(ferry.pid, 0)
        ferry_out = ferry.stdout.read().decode()
        ferry_err = ferry.stderr.read().decode()
        deadline = time.monotonic() + 120
        while count_close_writes(events_path) < args.files and time.monotonic() < deadline:
            time.sleep(0.2)
        peer.send_signal(signal.SIGTERM)
        _, _, peer_usage = os.wait4(peer.pid, 0)
        events.close()
        peer_seen = count_close_writes(events_path)

        report = dict(item.split("=") for item in ferry_out.split() if "=" in item)
        if ferry_status != 0:
            raise SystemExit(f"ferry-watch-bench failed ({ferry_status}): {ferry_err}")
        ferry_cpu = ferry_usage.ru_utime + ferry_usage.ru_stime
        peer_cpu = peer_usage.ru_utime + peer_usage.ru_stime
        rows = [
            ("ferry FolderWatcher", int(report["reported"]), int(report["unique"]), ferry_cpu, ferry_usage.ru_maxrss),
            ("inotifywait -m -r", peer_seen, peer_seen, peer_cpu, peer_usage.ru_maxrss),
        ]
        print(f"bench/watch: {args.files:,} files x 100 B across {args.folders:,} folders, written in {written:.1f} s; "
              f"ferry settle {args.settle_ms} ms")
        print(f"{'tool':<22}{'files seen':>12}{'unique':>10}{'CPU s':>9}{'CPU us/file':>13}{'peak MB':>9}")
        for name, seen, unique, cpu, rss in rows:
            print(f"{name:<22}{seen:>12,}{unique:>10,}{cpu:>9.2f}{cpu / args.files * 1e6:>13.1f}{rss / 1024:>9.1f}")
        print(f"CPU ratio ferry/inotifywait: {ferry_cpu / peer_cpu:.2f}x   "
              f"(ferry: {report['overflows']} overflows, {report['scans']} scans)")
        ok = (int(report["reported"]) == args.files and int(report["unique"]) == args.files
              and ferry_cpu <= 2 * peer_cpu and ferry_usage.ru_maxrss < 64 * 1024)
        print("targets: every file exactly once, CPU within 2x of inotifywait, peak < 64 MB:",
              "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
