#!/usr/bin/env python3
"""LDAP sync benchmark: idbridge against a real slapd on loopback, next to ldapsearch.

Loads USERS users and GROUPS groups into a fresh slapd (offline, with slapadd): groups
`pbx-queue-N` of USERS/GROUPS users each, all of them members of `pbx-admins`, so every
user is a PBX admin through nesting and has one queue. Then measures, one after the other:

  * the floor: `ldapsearch` reading the same users and groups with the same page size
    (output to /dev/null);
  * `idbridge sync ldap acme --full` on an empty SQLite database (reads, expands nesting,
    decides, creates every individual), with wall time and peak RSS (/usr/bin/time);
  * the same full run again, when nothing changed (read, compare, write nothing);
  * an incremental run after 100 users changed (their title);
  * a mass deprovision held by the guard: `pbx-admins` deleted, so an incremental run
    takes access from every user and the tenant's guard holds it; then `changes list`,
    `changes show` (every write) and `changes reject` of that 100,000-write change set.

Usage: bench/ldap.py [--users 100000] [--groups 10000] [--baseline path/to/older/idbridge]
(the baseline runs the same workloads on a fresh copy of the same directory). Needs slapd, slapadd, ldapsearch,
ldapmodify (scripts/test installs them). Prints Markdown rows for BENCHMARKS.md.
Reported, never asserted.
"""
import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUFFIX = "dc=acme,dc=example"
ADMIN = "cn=admin," + SUFFIX
PASSWORD = "bench-secret"
PAGE = 500


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(directory):
    return f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {directory}/slapd.pid
database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN}"
rootpw {PASSWORD}
directory {directory}/data
maxsize 4294967296
sizelimit unlimited
"""


def ldif(users, groups):
    per = max(1, users // groups)
    yield f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: ACME\ndc: acme\n\n"
    for ou in ("people", "groups"):
        yield f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
    # Entries changed over the past days, one per second, as in a directory in use (slapadd
    # would otherwise stamp every entry with the same second).
    start = time.time() - users - 3600
    for n in range(users):
        stamp = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(start + n))
        yield (f"dn: uid=user{n:06d},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: user{n:06d}\n"
               f"cn: User {n}\nsn: User\ngivenName: U{n}\nmail: user{n:06d}@acme.example\ntitle: Agent\n"
               f"modifyTimestamp: {stamp}\n\n")
    for g in range(groups):
        members = "".join(f"member: uid=user{n:06d},ou=people,{SUFFIX}\n"
                          for n in range(g * per, min(users, (g + 1) * per)))
        yield f"dn: cn=pbx-queue-{g},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: pbx-queue-{g}\n{members}\n"
    members = "".join(f"member: cn=pbx-queue-{g},ou=groups,{SUFFIX}\n" for g in range(groups))
    yield f"dn: cn=pbx-admins,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: pbx-admins\n{members}\n"


def timed(cmd, env=None, capture=True):
    started = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    return elapsed, rss, out.stdout


def start_slapd(work, data):
    """slapd on a copy of the loaded directory, so each binary measured starts from the same one."""
    if os.path.exists(f"{work}/data"):
        shutil.rmtree(f"{work}/data")
    shutil.copytree(data, f"{work}/data")
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    slapd = subprocess.Popen(["slapd", "-f", f"{work}/slapd.conf", "-h", url + "/", "-d", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return slapd, url


def floor(url):
    search = ["ldapsearch", "-x", "-LLL", "-H", url, "-D", ADMIN, "-w", PASSWORD, "-E", f"pr={PAGE}/noprompt"]
    users, _, _ = timed(search + ["-b", f"ou=people,{SUFFIX}", "(objectClass=inetOrgPerson)", "uid", "mail",
                                  "givenName", "sn", "cn", "title", "entryUUID", "modifyTimestamp"])
    groups, _, _ = timed(search + ["-b", f"ou=groups,{SUFFIX}", "(objectClass=groupOfNames)", "cn", "entryUUID",
                                   "member"])
    return users + groups


def runs(binary, work, url, users):
    """The workloads, one after the other, on an empty SQLite database: (name, seconds, MiB) rows."""
    with open(f"{work}/ldap.secret", "w") as f:
        f.write(PASSWORD)
    with open(os.path.join(ROOT, "config/examples/acme.toml")) as f:
        example = f.read()
    with open(f"{work}/acme-ldap.toml", "w") as f:
        f.write(example + f'\n[[tenants.ldap]]\nname = "corp"\nurls = ["{url}"]\nbind_dn = "{ADMIN}"\n'
                f'bind_password_file = "{work}/ldap.secret"\nuser_base = "ou=people,{SUFFIX}"\n'
                f'group_base = "ou=groups,{SUFFIX}"\npage_size = {PAGE}\nschedule_seconds = 0\n')
    db = f"{work}/idbridge.db"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    env = dict(os.environ, IDBRIDGE_DATABASE__URL=f"sqlite://{db}", RUST_LOG="warn")
    subprocess.run([binary, "apply", f"{work}/acme-ldap.toml"], env=env, check=True, capture_output=True)
    rows, outputs = [], []

    def run(name, cmd):
        elapsed, rss, out = timed(cmd, env)
        rows.append((name, elapsed, rss))
        outputs.append(out)
        return out

    run("first", [binary, "sync", "ldap", "acme", "--full"])
    run("steady", [binary, "sync", "ldap", "acme", "--full"])
    changes = "".join(f"dn: uid=user{n:06d},ou=people,{SUFFIX}\nchangetype: modify\nreplace: title\n"
                      f"title: Supervisor\n\n" for n in range(0, users, max(1, users // 100)))
    subprocess.run(["ldapmodify", "-x", "-H", url, "-D", ADMIN, "-w", PASSWORD], input=changes, text=True,
                   check=True, capture_output=True)
    run("incremental", [binary, "sync", "ldap", "acme"])
    subprocess.run(["ldapdelete", "-x", "-H", url, "-D", ADMIN, "-w", PASSWORD, f"cn=pbx-admins,ou=groups,{SUFFIX}"],
                   check=True, capture_output=True)
    run("hold", [binary, "sync", "ldap", "acme"])
    listed = run("list", [binary, "changes", "list", "--status", "pending"])
    set_id = listed.split()[0]
    run("show", [binary, "changes", "show", set_id])
    run("reject", [binary, "changes", "reject", set_id])
    return rows, outputs


LABELS = {
    "first": ("idbridge full sync, first run (creates every individual)", "≤ 10 s, ≤ 300 MB"),
    "steady": ("idbridge full sync, nothing changed", "≤ 1.5× floor, ≤ 300 MB"),
    "incremental": ("idbridge incremental sync, 100 users changed", "≤ 0.5 s"),
    "hold": ("incremental sync that holds a mass deprovision (pbx-admins deleted)", ""),
    "list": ("`changes list` with that set pending", "< 1 s, < 300 MB"),
    "show": ("`changes show` of it (every write)", ""),
    "reject": ("`changes reject` of it", "< 5 s, < 300 MB"),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--baseline", help="another idbridge binary (an earlier commit) measured in the same run")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "idbridge-server", "--bin", "idbridge"],
                   cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "idbridge")
    work = tempfile.mkdtemp(prefix="idbridge-ldap-bench-")
    loaded = f"{work}/loaded"
    os.makedirs(loaded)
    with open(f"{work}/slapd.conf", "w") as f:
        f.write(config(work))
    with open(f"{work}/load.ldif", "w") as f:
        for chunk in ldif(args.users, args.groups):
            f.write(chunk)
    os.makedirs(f"{work}/data")
    started = time.monotonic()
    subprocess.run(["slapadd", "-q", "-f", f"{work}/slapd.conf", "-l", f"{work}/load.ldif"], check=True)
    load = time.monotonic() - started
    shutil.rmtree(loaded)
    shutil.copytree(f"{work}/data", loaded)
    measured = {}
    floors = []
    for name, path in [("this", binary)] + ([("baseline", args.baseline)] if args.baseline else []):
        slapd, url = start_slapd(work, loaded)
        try:
            floors.append(floor(url))
            measured[name] = runs(path, work, url, args.users)
        finally:
            slapd.terminate()
            slapd.wait()
    floor_s = min(floors)
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores; {platform.platform()}")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; slapadd of the directory: {load:.1f} s")
    for name, (_, outputs) in measured.items():
        for out in outputs[:4]:
            print(f"  {name}: " + out.strip().splitlines()[0])
    print()
    columns = " | ".join(["this build"] + (["baseline"] if args.baseline else []))
    print(f"| measurement ({args.users:,} users, {args.groups:,} groups) | {columns} | goal |")
    print("|---|" + "---|" * len(measured) + "---|")
    print(f"| floor: ldapsearch reads users and groups (pages of {PAGE}) | "
          + " | ".join(f"{f:.2f} s" for f in floors) + " | |")
    for i, key in enumerate(LABELS):
        label, goal = LABELS[key]
        cells = []
        for name in measured:
            _, seconds, mib = measured[name][0][i]
            ratio = f" ({seconds / floor_s:.1f}× floor)" if key in ("first", "steady") else ""
            cells.append(f"{seconds:.2f} s{ratio}, {mib:.0f} MiB")
        print(f"| {label} | " + " | ".join(cells) + f" | {goal} |")


if __name__ == "__main__":
    main()
