#!/usr/bin/env python3
"""Startup and idle-memory benchmark for `idbridge serve` on SQLite.

Measures, for a release build:
  * time from spawning `idbridge serve` to the first `/readyz` 200, on a fresh working
    directory (database created and migrated) and on an existing database;
  * resident memory (VmRSS) after the daemon has idled for two seconds.

Usage: bench/startup.py [--runs N] [--binary PATH]. Prints a Markdown table for BENCHMARKS.md.
Reported, never asserted: this is a benchmark, not a test.
"""
import argparse
import http.client
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import build, free_port, rss_kib


def ready(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def one_run(binary, workdir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    env["IDBRIDGE_SERVER__LISTEN"] = f"127.0.0.1:{port}"
    env["IDBRIDGE_LOG__LEVEL"] = "warn"
    started = time.perf_counter()
    proc = subprocess.Popen([binary, "serve"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not ready(port):
            if proc.poll() is not None:
                sys.exit("idbridge exited during startup")
            time.sleep(0.001)
        elapsed_ms = (time.perf_counter() - started) * 1000
        time.sleep(2)
        return elapsed_ms, rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--binary", help="an idbridge binary to measure instead of building one")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary) if args.binary else build()
    fresh, warm, rss = [], [], []
    for _ in range(args.runs):
        workdir = tempfile.mkdtemp(prefix="idbridge-bench-")
        try:
            ms, kib = one_run(binary, workdir)
            fresh.append(ms)
            rss.append(kib)
            ms, kib = one_run(binary, workdir)
            warm.append(ms)
            rss.append(kib)
        finally:
            shutil.rmtree(workdir)

    def row(name, values, unit, goal):
        return (f"| {name} | {statistics.median(values):.1f} {unit} | {min(values):.1f} {unit} | "
                f"{max(values):.1f} {unit} | {goal} |")

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, {cpu}; {platform.platform()}")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; runs: {args.runs} each\n")
    print("| measurement | median | min | max | goal |")
    print("|---|---|---|---|---|")
    print(row("serve → /readyz 200, fresh SQLite (create + migrate)", fresh, "ms", "< 200 ms"))
    print(row("serve → /readyz 200, existing SQLite", warm, "ms", "< 200 ms"))
    print(row("idle resident memory (VmRSS after 2 s)", [k / 1024 for k in rss], "MiB", "< 30 MB"))


if __name__ == "__main__":
    main()
