#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird benchmark (not a test): 1,000 peers indexing 1,000 files each
(1M files), then exact and substring search, against nginx-light serving a
static JSON file on this machine in the same run; everything on 127.0.0.1.

Each search is measured twice:
- saturated: wrk, 64 connections back to back (closed loop): the req/s is
  the capacity; its latencies are mostly time queued behind the other 63
  connections on 2 shared cores, not the time a request takes;
- paced (the latency probe): wrk with a think time per connection, so that
  the offered load is a stated fraction (--probe-fraction, default 0.25)
  of the rate just measured saturated; its p50/p99 are the latency at that
  load. nginx is probed the same way, at the same fraction of its own rate:
  the floor that this machine, wrk and the loopback set.

    bench/dird/bench.py [--peers N] [--files N] [--duration S] [--builddir DIR] [--keep]
                        [--postgresql] [--pairs N] [--probe-fraction F]

--postgresql runs the same benchmark twice in one run, side by side: on
SQLite, then with the directory on a throwaway PostgreSQL server (Debian's
postgresql, durable settings); on PostgreSQL it also counts the statements
the replica sent to the database during the search-only runs (its
p2p_dird_database_queries_total), starts a second replica B and measures
how soon a file indexed through A is found through B while 4 clients index
through A continuously, and the searches through haproxy over one and two
replicas. PostgreSQL is measured at rest (VACUUM ANALYZE and CHECKPOINT
after the bulk load). Then, with both backends' daemons still loaded,
exact search runs again --pairs times, alternating SQLite and PostgreSQL,
and the median of the pairs' ratios is printed: neighbours' jobs on a
shared machine move a pair far less than two runs minutes apart.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("port %d" % port)


def rss_kb(pid, field="VmHWM"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])


PACE_MS = 10  # think time per connection of the paced probe


def wrk(url, duration, conns, token=None, pace_script=None):
    cmd = ["wrk", "-t%d" % (1 if pace_script else 2), "-c%d" % conns, "-d%ds" % duration, "--latency"]
    if token:
        cmd += ["-H", "Authorization: Bearer " + token]
    if pace_script:
        cmd += ["-s", pace_script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": lat(50), "p99": lat(99),
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_err.group(1) if sock_err else ""}


def paced(url, rate, duration, token=None):
    """The latency probe: about rate req/s offered by connections that each
    wait PACE_MS between an answer and their next request."""
    script = os.path.join(tempfile.gettempdir(), "p2p-bench-pace-%d.lua" % os.getpid())
    with open(script, "w") as f:
        f.write("function delay()\n  return %d\nend\n" % PACE_MS)
    try:
        conns = max(1, round(rate * PACE_MS / 1000))
        r = wrk(url, duration, conns, token, pace_script=script)
    finally:
        os.unlink(script)
    r["conns"] = conns
    return r


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def both(a, url, token=None, pid=None):
    """Saturated, then paced at a.probe_fraction of the saturated rate;
    with pid, that process's CPU per saturated request (independent of
    what else runs on the machine, unlike the rates)."""
    c0 = cpu_s(pid) if pid else 0
    sat = wrk(url, a.duration, a.connections, token)
    if pid:
        sat["cpu_us"] = (cpu_s(pid) - c0) * 1e6 / max(1, sat["rps"] * a.duration)
    sat["probe"] = paced(url, sat["rps"] * a.probe_fraction, a.duration, token)
    return sat


def metric(base, name):
    text = requests.get(base + "/metrics", timeout=10).text
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))] if v else float("nan")


def run_backend(a, dird_bin, work, procs, pg):
    """One full benchmark on SQLite (pg None) or PostgreSQL; returns results."""
    label = "pg" if pg else "sqlite"
    db = pg.create_database() if pg else os.path.join(work, "dird.db")
    info = {}

    # All the peers register from 127.0.0.1: lift the per-address
    # registration limit where the build has one (older ones do not).
    help_text = subprocess.run([dird_bin, "--help"], capture_output=True, text=True).stdout
    limits = ["--register-burst", "1000000"] if "--register-burst" in help_text else []

    def start_dird(port, name):
        log = open(os.path.join(work, name + ".log"), "w")
        p = subprocess.Popen([dird_bin, "--listen", "127.0.0.1:%d" % port, "--database", db,
                              "--max-body", str(64 << 20), "--login-burst", "10000", "--login-interval", "1",
                              "--ttl", "86400"] + limits +
                             (["--workers", str(a.workers)] if a.workers is not None else []),
                             stderr=log)
        procs.append(p)
        try:
            wait_port(port, timeout=600)
        except TimeoutError:
            sys.exit("bench: p2p-dird did not start:\n" + open(os.path.join(work, name + ".log")).read())
        return p
    port = free_port()
    dird = start_dird(port, label + "-a")
    base = "http://127.0.0.1:%d" % port

    # Users: register + login (yescrypt dominates; not part of the index target).
    t0 = time.monotonic()

    def make_user(i):
        name = "peer%04d" % i
        r = requests.post(base + "/register", json={"username": name, "password": "pw"}, timeout=60)
        assert r.status_code == 201, r.text
        r = requests.post(base + "/login", json={"username": name, "password": "pw"}, timeout=60)
        return r.json()["token"]
    with ThreadPoolExecutor(8) as ex:
        tokens = list(ex.map(make_user, range(a.peers + 5)))
    print("[%s] register+login %d users: %.1f s (yescrypt hashing)" % (label, len(tokens), time.monotonic() - t0))

    # Index: each peer shares a.files files with realistic names.
    words = ["holiday", "photos", "report", "music", "album", "video", "backup", "notes", "draft",
             "linux", "debian", "image", "scan", "invoice", "movie", "lecture"]
    bodies = []
    for i in range(a.peers):
        files = [{"name": "%s %s %06d-%04d.dat" % (words[(i + j) % 16], words[(i * 7 + j * 3) % 16], j, i),
                  "size": 1000 + j, "sha256": "%064x" % (i * 1000003 + j)} for j in range(a.files)]
        bodies.append(json.dumps({"ip": "127.0.0.1", "port": 50001, "folder": "/srv/p%d" % i,
                                  "files": files}).encode())
    tl = threading.local()

    def s_local():
        if not hasattr(tl, "s"):
            tl.s = requests.Session()
        return tl.s

    def index(i, url=base):
        r = s_local().post(url + "/index", data=bodies[i], timeout=300,
                           headers={"Authorization": "Bearer " + tokens[i], "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(index, range(a.peers)))
    t_index = time.monotonic() - t0
    nfiles = a.peers * a.files
    print("[%s] index %d files (%d peers x %d): %.2f s (%.0f files/s)" % (label, nfiles, a.peers, a.files,
                                                                       t_index, nfiles / t_index))
    info["index files/s"] = nfiles / t_index
    info["rss after index MB"] = rss_kb(dird.pid, "VmRSS") / 1024

    if pg:
        # Measure the database at rest: the bulk load's autovacuum and
        # checkpoint would otherwise run during the first searches.
        dbname = db.rsplit("/", 1)[1]
        pg.psql("VACUUM ANALYZE", dbname)
        pg.psql("CHECKPOINT", dbname)
    tok = tokens[0]
    exact_name = "holiday holiday 000000-0000.dat"
    r = requests.get(base + "/search", params={"file": exact_name}, headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 200, r.text
    res = {}
    q0 = metric(base, "p2p_dird_database_queries_total") if pg else None
    res["exact search"] = both(a, base + "/search?file=" + requests.utils.quote(exact_name), tok, dird.pid)
    res["substring search"] = both(a, base + "/search?q=lecture%20draft%20000123&limit=50", tok, dird.pid)
    res["substring, broad"] = both(a, base + "/search?q=holiday&limit=50", tok, dird.pid)
    if pg:
        # The scrape itself counts 1 (users and sessions); the sweep timer
        # (every 60 s) 1 to 2 more.
        q1 = metric(base, "p2p_dird_database_queries_total")
        nreq = sum((res[k]["rps"] + res[k]["probe"]["rps"]) * a.duration
                   for k in ("exact search", "substring search", "substring, broad"))
        info["db statements during search-only runs"] = "%d over ~%d searches" % (q1 - q0, nreq)
    r = requests.get(base + "/search", params={"q": "holiday", "limit": 50}, headers={"Authorization": "Bearer " + tok})
    info["broad matches"] = r.json()["total"]
    info["peak RSS MB"] = rss_kb(dird.pid) / 1024
    exact = (dird.pid, base + "/search?file=" + requests.utils.quote(exact_name), tok)
    if not pg:
        info["database MB"] = sum(os.path.getsize(os.path.join(work, f)) for f in os.listdir(work)
                                  if f.startswith("dird.db")) / 1e6
        return res, info, exact
    info["database MB"] = int(pg.psql("SELECT pg_database_size(current_database())", db.rsplit("/", 1)[1])) / 1e6
    port_b = free_port()
    t0 = time.monotonic()
    dird_b = start_dird(port_b, "pg-b")
    info["replica B start (loads the view) s"] = time.monotonic() - t0
    base_b = "http://127.0.0.1:%d" % port_b
    requests.get(base_b + "/healthz", timeout=10)

    # Visibility A -> B while 4 clients re-index through A continuously.
    stop = threading.Event()

    def churn(k):
        i = k
        while not stop.is_set():
            index(i % a.peers)
            i += 4
    churners = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in churners:
        t.start()
    lat = []
    sa, sb = requests.Session(), requests.Session()
    probe_tok = tokens[a.peers]
    try:
        for n in range(a.probes):
            name = "probe-%d-%d.bin" % (os.getpid(), n)
            r = sa.post(base + "/index", json={"ip": "127.0.0.1", "port": 1, "files": [{"name": name, "size": 1}]},
                        headers={"Authorization": "Bearer " + probe_tok}, timeout=60)
            assert r.status_code == 200, r.text
            t0 = time.monotonic()
            while sb.get(base_b + "/search", params={"file": name},
                         headers={"Authorization": "Bearer " + probe_tok}, timeout=10).status_code != 200:
                time.sleep(0.002)
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("B never saw " + name)
            lat.append((time.monotonic() - t0) * 1000)
    finally:
        stop.set()
        for t in churners:
            t.join()
    info["A->B visibility ms p50/p99/max (%d probes, 4 indexing)" % len(lat)] = "%.1f / %.1f / %.1f" % (
        pct(lat, 50), pct(lat, 99), max(lat))

    # The same searches through haproxy: one replica, then two.
    for n, backends in ((1, [port]), (2, [port, port_b])):
        lb_port = free_port()
        cfg = os.path.join(work, "haproxy%d.cfg" % n)
        with open(cfg, "w") as f:
            f.write("global\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 1s\n"
                    "    timeout client 30s\n    timeout server 30s\n"
                    "listen dird\n    bind 127.0.0.1:%d\n    balance roundrobin\n" % lb_port)
            for i, bp in enumerate(backends):
                f.write("    server r%d 127.0.0.1:%d\n" % (i, bp))
        lb = subprocess.Popen(["/usr/sbin/haproxy", "-db", "-f", cfg], stderr=subprocess.DEVNULL)
        procs.append(lb)
        wait_port(lb_port)
        lb_base = "http://127.0.0.1:%d" % lb_port
        res["exact, %d replica%s" % (n, "s" if n > 1 else "")] = wrk(
            lb_base + "/search?file=" + requests.utils.quote(exact_name), a.duration, a.connections, tok)
        lb.send_signal(signal.SIGTERM)
        lb.wait(10)
        procs.remove(lb)
    dird_b.send_signal(signal.SIGTERM)
    dird_b.wait(30)
    procs.remove(dird_b)
    return res, info, exact


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=1000)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--probes", type=int, default=100, help="A->B visibility probes (--postgresql)")
    ap.add_argument("--builddir", default=os.path.join(top, "build"))
    ap.add_argument("--keep", action="store_true", help="keep the database and print where it is")
    ap.add_argument("--postgresql", action="store_true",
                    help="SQLite and PostgreSQL side by side; replicas, visibility, statement counts")
    ap.add_argument("--workers", type=int, help="p2p-dird's workers setting (default: its own)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="--postgresql: exact search again on both, alternating, this many pairs")
    ap.add_argument("--probe-fraction", type=float, default=0.25,
                    help="the paced latency probe offers this fraction of the saturated req/s")
    a = ap.parse_args()
    dird_bin = os.path.join(a.builddir, "src/dird/p2p-dird")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/nginx"):
            sys.exit("bench: %s is missing: apt-get install wrk nginx-light" % tool)
    work = tempfile.mkdtemp(prefix="p2p-bench-dird-")
    os.chmod(work, 0o755)  # nginx's worker runs as www-data
    procs = []
    pg = None
    try:
        print("machine: %s, %d cores; load average %s; p2p-dird %s" % (
            os.uname().machine, os.cpu_count(), open("/proc/loadavg").read().split()[:3], dird_bin))
        # nginx serving a static JSON answer the size of an exact-search one.
        os.makedirs(os.path.join(work, "www"))
        with open(os.path.join(work, "www", "search.json"), "w") as f:
            f.write(json.dumps({"peers_with_file": [{"peer": "peer0000", "ip": "127.0.0.1", "port": 50001,
                                                     "folder": "/srv/p0", "name": "holiday holiday 000000-0000.dat",
                                                     "size": 1000, "sha256": "0" * 64}]}))
        nport = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""worker_processes 1;
daemon off;
pid %(w)s/nginx.pid;
error_log %(w)s/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(w)s/tmp; proxy_temp_path %(w)s/tmp; fastcgi_temp_path %(w)s/tmp;
  uwsgi_temp_path %(w)s/tmp; scgi_temp_path %(w)s/tmp;
  server { listen 127.0.0.1:%(p)d; root %(w)s/www; default_type application/json; }
}
""" % {"w": work, "p": nport})
        nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
        procs.append(nginx)
        wait_port(nport)
        static = both(a, "http://127.0.0.1:%d/search.json" % nport)

        runs = [("SQLite", None)]
        if a.postgresql:
            sys.path[:0] = [os.path.join(top, "tests", "blackbox"), os.path.join(top, "tests", "dird")]
            import pgtest
            pg = pgtest.Server(durable=True)
            runs = [("SQLite", None), ("PostgreSQL", pg)]
        out = []
        exacts = []
        for name, server in runs:
            res, info, exact = run_backend(a, dird_bin, work, procs, server)
            out.append((name, res, info))
            exacts.append(exact)
        # Exact search on both backends again, alternating, both daemons
        # loaded and idle but for the search: the ratio of each pair is
        # measured minutes apart at most, not a whole backend apart.
        pairs = []
        if len(exacts) == 2:
            for _ in range(a.pairs):
                pairs.append([both(a, url, tok, pid) for pid, url, tok in exacts])
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        del procs[1:]
        print()
        print("saturated: wrk %d connections back to back (CPU us: the server's CPU per request);"
              " paced: %.0f%% of that rate, each connection waiting %d ms between answer and request" % (a.connections, a.probe_fraction * 100, PACE_MS))
        print("%-20s %-11s %10s %7s %9s %9s %8s | %7s %6s %9s %9s" % (
            "", "backend", "sat req/s", "CPU us", "p50 ms", "p99 ms", "errors", "paced/s", "conns", "p50 ms",
            "p99 ms"))

        def row(k, name, v):
            pr = v.get("probe")
            print("%-20s %-11s %10.0f %7s %9.3f %9.3f %8s | %s" % (
                k, name, v["rps"], "%.1f" % v["cpu_us"] if "cpu_us" in v else "-", v["p50"], v["p99"],
                v["non2xx"] or v["socket_errors"] or 0,
                "%7.0f %6d %9.3f %9.3f" % (pr["rps"], pr["conns"], pr["p50"], pr["p99"]) if pr else "-"))
        row("nginx static", "-", static)
        keys = list(dict.fromkeys(k for _, res, _ in out for k in res))
        for k in keys:
            for name, res, _ in out:
                if k in res:
                    row(k, name, res[k])
        print()
        for name, res, info in out:
            for k, v in info.items():
                print("%-11s %s: %s" % (name, k, "%.1f" % v if isinstance(v, float) else v))
        if len(out) == 2:
            sq, pq = out[0][1], out[1][1]
            print("PostgreSQL / SQLite exact search req/s: %.2f" % (pq["exact search"]["rps"] / sq["exact search"]["rps"]))
        if pairs:
            print()
            print("exact search, alternating pairs (SQLite, then PostgreSQL; saturated req/s, CPU us; paced p99 ms):")
            ratios = []
            for i, (sv, pv) in enumerate(pairs):
                ratios.append(pv["rps"] / sv["rps"])
                print("  pair %d: SQLite %.0f req/s, %.1f us, p99 %.2f | PostgreSQL %.0f req/s, %.1f us, p99 %.2f"
                      " | ratio %.2f" % (i + 1, sv["rps"], sv["cpu_us"], sv["probe"]["p99"], pv["rps"], pv["cpu_us"],
                                         pv["probe"]["p99"], ratios[-1]))
            print("  median PostgreSQL / SQLite exact req/s: %.2f; median paced p99: SQLite %.2f ms,"
                  " PostgreSQL %.2f ms" % (sorted(ratios)[len(ratios) // 2],
                                           sorted(v[0]["probe"]["p99"] for v in pairs)[len(pairs) // 2],
                                           sorted(v[1]["probe"]["p99"] for v in pairs)[len(pairs) // 2]))
            print("database: PostgreSQL %s" % pg.psql("SHOW server_version").strip())
        print("load average after: %s" % open("/proc/loadavg").read().split()[:3])
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if pg:
            pg.stop()
        if a.keep:
            print("kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
