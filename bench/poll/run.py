#!/usr/bin/env python3
"""bench/poll: the cost of polling a tree of 100,000 files in 1,000 folders, in one run:

- ferry's poll mode (ferry-poll-bench: FolderWatcher with watch_mode poll), which stats every known
  folder each pass, re-lists only folders whose inode/mtime/ctime changed, and stats at most 1,000
  already-reported files a pass for rewrites in place;
- `fswatch -m poll_monitor -r` (Debian's fswatch), which stats every file each pass;
- `find ROOT -newer STAMP`, the floor of any approach that looks at every file.

For each: CPU per steady-state pass with nothing changed, the same after 100 files changed (each
replaced by writing a temporary file and renaming it over the old name, as drop-folder writers do,
in 100 different folders), whether the changed files are found in one pass, and peak memory.

CPU: ferry measures its own passes (process CPU time from the pass's start until the changed folders
are listed again); fswatch's per-pass CPU is its /proc utime+stime over several passes divided by the
number of passes (its passes run back to back with the latency in between); find is one run (wait4).
Peak memory: VmHWM of ferry-poll-bench and fswatch, GNU time's %M for find.

Usage: bench/poll/run.py [--files N] [--folders N] [--interval-ms N] [--binary PATH]
(`make bench-poll` builds the release binary and runs this.)
"""
import argparse
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def read_line(proc, prefix, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line.decode().strip()
        if proc.poll() is not None:
            break
    raise SystemExit(f"timed out waiting for {prefix!r} from {proc.args[0]}: {proc.stderr.read().decode()[-2000:]}")


def fields(line):
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as handle:
        parts = handle.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def make_tree(root, files, folders):
    payload = b"x" * 100
    paths = []
    for folder_index in range(folders):
        os.makedirs(os.path.join(root, f"d{folder_index:04d}"))
    for index in range(files):
        path = os.path.join(root, f"d{index % folders:04d}", f"file{index:06d}.dat")
        with open(path, "wb") as handle:
            handle.write(payload)
        paths.append(path)
    return paths


def change(paths, round_number, folders, count=100):
    """Replaces `count` files in `count` different folders: temporary name, then rename over."""
    changed = []
    stride = max(1, folders // count)
    for number in range(count):
        # Files index % folders == folder: pick one file per folder, different in each round.
        index = (number * stride) + folders * (round_number + 1)
        path = paths[index]
        temporary = path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(b"changed %d\n" % round_number)
        os.rename(temporary, path)
        changed.append(path)
    return changed


def run_ferry(binary, root, paths, files, folders, interval_ms):
    idle_passes, after_passes = 4, 3
    proc = subprocess.Popen([binary, root, str(files), str(interval_ms), str(idle_passes + after_passes)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready = read_line(proc, b"ready", 900)
    idle = [fields(read_line(proc, b"pass", 120)) for _ in range(idle_passes)]
    changed = change(paths, 0, folders)
    after = [fields(read_line(proc, b"pass", 120)) for _ in range(after_passes)]
    done = fields(read_line(proc, b"done", 120))
    proc.wait()
    # The first pass after the change must have re-read the 100 changed folders and found all 100
    # files (settling, or already reported); the later passes let them finish settling.
    first = after[0]
    found_in_one = int(first["folders_read"]) == len(changed) and int(first["pending"]) + int(first["reported"]) == len(changed)
    return {
        "name": "ferry poll mode",
        "idle_cpu": statistics.median(int(p["cpu_us"]) for p in idle[1:]) / 1e6,
        "idle_wall": statistics.median(int(p["wall_us"]) for p in idle[1:]) / 1e6,
        "changed_cpu": int(first["cpu_us"]) / 1e6,
        "changed_wall": int(first["wall_us"]) / 1e6,
        "found": f"{int(first['pending']) + int(first['reported'])}/{len(changed)} in 1 pass, {done['reported']} reported",
        "found_in_one": found_in_one,
        "peak_kb": int(done["peak_kb"]),
        "note": f"{ready}; resident at the end {int(done['rss_kb']) / 1024:.1f} MB",
    }


def run_fswatch(root, paths, folders, interval_ms):
    latency = interval_ms / 1000
    out_path = root + ".fswatch.out"
    out = open(out_path, "wb")
    proc = subprocess.Popen(["fswatch", "-m", "poll_monitor", "-r", "-l", str(latency), root], stdout=out, stderr=subprocess.PIPE)
    try:
        # Its first pass builds its table of every file; wait until its CPU grows by one pass's worth at
        # a steady rate (two equal-looking windows), then measure over several passes.
        time.sleep(3 * latency)
        previous = cpu_seconds(proc.pid)
        while True:
            time.sleep(2 * latency)
            now = cpu_seconds(proc.pid)
            window = now - previous
            previous = now
            if window > 0:
                break
        passes = 5
        begin_cpu, begin = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(passes * latency)
        idle_cpu_total = cpu_seconds(proc.pid) - begin_cpu
        elapsed = time.monotonic() - begin
        # A pass takes some wall time itself, so fewer than elapsed/latency passes ran: count by CPU
        # per second of wall scaled to a pass interval, an upper bound on passes and so a lower bound
        # on the CPU of each (in fswatch's favour).
        passes_run = elapsed / latency
        idle_per_pass = idle_cpu_total / passes_run
        size_before = os.path.getsize(out_path)
        changed = change(paths, 1, folders)
        changed_at = time.monotonic()
        found = set()
        deadline = changed_at + 60
        one_pass_end = None
        while time.monotonic() < deadline:
            time.sleep(0.05)
            out.flush()
            with open(out_path, "rb") as handle:
                handle.seek(size_before)
                found = {line.strip().decode() for line in handle} & set(changed)
            if len(found) == len(changed):
                one_pass_end = time.monotonic()
                break
        found_in_one = one_pass_end is not None and one_pass_end - changed_at <= latency + max(0.5, idle_per_pass * 4)
        hwm = vm_hwm_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        out.close()
    return {
        "name": "fswatch -m poll_monitor",
        "idle_cpu": idle_per_pass,
        "idle_wall": None,
        "changed_cpu": None,
        "changed_wall": None,
        "found": f"{len(found)}/{len(changed)} within {0 if one_pass_end is None else one_pass_end - changed_at:.1f} s",
        "found_in_one": found_in_one,
        "peak_kb": hwm,
        "note": f"latency {latency} s; per-pass CPU = {idle_cpu_total:.2f} s over {elapsed:.1f} s / {passes_run:.1f} passes",
    }


def run_find(root, paths, folders):
    stamp = root + ".stamp"
    open(stamp, "wb").close()
    time.sleep(0.05)

    # find's peak memory comes from GNU time's %M: find is forked by the small `time` process, whereas
    # ru_maxrss of a child forked by this script would include this script's own high-water mark
    # (Linux keeps it across exec). Its CPU comes from wait4 (the `time` wrapper's own is negligible).
    def one():
        started = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "find", root, "-newer", stamp, "-type", "f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        output = proc.stdout.read().decode().split()
        peak = int(proc.stderr.read().decode().split()[-1])
        _, _, usage = os.wait4(proc.pid, 0)
        return usage.ru_utime + usage.ru_stime, time.monotonic() - started, output, peak

    one()  # warm the dentry and inode caches as the watchers' earlier passes did
    idle_cpu, idle_wall, idle_out, _ = one()
    changed = change(paths, 2, folders)
    changed_cpu, changed_wall, changed_out, rss = one()
    return {
        "name": "find -newer (floor)",
        "idle_cpu": idle_cpu, "idle_wall": idle_wall, "changed_cpu": changed_cpu, "changed_wall": changed_wall,
        "found": f"{len(set(changed_out) & set(changed))}/{len(changed)} in 1 run",
        "found_in_one": set(changed) <= set(changed_out),
        "peak_kb": rss,
        "note": f"idle run listed {len(idle_out)} files",
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--folders", type=int, default=1_000)
    parser.add_argument("--interval-ms", type=int, default=2000)
    parser.add_argument("--binary", default=".build/release/ferry-poll-bench")
    args = parser.parse_args()
    if not os.access("/usr/bin/time", os.X_OK):
        raise SystemExit("/usr/bin/time not found: install it with `apt-get install -y time` (or `make deps`)")
    if shutil.which("fswatch") is None:
        raise SystemExit("fswatch not found: install it with `apt-get install -y fswatch` (or `make deps`)")
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"{args.binary} missing: run `make bench-poll`")

    work = tempfile.mkdtemp(prefix="ferry-bench-poll.")
    root = os.path.join(work, "tree")
    try:
        started = time.monotonic()
        paths = make_tree(root, args.files, args.folders)
        built = time.monotonic() - started
        rows = [run_ferry(args.binary, root, paths, args.files, args.folders, args.interval_ms),
                run_fswatch(root, paths, args.folders, args.interval_ms),
                run_find(root, paths, args.folders)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ms(value):
        return "-" if value is None else f"{value * 1000:.1f}"

    print(f"bench/poll: {args.files:,} files x 100 B in {args.folders:,} folders (built in {built:.1f} s); "
          f"poll interval {args.interval_ms} ms; 100 files changed by temp-then-rename in 100 folders")
    print(f"{'tool':<26}{'idle CPU ms':>12}{'idle wall ms':>13}{'chg CPU ms':>11}{'chg wall ms':>12}{'peak MB':>9}  changed files found")
    for row in rows:
        print(f"{row['name']:<26}{ms(row['idle_cpu']):>12}{ms(row['idle_wall']):>13}{ms(row['changed_cpu']):>11}"
              f"{ms(row['changed_wall']):>12}{row['peak_kb'] / 1024:>9.1f}  {row['found']}")
    for row in rows:
        print(f"  {row['name']}: {row['note']}")
    ferry, fswatch = rows[0], rows[1]
    ratio = ferry["idle_cpu"] / fswatch["idle_cpu"] if fswatch["idle_cpu"] else float("inf")
    print(f"no-change pass CPU ferry/fswatch: {ratio:.3f}   peak memory ferry/fswatch: {ferry['peak_kb'] / max(1, fswatch['peak_kb']):.2f}")
    targets = {
        "no-change pass CPU <= 1/10 of fswatch's": ratio <= 0.1,
        "peak memory <= fswatch's": ferry["peak_kb"] <= fswatch["peak_kb"],
        "changed files found in one pass": ferry["found_in_one"],
    }
    for name, met in targets.items():
        print(f"target: {name}: {'met' if met else 'NOT met'}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
