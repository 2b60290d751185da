#!/usr/bin/env python3
"""Portal connector benchmark: idbridge pushing N individuals into the Python
`scim2-server` (PyPI) or the stand-in Yeti admin API (`--portal yeti`, the tests' own,
written from yeti-web's specs), beside the portal's own write rate as the ceiling.

  1. the peer's own rate: wrk POSTing users straight to scim2-server (8 connections);
  2. first push: N individuals already in idbridge, the connector configured — every one
     created (creates/s, from the first user in the portal to the last);
  3. changes: every individual's role changes (one apply) — re-mapped, then each pushed as
     a PATCH (pushes/s, from the first push to the last); for Yeti, whose logins carry no
     role, the connector's allowed IPs change instead (every login read back and PATCHed);
  4. drift repair: `connector resync` — every remote user read back and compared (users/s).

Usage: bench/connector.py [--individuals 10000] [--portal scim|yeti] [--binary PATH]
Needs: wrk (Debian) and scim2-server in .venv (scripts/test installs it). SQLite only.
The connector runs with concurrency 4: scim2-server is one thread behind a listen backlog of
5 (Python's wsgiref), and more connections at once are dropped and retried by TCP.
Results are printed as a Markdown table and written to bench-results/connector-*.json.
Reported, never asserted.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
WRK_DIR = os.path.join(ROOT, "bench", "wrk")
PEER_TOKEN = "bench-connector-peer-token"

APPLY = """
[[roles]]
name = "Member"
default = "read"

[[roles]]
name = "Reader"
default = "read"

[[tenants]]
slug = "bench"
name = "Bench"
allowed_roles = ["Member", "Reader"]

[tenants.policy]
default_role = "{role}"
mass_deprovision_min = 1000000
{connector}
"""

YETI_CONNECTOR = """
[[tenants.connectors]]
name = "portal"
concurrency = 4
drift_repair_minutes = 0
[tenants.connectors.yeti]
base_url = "{base}"
username = "bench"
password_file = "{token_file}"
customer_id = 42
allowed_ips = ["{ips}"]
acknowledge_default_profile = true
"""
YETI_PASSWORD = "bench-secret"

CONNECTOR = """
[[tenants.connectors]]
name = "portal"
concurrency = 4
drift_repair_minutes = 0
[tenants.connectors.scim]
base_url = "{base}"
token_file = "{token_file}"
"""


http = benchlib.http


def wait_for(what, check, timeout=3600, every=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    sys.exit(f"{what}: timed out")


def start_peer():
    exe = os.path.join(ROOT, ".venv", "bin", "scim2-server")
    if not os.path.exists(exe):
        sys.exit("scim2-server missing: .venv/bin/pip install scim2-server")
    port = benchlib.free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bearer-token", PEER_TOKEN],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for("scim2-server", lambda: try_get(base + "/ServiceProviderConfig"), timeout=30, every=0.1)
    return proc, base


def try_get(url):
    try:
        http("GET", url, PEER_TOKEN, timeout=2)
        return True
    except Exception:
        return False


def peer_users(base):
    return http("GET", base + "/Users?count=1", PEER_TOKEN)["totalResults"]


def peer_write_rate(base, duration):
    env = dict(os.environ, BENCH_TOKEN=PEER_TOKEN, BENCH_DIR=WRK_DIR, BENCH_PREFIX="peer")
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{duration}s", "-s", os.path.join(WRK_DIR, "create.lua"),
                          base + "/Users"], env=env, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


class YetiPeer:
    """The stand-in Yeti (tests/examples/yeti_standin.rs)."""

    def __init__(self):
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "idbridge-e2e", "--example", "yeti_standin"],
                       cwd=ROOT, check=True)
        exe = os.path.join(ROOT, "target", "release", "examples", "yeti_standin")
        self.proc = subprocess.Popen([exe, "bench", YETI_PASSWORD], stdout=subprocess.PIPE, text=True)
        self.base = self.proc.stdout.readline().strip()
        req = urllib.request.Request(self.base + "/api/rest/admin/auth", method="POST",
                                     data=json.dumps({"auth": {"username": "bench", "password": YETI_PASSWORD}}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as res:
            self.jwt = json.loads(res.read())["jwt"]

    def users(self):
        req = urllib.request.Request(self.base + "/api/rest/admin/api-accesses?page[size]=1",
                                     headers={"Authorization": f"Bearer {self.jwt}"})
        with urllib.request.urlopen(req) as res:
            return json.loads(res.read())["meta"]["total-count"]

    def write_rate(self, duration):
        env = dict(os.environ, BENCH_TOKEN=self.jwt)
        out = subprocess.run(["wrk", "-t1", "-c4", f"-d{duration}s", "-s", os.path.join(WRK_DIR, "yeti_create.lua"),
                              self.base + "/api/rest/admin/api-accesses"], env=env, capture_output=True, text=True,
                             check=True).stdout
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Idbridge:
    def __init__(self, binary):
        self.binary = binary
        self.work = tempfile.mkdtemp(prefix="idbridge-connector-bench-")
        self.port = benchlib.free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDBRIDGE_")}
        self.env.update({
            "IDBRIDGE_SERVER__LISTEN": f"127.0.0.1:{self.port}",
            "IDBRIDGE_SERVER__PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "IDBRIDGE_LOG__LEVEL": "warn",
            "IDBRIDGE_LIFECYCLE__SWEEP_SECONDS": "0",
        })
        self.proc = None

    def run(self, *args):
        return subprocess.run([self.binary, *args], cwd=self.work, env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def apply(self, role, connector=""):
        path = os.path.join(self.work, "apply.toml")
        with open(path, "w") as f:
            f.write(APPLY.format(role=role, connector=connector))
        self.run("apply", path)

    def serve(self):
        self.proc = subprocess.Popen([self.binary, "serve"], cwd=self.work, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{self.port}"
        wait_for("idbridge", lambda: try_ready(base), timeout=60, every=0.1)
        return base

    def status(self):
        return json.loads(self.run("connector", "status", "bench", "portal", "--json"))[0]

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.work, ignore_errors=True)


def try_ready(base):
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as res:
            return json.loads(res.read()).get("status") == "ready"
    except Exception:
        return False


def settled(base):
    """No reconciliation owed (the daemon measures its queue every 2 s)."""
    time.sleep(2.5)
    with urllib.request.urlopen(base + "/readyz", timeout=10) as res:
        ready = json.loads(res.read())
    return ready.get("reconciliation", {}).get("queued", 0) == 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--individuals", type=int, default=10000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--binary")
    parser.add_argument("--portal", choices=["scim", "yeti"], default="scim")
    args = parser.parse_args()
    n = args.individuals
    binary = args.binary or benchlib.build()
    results = {"individuals": n, "machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%F")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    results["commit"] = commit.stdout.strip()

    yeti = args.portal == "yeti"
    results["portal"] = args.portal
    if yeti:
        own = YetiPeer()
        print(f"== the stand-in Yeti's own write rate ({args.duration} s of wrk)", file=sys.stderr)
        results["peer_creates_per_s"] = own.write_rate(args.duration)
        own.stop()
        peer = YetiPeer()
        peer_base, count, secret = peer.base, peer.users, YETI_PASSWORD
    else:
        own, own_base = start_peer()
        print(f"== scim2-server's own write rate ({args.duration} s of wrk)", file=sys.stderr)
        results["peer_creates_per_s"] = peer_write_rate(own_base, args.duration)
        own.terminate()
        own.wait()
        proc, peer_base = start_peer()
        peer = type("Peer", (), {"stop": lambda self: (proc.terminate(), proc.wait())})()
        count, secret = (lambda: peer_users(peer_base)), PEER_TOKEN
    bridge = Idbridge(binary)
    try:
        bridge.apply("Member")
        token = bridge.run("scim-token", "create", "bench").strip()
        base = bridge.serve()
        print(f"== seeding {n} individuals in idbridge", file=sys.stderr)
        for chunk in range(0, n, 1000):
            ops = [{"method": "POST", "path": "/Users", "bulkId": f"u{k}",
                    "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                             "userName": f"u{k}@bench.example", "active": True}}
                   for k in range(chunk, min(n, chunk + 1000))]
            http("POST", f"{base}/scim/v2/bench/Bulk", token,
                 {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
        wait_for("reconciliation", lambda: settled(base))

        token_file = os.path.join(bridge.work, "peer-secret")
        with open(token_file, "w") as f:
            f.write(secret)
        connector = lambda ips="10.0.0.0/8": (YETI_CONNECTOR.format(base=peer_base, token_file=token_file, ips=ips)
                                              if yeti else CONNECTOR.format(base=peer_base, token_file=token_file))
        print("== first push: the connector configured", file=sys.stderr)
        bridge.apply("Member", connector())
        # From the first user in the portal: the daemon looks for new connectors every 5 s.
        wait_for("first push starts", lambda: count() > 0, every=0.05)
        started, before = time.time(), count()
        wait_for("first push", lambda: count() >= n)
        results["first_push_creates_per_s"] = (n - before) / (time.time() - started)
        wait_for("links settled", lambda: bridge.status()["links"]["owed"] == 0)

        print("== every individual changes", file=sys.stderr)
        started = time.time()
        if yeti:
            bridge.apply("Member", connector("192.0.2.0/24"))
        else:
            bridge.apply("Reader", connector())
        first = wait_for("pushes start", lambda: bridge.status()["links"]["owed"] > 0 and time.time(), every=0.05)
        wait_for("changes pushed", lambda: bridge.status()["links"]["owed"] == 0 and settled(base))
        done = time.time()
        results["change_all_seconds"] = done - started
        results["change_pushes_per_s"] = n / (done - first)

        print("== drift repair over every remote user", file=sys.stderr)
        started = time.time()
        bridge.run("connector", "resync", "bench", "portal")
        wait_for("drift repair", lambda: bridge.status()["links"]["owed"] == 0, every=0.1)
        results["drift_repair_users_per_s"] = n / (time.time() - started)
        results["remote_users"] = count()
    finally:
        bridge.stop()
        peer.stop()

    print(f"\n{n} individuals, {results['machine']}, {results['date']}, commit {results['commit']}\n")
    peer_name = "the stand-in Yeti" if args.portal == "yeti" else "scim2-server"
    print(f"| workload | idbridge → {peer_name} | {peer_name}'s own rate |")
    print("|---|---|---|")
    print(f"| create (first push) | {results['first_push_creates_per_s']:,.0f}/s | {results['peer_creates_per_s']:,.0f}/s |")
    change = "allowed IPs of every login (read back, PATCH)" if args.portal == "yeti" else "every role (PATCH)"
    print(f"| change {change} | {results['change_pushes_per_s']:,.0f}/s "
          f"({results['change_all_seconds']:.1f} s in all) | |")
    print(f"| drift repair (read back, compare) | {results['drift_repair_users_per_s']:,.0f} users/s | |")
    out_dir = os.path.join(ROOT, "bench-results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"connector-{args.portal}-{int(time.time())}.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
