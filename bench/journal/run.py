#!/usr/bin/env python3
"""bench/journal: a synthetic journal of 1,000,000 finished outbound rows (a year of history, 10 files
per batch, four rules) — timed `ferry status`, `ferry history --since 1d`, and one pruning pass of the
real daemon (`ferry run` prunes at start), with the longest time one pruning step held the journal lock.

The peer is the `sqlite3` CLI on the same file in the same run: the queries ferry ran before #16 (a
GROUP BY over the whole table for status), the ones it runs now, and pruning as one plain DELETE —
whose duration is how long a one-statement prune would hold the journal's write lock.

The pipeline's journal writes under load: `ferry-journal-bench` (bench/journal/Sources) makes the
pipeline's writes through FerryStore's `Journal`, as OutboundPipeline makes them, at 200 files/s on the
million-row journal, and reports its longest single write. It runs alone; while `ferry status --json`
runs back to back in another process; while the daemon's own status queries (status line, metrics)
run in a loop on its `Journal` (they share its lock); and while a pruning pass runs on its `Journal`
(on a copy of the journal, so the daemon's own pass below still finds the same rows).

The journal's schema is made by ferry itself (the daemon is started once on an empty state_dir and
stopped), then filled with Python's sqlite3 module, so the rows go through the same triggers and indexes.

Usage: bench/journal/run.py [--rows N] [--retention-days N] [--binary PATH] [--writer PATH] [--writer-seconds S] [--keep DIR]
(`make bench-journal` builds both binaries as released and runs this)
"""
import argparse
import json
import os
import random
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

DAY = 86_400.0


def wait_for_message(proc, message, timeout):
    """Reads the daemon's JSON log lines until one has `message`; returns it parsed."""
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = proc.stderr.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("message") == message:
                    return event
        if proc.poll() is not None:
            break
    raise SystemExit(f"timed out waiting for {message!r}; last output {buffer[-800:]!r}")


def start_daemon(binary, config):
    return subprocess.Popen([binary, "run", "--config", config, "--log-format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def write_rules(root, retention_days):
    os.makedirs(f"{root}/out", exist_ok=True)
    config = f"{root}/rules.yaml"
    with open(config, "w") as f:
        f.write(f"""version: 1
state_dir: {root}/state
retention: {retention_days * 24}h
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:9
connectors:
  acme:
    type: sftp
    connector_id: c-0123456789abcdef0
    staging: s3://acme-staging/outbound/
outbound:
  - name: invoices
    watch: {root}/out
    connector: acme
""")
    return config


def populate(db_path, rows, now):
    """`rows` finished files spread evenly over the past year, newest last; a few live ones."""
    rules = ["invoices", "orders", "remittances", "reports"]
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    start = now - 365 * DAY
    step = 365 * DAY / rows
    batch_rows, file_rows = [], []
    rnd = random.Random(16)
    for index in range(rows):
        t = start + index * step
        rule = rules[index % 4]
        if index % 10 == 0:
            batch_id = index // 10 + 1
            batch_rows.append((batch_id, rule, "acme", "c-0123456789abcdef0", "/inbound", "finished",
                               f"t-{batch_id:016x}", t + 1, t + 30))
        roll = rnd.random()
        state = "done" if roll < 0.97 else ("dropped" if roll < 0.99 else "retried")
        name = f"/srv/ferry/outbox/{rule}/2026/file-{index:07d}.edi"
        file_rows.append((rule, name, name.split(f"/{rule}/", 1)[1], 2049, 1_000_000 + index, 4096 + index % 5000,
                          int(t * 1e9), state, "/inbound", "acme-staging", f"outbound/{index:07d}.edi", "AAAAAA==",
                          index // 10 + 1, f"t-{index // 10 + 1:016x}", 0, t, t + 30, t + 1, t + 20,
                          "archived", f"/srv/ferry/outbox/{rule}/.ferry/sent/{index:07d}.edi"))
        if len(file_rows) == 50_000:
            flush(db, batch_rows, file_rows)
    flush(db, batch_rows, file_rows)
    for index in range(200):  # a live queue: waiting and in flight
        name = f"/srv/ferry/outbox/invoices/live-{index}.edi"
        db.execute("""INSERT INTO outbound_files (rule, path, relative_path, device, inode, size, mtime_ns, state, created_at, updated_at)
                      VALUES ('invoices', ?, ?, 2049, ?, 10, 1, ?, ?, ?)""",
                   (name, name.rsplit("/", 1)[1], 9_000_000 + index, "detected" if index % 2 else "submitted", now - 60, now - 60))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def flush(db, batch_rows, file_rows):
    db.executemany("""INSERT INTO outbound_batches (id, rule, connector, connector_id, remote_dir, state, transfer_id, created_at, updated_at)
                      VALUES (?,?,?,?,?,?,?,?,?)""", batch_rows)
    db.executemany("""INSERT INTO outbound_files (rule, path, relative_path, device, inode, size, mtime_ns, state, remote_dir, bucket,
                      s3_key, checksum, batch_id, transfer_id, attempts, created_at, updated_at, submitted_at, completed_at,
                      after_send, archive_path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""", file_rows)
    batch_rows.clear()
    file_rows.clear()


def timed_runs(command, runs=5):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if result.returncode not in (0, 1, 2):
            raise SystemExit(f"{command} failed ({result.returncode}): {result.stderr.decode()[-500:]}")
    return statistics.median(times), result.stdout


def sqlite_time(db_path, sql, runs=5):
    """Median wall time of the sqlite3 CLI running `sql` (its own `.timer` figure, process start excluded)."""
    times = []
    for _ in range(runs):
        result = subprocess.run(["sqlite3", db_path], input=f".timer on\n{sql}\n".encode(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        if result.returncode != 0:
            raise SystemExit(f"sqlite3 failed: {result.stderr.decode()}")
        real = [float(line.split()[3]) for line in result.stdout.decode().splitlines() if line.startswith("Run Time:")]
        times.append(sum(real))
    return statistics.median(times)


def run_writer(writer, state_dir, seconds, extra=()):
    """Runs the pipeline-like writer on `state_dir`; returns its JSON report."""
    result = subprocess.run([writer, "--state-dir", state_dir, "--seconds", str(seconds), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise SystemExit(f"ferry-journal-bench failed ({result.returncode}): {result.stderr.decode()[-800:]}")
    return json.loads(result.stdout)


def writer_with_status_loop(writer, binary, config, state_dir, seconds):
    """The writer while `ferry status --json` runs back to back; returns (writer report, status calls, longest status)."""
    proc = subprocess.Popen([writer, "--state-dir", state_dir, "--seconds", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    calls, longest = 0, 0.0
    while proc.poll() is None:
        started = time.perf_counter()
        subprocess.run([binary, "status", "--json", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        longest = max(longest, time.perf_counter() - started)
        calls += 1
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"ferry-journal-bench failed ({proc.returncode}): {err.decode()[-800:]}")
    return json.loads(out), calls, longest


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--retention-days", type=int, default=300, help="the pruning pass removes what is older")
    parser.add_argument("--binary", default=".build/debug/ferry")
    parser.add_argument("--writer", default=".build/debug/ferry-journal-bench")
    parser.add_argument("--writer-seconds", type=int, default=15)
    parser.add_argument("--keep", help="build the journal in this folder and leave it there")
    args = parser.parse_args()
    if shutil.which("sqlite3") is None:
        raise SystemExit("the peer needs the sqlite3 CLI: `apt-get install sqlite3`")
    root = args.keep or tempfile.mkdtemp(prefix="ferry-bench-journal-")
    os.makedirs(root, exist_ok=True)
    config = write_rules(root, args.retention_days)
    db_path = f"{root}/state/journal.db"

    # 1. ferry creates the schema (migrations, auto_vacuum) — its pruner finds nothing to do yet.
    daemon = start_daemon(args.binary, config)
    wait_for_message(daemon, "ferry started", 30)
    stop(daemon)

    now = time.time()
    started = time.perf_counter()
    populate(db_path, args.rows, now)
    print(f"journal: {args.rows:,} finished rows over 365 days, {os.path.getsize(db_path) / 1e6:.0f} MB, "
          f"built in {time.perf_counter() - started:.0f} s", flush=True)

    baseline, _ = timed_runs([args.binary, "version"])
    status, _ = timed_runs([args.binary, "status", "--json", "--config", config])
    history, out = timed_runs([args.binary, "history", "--since", "1d", "--json", "--config", config])
    day_rows = len(json.loads(out)["outbound"])
    by_name, _ = timed_runs([args.binary, "history", "file-0999999.edi", "--json", "--config", config])

    cutoff = now - 1 * DAY
    peer_status_old = sqlite_time(db_path, "SELECT rule, state, count(*) FROM outbound_files GROUP BY rule, state;")
    peer_status_new = sqlite_time(db_path, f"""SELECT rule, state, n FROM state_counts WHERE n > 0;
        SELECT rule, count(*) FROM outbound_files WHERE state IN ('done', 'dropped', 'retried') AND state = 'done'
        AND updated_at >= {cutoff} GROUP BY rule;""")
    peer_history = sqlite_time(db_path, f"""SELECT * FROM outbound_files WHERE state IN ('done', 'dropped', 'retried')
        AND updated_at >= {cutoff};""")
    peer_scan_history = sqlite_time(db_path, f"SELECT * FROM outbound_files WHERE updated_at >= {cutoff};")

    # The peer's prune: one DELETE on a copy, i.e. one transaction holding the write lock throughout.
    copy = f"{root}/peer-copy.db"
    shutil.copyfile(db_path, copy)
    prune_cutoff = now - args.retention_days * DAY
    peer_prune = sqlite_time(copy, f"""DELETE FROM outbound_files WHERE state IN ('done', 'dropped', 'retried')
        AND updated_at < {prune_cutoff};""", runs=1)
    os.remove(copy)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(copy + suffix):
            os.remove(copy + suffix)

    # The pipeline's writes: alone, beside a `ferry status` loop, beside the daemon's own status
    # queries, and beside a pruning pass (on a copy, so the daemon's pass below has the same work).
    state_dir = f"{root}/state"
    prune_copy = f"{root}/prune-copy"
    shutil.copytree(state_dir, prune_copy)
    alone = run_writer(args.writer, state_dir, args.writer_seconds)
    beside_cli, status_calls, status_longest = writer_with_status_loop(args.writer, args.binary, config, state_dir, args.writer_seconds)
    beside_queries = run_writer(args.writer, state_dir, args.writer_seconds, ["--status-in-process"])
    beside_prune = run_writer(args.writer, prune_copy, args.writer_seconds, ["--prune-rules", config])
    shutil.rmtree(prune_copy)

    size_before = os.path.getsize(db_path)
    daemon = start_daemon(args.binary, config)
    pruned = wait_for_message(daemon, "journal pruned", 1800)
    stop(daemon)
    size_after = os.path.getsize(db_path)

    def ms(seconds):
        return f"{seconds * 1000:9.1f} ms"

    print(f"\n{'measure':58} {'ferry':>12} {'sqlite3 peer':>14}")
    print(f"{'process start (ferry version)':58} {ms(baseline):>12}")
    print(f"{'status (ferry status --json; peer: GROUP BY as before #16)':58} {ms(status):>12} {ms(peer_status_old):>14}")
    print(f"{'status queries as ferry runs them now (peer)':58} {'':>12} {ms(peer_status_new):>14}")
    print(f"{f'history --since 1d ({day_rows:,} rows, JSON)':58} {ms(history):>12} {ms(peer_history):>14}")
    print(f"{'  peer without the finished index (table scan)':58} {'':>12} {ms(peer_scan_history):>14}")
    print(f"{'history by file name':58} {ms(by_name):>12}")
    deleted = pruned.get("prune.outbound", "?")
    def duration_ms(text):
        """A Swift Duration as the log prints it ("0.061558532 seconds") in milliseconds."""
        try:
            return ms(float(text.split()[0]))
        except (AttributeError, ValueError, IndexError):
            return "?"

    print(f"{f'pruning pass, {deleted} rows (peer: one DELETE)':58} {duration_ms(pruned.get('prune.duration')):>12} {ms(peer_prune):>14}")
    print(f"{'longest journal lock hold while pruning (peer: the DELETE)':58} {duration_ms(pruned.get('prune.longest_lock_hold')):>12} {ms(peer_prune):>14}")
    print(f"{'   that step':58} {pruned.get('prune.longest_step', '?')}")
    print(f"{'pruning steps / pages returned':58} {pruned.get('prune.steps', '?'):>12} {pruned.get('prune.pages_returned', '?'):>14}")
    print(f"{'checkpoints beside the journal lock':58} {pruned.get('prune.checkpoints', '?'):>12}")
    print(f"{'journal file before / after pruning (MB)':58} {size_before / 1e6:12.0f} {size_after / 1e6:14.0f}")

    def writes(report):
        w = report["writes"]
        return f"{w['max_ms']:9.1f} ms {w['p99_ms']:7.2f} ms {w['median_ms']:7.2f} ms {int(w['count']):>7,}"

    print(f"\n{'pipeline journal writes (200 files/s, 10 a batch)':58} {'longest':>12} {'p99':>10} {'median':>10} {'writes':>7}")
    print(f"{'alone':58} {writes(alone)}")
    print(f"{f'beside `ferry status` back to back ({status_calls} calls, longest {status_longest * 1000:.0f} ms)':58} {writes(beside_cli)}")
    queries_longest = beside_queries["status_queries"]["max_ms"]
    holds_longest = beside_queries.get("status_holds", {}).get("max_ms", float("nan"))
    print(f"{f'beside the daemon status queries in-process (longest {queries_longest:.1f} ms)':58} {writes(beside_queries)}")
    print(f"{f'   the status queries held the journal at most {holds_longest:.1f} ms (their waits for the writer excluded)':58}")
    prune = beside_prune.get("prune", {})
    prune_rows, prune_hold = prune.get("rows", 0), prune.get("longest_lock_hold_ms", 0)
    print(f"{f'beside a pruning pass ({prune_rows:,} rows, longest hold {prune_hold:.1f} ms)':58} {writes(beside_prune)}")
    print(f"{'   its steps / checkpoints beside the lock':58} {prune.get('steps', '?')} / {prune.get('checkpoints', '?')}")
    print(f"{'   its longest step':58} {prune.get('longest_step', '?')}")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    sys.exit(main())
