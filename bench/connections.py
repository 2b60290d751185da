#!/usr/bin/env python3
"""Connection benchmark for `idbridge serve` (release build, fresh SQLite):

  1. resident memory per idle connection: VmRSS before and after opening 2,000 and then
     10,000 connections that send nothing (held open by a long header deadline);
  2. `/healthz` latency (p50 / p99 / max over 1,000 requests, a new connection each)
     on a quiet daemon, and while 2,000 slow clients trickle a request header one byte a
     second (the slowloris pattern) within the default deadlines.

Usage: bench/connections.py [--binary PATH]... (default: builds target/release/idbridge).
Several --binary LABEL=PATH run the same rows side by side, e.g. before and after a change.
Prints a Markdown table for BENCHMARKS.md. Reported, never asserted.
"""
import argparse
import asyncio
import http.client
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import build, free_port, rss_kib


def healthz_once(port):
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    conn.close()
    return (time.perf_counter() - started) * 1000


def latencies(port, n=1000):
    samples = sorted(healthz_once(port) for _ in range(n))
    return {"p50": statistics.median(samples), "p99": samples[int(len(samples) * 0.99) - 1], "max": samples[-1]}


class Daemon:
    def __init__(self, binary, header_seconds):
        self.work = tempfile.mkdtemp(prefix="idbridge-conn-bench-")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
        env.update({
            "IDBRIDGE_SERVER__LISTEN": f"127.0.0.1:{self.port}",
            "IDBRIDGE_LOG__LEVEL": "warn",
        })
        limits = {
            "IDBRIDGE_LIFECYCLE__SWEEP_SECONDS": "0",
            "IDBRIDGE_SERVER__HEADER_READ_TIMEOUT_SECONDS": str(header_seconds),
            "IDBRIDGE_SERVER__MAX_CONNECTIONS": "20000",
        }
        # A binary from before the connection limits (and the sweep) refuses their settings by name: it
        # is started without them (it has no deadlines to lengthen).
        for extra in (limits, {}):
            self.proc = subprocess.Popen([binary, "serve"], cwd=self.work, env={**env, **extra},
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self.wait_up():
                break
        else:
            sys.exit(f"{binary} never answered /healthz")
        # Warm the request path, then let start-up work (signing keys) finish.
        for _ in range(50):
            healthz_once(self.port)
        time.sleep(2)

    def wait_up(self):
        for _ in range(500):
            if self.proc.poll() is not None:
                return False
            try:
                healthz_once(self.port)
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        subprocess.run(["rm", "-rf", self.work])


# A daemon that costs megabytes per connection (5162834: 2.9 MiB) would take the machine
# down at 10,000: stop opening connections past this resident size and say so.
RSS_CAP_KIB = 8 * 1024 * 1024


def idle_memory(binary):
    daemon = Daemon(binary, header_seconds=600)
    try:
        base = rss_kib(daemon.proc.pid)
        held, rows = [], {}
        for target in (2000, 10000):
            capped = False
            while len(held) < target:
                held.append(socket.create_connection(("127.0.0.1", daemon.port)))
                if len(held) % 250 == 0 and rss_kib(daemon.proc.pid) > RSS_CAP_KIB:
                    capped = True
                    break
            time.sleep(1)
            rss = rss_kib(daemon.proc.pid)
            rows[target] = {"rss_mib": rss / 1024, "per_kib": (rss - base) / len(held), "opened": len(held),
                            "capped": capped}
            if capped:
                break
        for s in held:
            s.close()
        return base / 1024, rows
    finally:
        daemon.stop()


async def slow_client(port, stop):
    """Sends a request header one byte a second until told to stop or closed."""
    request = b"GET /healthz HTTP/1.1\r\nHost: idbridge\r\nX-Slow: " + b"a" * 200
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        for byte in request:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)
    except OSError:
        pass
    finally:
        writer.close()


def under_slow_clients(binary, clients=2000):
    daemon = Daemon(binary, header_seconds=15)
    try:
        quiet = latencies(daemon.port)
        stop = threading.Event()

        def trickle():
            async def all_clients():
                await asyncio.gather(*(slow_client(daemon.port, stop) for _ in range(clients)))
            asyncio.run(all_clients())

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        time.sleep(3)  # every slow client connected and trickling
        loaded = latencies(daemon.port)
        stop.set()
        thread.join(timeout=30)
        return quiet, loaded
    finally:
        daemon.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", action="append", default=[], help="LABEL=PATH or PATH; repeatable")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 12000:
        sys.exit(f"the open-file limit ({hard}) is below the 12,000 this benchmark needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binaries = []
    for spec in args.binary or [f"idbridge={build()}"]:
        label, _, path = spec.rpartition("=")
        binaries.append((label or os.path.basename(path), os.path.abspath(path)))
    results = []
    for label, path in binaries:
        print(f"== {label}", file=sys.stderr)
        base, rows = idle_memory(path)
        quiet, loaded = under_slow_clients(path)
        results.append((label, base, rows, quiet, loaded))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, {cpu}; {platform.platform()}")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| measurement | " + " | ".join(r[0] for r in results) + " | goal |")
    print("|---|" + "---|" * len(results) + "---|")
    print("| idle daemon RSS | " + " | ".join(f"{r[1]:.1f} MiB" for r in results) + " | < 30 MB |")
    def cell(rows, n):
        row = rows.get(n)
        if row is None:
            return "not tried (over the cap before)"
        text = f"{row['rss_mib']:.1f} MiB, {row['per_kib']:.1f} KiB"
        return text + (f" (stopped at {row['opened']:,}: over {RSS_CAP_KIB // 1024 // 1024} GiB)" if row["capped"] else "")

    for n in (2000, 10000):
        print(f"| {n:,} idle connections: RSS, per connection | " + " | ".join(cell(r[2], n) for r in results)
              + (" | ≤ 64 KiB each, < 1 GiB |" if n == 10000 else " | ≤ 64 KiB each |"))
    fmt = lambda l: f"{l['p50']:.2f} / {l['p99']:.2f} / {l['max']:.1f} ms"
    print("| /healthz p50 / p99 / max, quiet | " + " | ".join(fmt(r[3]) for r in results) + " | |")
    print("| /healthz p50 / p99 / max, 2,000 slow clients | " + " | ".join(fmt(r[4]) for r in results) + " | |")


if __name__ == "__main__":
    main()
