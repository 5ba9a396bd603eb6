#!/usr/bin/env python3
"""bench/upload: the same files uploaded to the local emulator's S3 by FerryAWS (ferry-upload-bench),
by `aws s3 cp --recursive` and by `rclone copy`, in one run.

Two workloads: 2,000 files of 4 KiB, and one 1 GiB file. For each tool prints wall time, CPU seconds
(user+sys of the process and its children, from wait4), CPU per file and peak memory (ru_maxrss).
moto serves ~200 requests/s here, so wall time mostly measures moto; compare CPU and memory.

Usage: bench/upload/run.py [--files N] [--big-mib N] [--rounds N] [--binary PATH]
(`make bench-upload` builds the release binary and runs this.)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_measured(argv, env):
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  ! {argv[0]} exited {code}: {err[-400:]}", file=sys.stderr)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "ok": code == 0}


def count_objects(endpoint, bucket, prefix, env):
    out = subprocess.run(["aws", "s3", "ls", "--recursive", "--endpoint-url", endpoint, f"s3://{bucket}/{prefix}"],
                         env=env, capture_output=True, text=True)
    return len([line for line in out.stdout.splitlines() if line.strip()]) if out.returncode == 0 else -1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of the small-file workload (median reported)")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/ferry-upload-bench"))
    args = parser.parse_args()
    for tool in ("aws", "rclone"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run `make deps`")
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"{args.binary} missing: run `make bench-upload`")

    emulator = subprocess.Popen([os.path.join(ROOT, "Tests/Emulator/run")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    info = json.loads(emulator.stdout.readline())
    work = tempfile.mkdtemp(prefix="ferry-bench-upload.")
    try:
        endpoint, bucket = info["endpoint"], info["buckets"]["staging"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=info["access_key_id"], AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
                   AWS_DEFAULT_REGION=info["region"], AWS_REGION=info["region"], AWS_EC2_METADATA_DISABLED="true")
        # rclone refuses to start with the machine's AWS_CA_BUNDLE set (LoadCustomCABundleError).
        rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
        rclone_env.update(RCLONE_CONFIG_EMU_TYPE="s3", RCLONE_CONFIG_EMU_PROVIDER="Other", RCLONE_CONFIG_EMU_ENDPOINT=endpoint,
                          RCLONE_CONFIG_EMU_ACCESS_KEY_ID=info["access_key_id"],
                          RCLONE_CONFIG_EMU_SECRET_ACCESS_KEY=info["secret_access_key"], RCLONE_CONFIG_EMU_REGION=info["region"],
                          RCLONE_CONFIG_EMU_FORCE_PATH_STYLE="true")

        small = os.path.join(work, "small")
        os.makedirs(small)
        for i in range(args.files):
            with open(os.path.join(small, f"file-{i:05d}.edi"), "wb") as f:
                f.write(os.urandom(4096))
        big = os.path.join(work, "big")
        os.makedirs(big)
        with open(os.path.join(big, "one.bin"), "wb") as f:
            for _ in range(args.big_mib):
                f.write(os.urandom(1 << 20))

        tools = {
            "ferry (FerryAWS)": lambda src, dst: ([args.binary, "--endpoint", endpoint, "--region", info["region"], "--bucket", bucket,
                                                   "--prefix", dst + "/", "--concurrency", "16", src], env),
            "aws s3 cp --recursive": lambda src, dst: (["aws", "s3", "cp", "--recursive", "--only-show-errors", "--endpoint-url", endpoint,
                                                        src, f"s3://{bucket}/{dst}/"], env),
            "rclone copy --transfers 8": lambda src, dst: (["rclone", "copy", "--transfers", "8", src, f"emu:{bucket}/{dst}"], rclone_env),
        }
        # Warm-up, not measured: the emulator's first requests pay for moto's lazy set-up, which
        # would otherwise be charged (as CPU contention) to whichever tool happens to run first.
        argv, tool_env = tools["ferry (FerryAWS)"](small, "warmup")
        run_measured(argv, tool_env)

        # The small-file workload runs `--rounds` times, tools interleaved; the median of each is
        # reported, so one noisy moment on a shared machine does not decide the ratio.
        small_name = "2,000 x 4 KiB" if args.files == 2000 else f"{args.files} x 4 KiB"
        per_tool: dict[str, list] = {name: [] for name in tools}
        names = list(tools)
        for round_index in range(args.rounds):
            # The order rotates each round, so no tool always runs right after the same other one
            # (what a tool leaves behind in the emulator shows in the next tool's figures).
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                index, make = names.index(name), tools[name]
                dst = f"small-{round_index}-{index}"
                argv, tool_env = make(small, dst)
                print(f"round {round_index + 1}/{args.rounds}: {name} on {small_name} ...", file=sys.stderr, flush=True)
                result = run_measured(argv, tool_env)
                result["stored"] = count_objects(endpoint, bucket, dst + "/", env)
                per_tool[name].append(result)
        rows = []
        for name, results in per_tool.items():
            ordered = sorted(results, key=lambda r: r["cpu"])
            median = dict(ordered[len(ordered) // 2])
            median["ok"] = all(r["ok"] for r in results)
            median["stored"] = min(r["stored"] for r in results)
            median["all_cpu"] = [r["cpu"] for r in results]
            rows.append((small_name, name, median, median["stored"], args.files))
        big_name = f"1 x {args.big_mib} MiB"
        for index, (name, make) in enumerate(tools.items()):
            dst = f"big-{index}"
            argv, tool_env = make(big, dst)
            print(f"running {name} on {big_name} ...", file=sys.stderr, flush=True)
            result = run_measured(argv, tool_env)
            rows.append((big_name, name, result, count_objects(endpoint, bucket, dst + "/", env), 1))

        print()
        print(f"Small files: median of {args.rounds} rounds (CPU s of every round in brackets).")
        print()
        print(f"| workload | tool | wall s | CPU s | CPU ms/file | peak RSS MB | objects stored |")
        print(f"|---|---|---:|---:|---:|---:|---:|")
        for workload, name, r, stored, count in rows:
            rounds = f" ({', '.join(f'{c:.2f}' for c in r['all_cpu'])})" if "all_cpu" in r else ""
            print(f"| {workload} | {name} | {r['wall']:.1f} | {r['cpu']:.2f}{rounds} | {1000 * r['cpu'] / count:.3f} | {r['rss_mb']:.0f} | "
                  f"{stored}/{count}{'' if r['ok'] else ' (FAILED)'} |")
        by = {(w, n): r for w, n, r, _, _ in rows}
        ferry, rclone, awscli = by[(small_name, "ferry (FerryAWS)")], by[(small_name, "rclone copy --transfers 8")], by[(small_name, "aws s3 cp --recursive")]
        per_round = [f / r for f, r in zip(ferry["all_cpu"], rclone["all_cpu"])]
        print()
        print(f"CPU per small file: ferry/rclone = {ferry['cpu'] / rclone['cpu']:.2f} (target <= 0.20; per round "
              f"{', '.join(f'{x:.2f}' for x in per_round)}), ferry/aws-cli = {ferry['cpu'] / awscli['cpu']:.2f}")
        big_ferry = by[(big_name, "ferry (FerryAWS)")]
        print(f"peak RSS for the big file: ferry {big_ferry['rss_mb']:.0f} MB (target < 100 MB)")
    finally:
        emulator.terminate()
        emulator.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
