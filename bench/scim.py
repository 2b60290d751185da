#!/usr/bin/env python3
"""SCIM benchmark: idbridge on SQLite, idbridge on PostgreSQL and the Python
`scim2-server` (PyPI) side by side, with the same load generator (wrk) and workloads:

  1. create users (POST /Users), throughput;
  2. `userName eq` lookups over N seeded users, throughput;
  3. add or remove one member of a group that has N members (PATCH), p50/p99 latency;
  4. page through the N users with count=100 (GET /Users?startIndex=…), pages per second.

Usage: bench/scim.py [--users 100000] [--duration 10] [--targets sqlite,postgres,peer]
       [--binary LABEL=PATH ...]
Needs: wrk (Debian), PostgreSQL on 127.0.0.1:5432 for the postgres target, and
scim2-server in .venv (scripts/test installs the venv; `pip install scim2-server`).
Results are printed as a Markdown table and written to bench-results/scim-*.json.
Reported, never asserted.
"""
import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK_DIR = os.path.join(ROOT, "bench", "wrk")
TOKEN_PEER = "bench-peer-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import http  # noqa: E402


def wait_ready(url, token):
    for _ in range(500):
        try:
            http("GET", url + "/ServiceProviderConfig", token, timeout=2)
            return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"{url} never answered")


class Target:
    def __init__(self, name, base, token, proc, cleanup=None):
        self.name, self.base, self.token, self.proc, self.cleanup = name, base, token, proc, cleanup
        # The PostgreSQL database, when the target has one.
        self.db_url = None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.cleanup:
            self.cleanup()


def start_idbridge(name, binary, db_url=None):
    work = tempfile.mkdtemp(prefix="idbridge-scim-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
    env.update({
        "IDBRIDGE_SERVER__LISTEN": f"127.0.0.1:{port}",
        "IDBRIDGE_SERVER__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "IDBRIDGE_LOG__LEVEL": "warn",
        # The convergence sweep re-decides every user on a schedule; it is measured on its
        # own (crates/server/examples/lifecycle_bench.rs), not inside these rows.
        "IDBRIDGE_LIFECYCLE__SWEEP_SECONDS": "0",
    })
    if db_url:
        env["IDBRIDGE_DATABASE__URL"] = db_url
    if subprocess.run([binary, "check-config"], cwd=work, env=env, capture_output=True).returncode != 0:
        # A binary from before the sweep refuses its setting by name (and has no sweep).
        del env["IDBRIDGE_LIFECYCLE__SWEEP_SECONDS"]
    run = lambda *args: subprocess.run([binary, *args], cwd=work, env=env, check=True, capture_output=True, text=True).stdout
    run("tenant", "create", "bench", "--name", "Bench")
    token = run("scim-token", "create", "bench").strip()
    proc = subprocess.Popen([binary, "serve"], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/scim/v2/bench"
    wait_ready(base, token)
    target = Target(name, base, token, proc, lambda: shutil.rmtree(work, ignore_errors=True))
    target.db_url = db_url
    return target


def start_peer():
    exe = os.path.join(ROOT, ".venv", "bin", "scim2-server")
    if not os.path.exists(exe):
        sys.exit("scim2-server missing: .venv/bin/pip install scim2-server")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bearer-token", TOKEN_PEER],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, TOKEN_PEER)
    return Target("scim2-server (Python)", base, TOKEN_PEER, proc)


def seed(target, users, pool):
    """N seed users, a pool of non-members, and a group holding every seed user."""
    ids, pool_ids = [], []
    started = time.perf_counter()
    for prefix, count, into in (("seed", users, ids), ("pool", pool, pool_ids)):
        for chunk in range(0, count, 1000):
            ops = [{"method": "POST", "path": "/Users", "bulkId": f"{prefix}{k}",
                    "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                             "userName": f"{prefix}-{k}@bench.example", "active": True}}
                   for k in range(chunk, min(chunk + 1000, count))]
            answer = http("POST", target.base + "/Bulk", target.token,
                          {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
            for op in answer["Operations"]:
                if not str(op.get("status")).startswith("2"):
                    sys.exit(f"{target.name}: seeding failed: {op}")
                into.append(op["location"].rstrip("/").rsplit("/", 1)[1])
    group = http("POST", target.base + "/Groups", target.token,
                 {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "big"})
    gid = group["id"]
    for chunk in range(0, len(ids), 1000):
        http("PATCH", f"{target.base}/Groups/{gid}", target.token,
             {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
              "Operations": [{"op": "add", "path": "members", "value": [{"value": i} for i in ids[chunk:chunk + 1000]]}]})
    return gid, pool_ids, time.perf_counter() - started


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def settle(target):
    """Waits until the seeding's reconciliation is done (idbridge's intent queue empty in
    two readings of /readyz), so that no background work overlaps the measurement. A
    binary whose /readyz has no queue (before durable intent) is settled when it used no
    CPU for two readings 2 s apart."""
    if not target.name.startswith("idbridge"):
        return 0.0
    ready = target.base.split("/scim/")[0] + "/readyz"
    started, empty, ticks = time.perf_counter(), 0, None
    while empty < 2:
        try:
            with urllib.request.urlopen(ready, timeout=10) as res:
                body = json.loads(res.read())
            if "reconciliation" in body:
                queue = body["reconciliation"]
                idle = queue is not None and queue["queued"] == 0
            else:
                now = cpu_ticks(target.proc.pid)
                idle = ticks is not None and now - ticks <= 2
                ticks = now
        except urllib.error.HTTPError as e:
            # Not ready (the store busy or unwritable): say so and wait.
            print(f"   /readyz {e.code}: {e.read().decode(errors='replace')}", file=sys.stderr)
            idle = False
        empty = empty + 1 if idle else 0
        time.sleep(2.1)
    return time.perf_counter() - started


def wrk(target, script, path, duration, extra_env):
    env = dict(os.environ, BENCH_TOKEN=target.token, BENCH_DIR=WRK_DIR, **extra_env)
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{duration}s", "--latency", "-s", os.path.join(WRK_DIR, script),
                          target.base + path], env=env, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    percentiles = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        factor = {"us": 0.001, "ms": 1, "s": 1000}[unit]
        percentiles[pct] = float(value) * factor
    return {"rps": rps, "errors": int(errors.group(1)) if errors else 0, "p50_ms": percentiles.get("50"),
            "p99_ms": percentiles.get("99")}


def run_target(target, users, duration):
    print(f"== {target.name}: seeding {users} users and a {users}-member group", file=sys.stderr)
    gid, pool_ids, seed_seconds = seed(target, users, 1000)
    settle_seconds = settle(target)
    print(f"   settled {settle_seconds:.0f} s after seeding", file=sys.stderr)
    if target.db_url:
        # What a DBA does after a bulk load, and autovacuum does within a minute when it is
        # on: without statistics the planner takes the freshly filled tables for empty
        # (measured: 375 lookups/s before, 3,202/s after, at 20,000 users).
        autovacuum = subprocess.run(["psql", target.db_url, "-Atc", "SHOW autovacuum"], capture_output=True,
                                    text=True).stdout.strip()
        subprocess.run(["psql", target.db_url, "-qc", "ANALYZE"], check=True)
        print(f"   ANALYZE after seeding (autovacuum is {autovacuum or '?'} on this server)", file=sys.stderr)
    ids_file = tempfile.NamedTemporaryFile("w", delete=False, suffix=".ids")
    ids_file.write("\n".join(pool_ids))
    ids_file.close()
    env = {"BENCH_USERS": str(users), "BENCH_IDS_FILE": ids_file.name, "BENCH_PREFIX": f"new{int(time.time())}"}
    results = {"seed_seconds": seed_seconds, "settle_seconds": settle_seconds}
    for name, script, path in (("create", "create.lua", "/Users"), ("lookup", "lookup.lua", "/Users"),
                               ("member", "member.lua", f"/Groups/{gid}"), ("page", "page.lua", "/Users")):
        print(f"   {name} …", file=sys.stderr)
        results[name] = wrk(target, script, path, duration, env)
        # What a workload's writes left to reconcile is not the next workload's cost.
        waited = settle(target)
        results[name]["settle_seconds"] = waited
        print(f"   {name}: settled {waited:.1f} s after the workload", file=sys.stderr)
    os.unlink(ids_file.name)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--targets", default="sqlite,postgres,peer")
    parser.add_argument("--peer-users", type=int, default=None,
                        help="seed the Python peer with fewer users (its bulk create is O(n) per user)")
    parser.add_argument("--binary", action="append", default=[],
                        help="LABEL=PATH: measure this idbridge binary (repeatable: side by side, e.g. before "
                             "and after a change) instead of building one")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk missing: apt-get install wrk")
    binaries = [(label, os.path.abspath(path)) for label, _, path in (b.rpartition("=") for b in args.binary)]
    if not binaries:
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "idbridge-server", "--bin", "idbridge"],
                       cwd=ROOT, check=True)
        binaries = [("", os.path.join(ROOT, "target", "release", "idbridge"))]
    runs = [(which, label, binary) for which in args.targets.split(",")
            for label, binary in (binaries if which != "peer" else [("", None)])]
    results = {}
    for which, label, binary in runs:
        suffix = f" [{label}]" if label else ""
        if which == "sqlite":
            target = start_idbridge("idbridge, SQLite" + suffix, binary)
        elif which == "postgres":
            db = f"idbridge_bench_{os.getpid()}"
            admin = os.environ.get("IDBRIDGE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
            subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {db}"], check=True)
            target = start_idbridge("idbridge, PostgreSQL" + suffix, binary, admin.rsplit("/", 1)[0] + "/" + db)
            previous = target.cleanup
            target.cleanup = lambda: (previous(), subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"]))
        elif which == "peer":
            target = start_peer()
        else:
            sys.exit(f"unknown target {which}")
        users = args.peer_users if which == "peer" and args.peer_users else args.users
        try:
            results[target.name] = run_target(target, users, args.duration)
            results[target.name]["users"] = users
            print(f"   {json.dumps(results[target.name])}", file=sys.stderr)
        finally:
            target.stop()

    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(ROOT, "bench-results", f"scim-{stamp}.json"), "w") as f:
        json.dump({"users": args.users, "duration": args.duration, "results": results}, f, indent=2)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, {cpu}; {platform.platform()}")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.users} users; wrk -t1 -c8, {args.duration} s per row\n")
    names = list(results)
    print("| workload | " + " | ".join(f"{n} ({results[n]['users']} users)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    def cell(r, key, fmt):
        extra = f" ({r[key]['errors']} non-2xx)" if r[key]["errors"] else ""
        return fmt(r[key]) + extra
    rows = [
        ("create users (POST /Users): throughput, p99", "create", lambda x: f"{x['rps']:.0f}/s, p99 {x['p99_ms']:.1f} ms"),
        ("`userName eq` lookup over all seeded users", "lookup", lambda x: f"{x['rps']:.0f}/s"),
        ("add/remove 1 member of a group holding every seeded user: p50 / p99", "member",
         lambda x: f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} ms ({x['rps']:.0f}/s)"),
        ("page of 100 users (GET /Users?startIndex=…&count=100)", "page", lambda x: f"{x['rps']:.0f} pages/s"),
    ]
    for label, key, fmt in rows:
        print(f"| {label} | " + " | ".join(cell(results[n], key, fmt) for n in names) + " |")
    print("| seeding (bulk, not a workload) | " + " | ".join(f"{results[n]['seed_seconds']:.0f} s" for n in names) + " |")


if __name__ == "__main__":
    main()
