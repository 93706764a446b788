#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""p2p-dird scale-out simulation (not a test; issue 16, docs/SCALING.md).

Tens of thousands of simulated peers against two p2p-dird replicas (A and
B) on one throwaway PostgreSQL server (durable settings), on this machine:

  - the peers, their sessions and files are seeded straight into the
    database (registering 20,000 users through the API would spend ~20
    CPU-minutes in yescrypt), then both replicas start and load them;
  - phases of one operation each (heartbeat, re-index, search, login) and
    then the realistic mix, with clients alternating between A and B.

The mix is per online peer: a heartbeat every ttl/3 s (30 s), a re-index
every 10 min, a search every 2 min, a login a day. Two shared cores
cannot offer tens of thousands of peers' load in real time, so clients send
as fast as they can with that mix (the offered rate is printed); what is
measured is the cost per operation, which is what SCALING.md extrapolates:
each replica's CPU seconds per operation (utime + stime from /proc), the
database server's CPU, its transactions, rows written and WAL bytes per
operation (pg_stat_database, pg_current_wal_lsn), and whether searches
sent any statement to the database (the replicas' own counters).

    bench/dird/scale.py [--peers 20000] [--files 50] [--duration 60]
                        [--phase 10] [--clients 8] [--builddir DIR]
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))
sys.path[:0] = [os.path.join(top, "tests", "blackbox"), os.path.join(top, "tests", "dird"), here]

import pgtest  # noqa: E402
from bench import free_port, wait_port  # noqa: E402

WORDS = ["holiday", "photos", "report", "music", "album", "video", "backup", "notes", "draft",
         "linux", "debian", "image", "scan", "invoice", "movie", "lecture"]
TTL = 90
# Operations per online peer per second.
MIX = {"heartbeat": 1 / (TTL / 3), "index": 1 / 600, "search": 1 / 120, "login": 1 / 86400}


def token(i):
    return hashlib.sha256(b"sim-%d" % i).hexdigest()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_cpu(postmaster):
    """CPU of the PostgreSQL server: the postmaster and its children."""
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
            if int(d) == postmaster or int(st[1]) == postmaster:
                total += (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


class Client:
    """One keep-alive HTTP connection to a replica."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(self, method, path, tok=None, body=None):
        h = {"Content-Type": "application/json"}
        if tok:
            h["Authorization"] = "Bearer " + tok
        for attempt in range(2):
            try:
                self.c.request(method, path, body=body, headers=h)
                r = self.c.getresponse()
                r.read()
                return r.status
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=20000)
    ap.add_argument("--files", type=int, default=50, help="files per peer")
    ap.add_argument("--duration", type=int, default=60, help="seconds of the mixed phase")
    ap.add_argument("--phase", type=int, default=10, help="seconds of each single-operation phase")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--builddir", default=os.path.join(top, "build"))
    a = ap.parse_args()
    dird_bin = os.path.join(a.builddir, "src/dird/p2p-dird")
    work = tempfile.mkdtemp(prefix="p2p-scale-")
    print("machine: %d cores, load average %s" % (os.cpu_count(), open("/proc/loadavg").read().split()[:3]))
    pg = pgtest.Server(durable=True)
    procs = []
    try:
        db = pg.create_database()
        dbname = db.rsplit("/", 1)[1]

        def start(name):
            port = free_port()
            log = open(os.path.join(work, name + ".log"), "w")
            p = subprocess.Popen([dird_bin, "--listen", "127.0.0.1:%d" % port, "--database", db,
                                  "--ttl", str(TTL), "--login-burst", "10000", "--login-interval", "1",
                                  "--max-staleness", "5"], stderr=log)
            procs.append(p)
            wait_port(port, timeout=600)
            return p, port

        # The schema, and one real user whose password hash the others share.
        p, port = start("migrate")
        c = Client(port)
        assert c.req("POST", "/register", body=json.dumps({"username": "seed", "password": "pw"})) == 201
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        procs.remove(p)
        t0 = time.monotonic()
        now = int(time.time())
        pg.psql("""
INSERT INTO users(name, hash, created)
  SELECT 'sim' || g, (SELECT hash FROM users WHERE name = 'seed'), %(now)d FROM generate_series(0, %(n)d - 1) g;
INSERT INTO sessions(token_hash, user_id, expires)
  SELECT encode(sha256(convert_to(encode(sha256(convert_to('sim-' || g, 'UTF8')), 'hex'), 'UTF8')), 'hex'),
         u.id, %(now)d + 86400
  FROM generate_series(0, %(n)d - 1) g JOIN users u ON u.name = 'sim' || g;
INSERT INTO peers(user_id, ip, port, folder, last_seen, online)
  SELECT id, '127.0.0.1', 50001, '/srv/' || name, %(now)d, true FROM users WHERE name LIKE 'sim%%';
INSERT INTO files(peer_id, name, size, sha256)
  SELECT p.user_id, (ARRAY[%(words)s])[1 + (p.user_id + j) %% 16] || ' ' ||
         (ARRAY[%(words)s])[1 + (p.user_id * 7 + j * 3) %% 16] || ' ' || lpad(j::text, 6, '0') || '-' || p.user_id || '.dat',
         1000 + j, ''
  FROM peers p, generate_series(0, %(f)d - 1) j;
ANALYZE;
""" % {"now": now, "n": a.peers, "f": a.files, "words": ",".join("'%s'" % w for w in WORDS)}, dbname)
        print("seeded %d peers x %d files in %.1f s" % (a.peers, a.files, time.monotonic() - t0))
        t0 = time.monotonic()
        (pa, port_a), (pb, port_b) = start("a"), start("b")
        print("both replicas loaded the view in %.1f s" % (time.monotonic() - t0))
        postmaster = pg.proc.p.pid if hasattr(pg.proc, "p") else None
        if postmaster is None:
            postmaster = int(open(os.path.join(pg.data, "postmaster.pid")).readline())
        ids = {}  # peer index -> user name
        for line in pg.psql("SELECT name FROM users WHERE name LIKE 'sim%'", dbname).split():
            ids[int(line[3:])] = line

        def index_body(i, gen):
            return json.dumps({"ip": "127.0.0.1", "port": 50001, "folder": "/srv/sim%d" % i, "files": [
                {"name": "%s %s %06d-%d-%d.dat" % (WORDS[(i + j + gen) % 16], WORDS[(i * 7 + j) % 16], j, i, gen),
                 "size": 1000 + j} for j in range(a.files)]})

        def op(client, kind, rnd):
            i = rnd.randrange(a.peers)
            if kind == "heartbeat":
                return client.req("POST", "/heartbeat", token(i))
            if kind == "index":
                return client.req("POST", "/index", token(i), index_body(i, rnd.randrange(1000)))
            if kind == "search":
                if rnd.random() < 0.5:
                    return client.req("GET", "/search?q=%s&limit=50" % rnd.choice(WORDS), token(i))
                return client.req("GET", "/search?file=%s" % ("holiday%20photos%20000001-" + str(i) + ".dat"),
                                  token(i))
            return client.req("POST", "/login", body=json.dumps({"username": "sim%d" % i, "password": "pw"}))

        def snapshot():
            row = pg.psql("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted,"
                          " pg_current_wal_lsn() - '0/0' FROM pg_stat_database WHERE datname = '%s'" % dbname,
                          dbname).strip().split("|")
            q = []
            for port in (port_a, port_b):
                text = Client(port).c
                text.request("GET", "/metrics")
                m = text.getresponse().read().decode()
                q.append(float(re.search(r"^p2p_dird_database_queries_total (\S+)$", m, re.M).group(1)))
            return {"cpu_a": cpu_seconds(pa.pid), "cpu_b": cpu_seconds(pb.pid), "cpu_pg": pg_cpu(postmaster),
                    "xact": int(row[0]), "rows": int(row[1]) + int(row[2]) + int(row[3]), "wal": float(row[4]),
                    "queries": q[0] + q[1], "t": time.monotonic()}

        def phase(name, weights, seconds):
            stop = threading.Event()
            counts, errors = {}, {}
            lock = threading.Lock()

            def worker(k):
                rnd = random.Random(k)
                clients = [Client(port_a), Client(port_b)]
                kinds, w = zip(*weights.items())
                n = 0
                while not stop.is_set():
                    kind = rnd.choices(kinds, w)[0]
                    st = op(clients[n % 2], kind, rnd)
                    n += 1
                    with lock:
                        counts[kind] = counts.get(kind, 0) + 1
                        if st not in (200, 201, 404):
                            errors[st] = errors.get(st, 0) + 1
            s0 = snapshot()
            ts = [threading.Thread(target=worker, args=(k,)) for k in range(a.clients)]
            for t in ts:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in ts:
                t.join()
            s1 = snapshot()
            d = {k: s1[k] - s0[k] for k in s0}
            ops = sum(counts.values())
            # The two metrics scrapes cost 2 statements each (counts).
            print("%-10s %6d ops %7.0f/s  A %.3f ms CPU/op  B %.3f ms  PG %.3f ms  %.2f xact/op  %.2f rows/op"
                  "  %5.0f WAL B/op  %.3f stmt/op  %s%s" % (
                      name, ops, ops / d["t"], d["cpu_a"] * 1e3 / ops, d["cpu_b"] * 1e3 / ops,
                      d["cpu_pg"] * 1e3 / ops, d["xact"] / ops, d["rows"] / ops, d["wal"] / ops,
                      max(0.0, d["queries"] - 4) / ops, counts if len(counts) > 1 else "",
                      " errors %s" % errors if errors else ""))
            return d, counts

        print("\n%d simulated peers (%d files each) against replicas A and B, %d clients" % (
            a.peers, a.files, a.clients))
        for kind in ("heartbeat", "index", "search", "login"):
            phase(kind, {kind: 1}, a.phase if kind != "login" else max(3, a.phase // 2))
        # The realistic mix; logins are too rare to register in a minute.
        phase("mix", MIX, a.duration)
        offered = {k: v * a.peers for k, v in MIX.items()}
        print("\nreal-time rate of this mix for %d online peers: %s per second" % (
            a.peers, ", ".join("%s %.1f" % kv for kv in offered.items())))
        for name, port in (("A", port_a), ("B", port_b)):
            cl = Client(port).c
            cl.request("GET", "/metrics")
            m = cl.getresponse().read().decode()
            get = lambda k: re.search(r"^%s (\S+)$" % re.escape(k), m, re.M).group(1)  # noqa: E731
            print("replica %s: view %s files, name index %.1f MB, peers+files %.1f MB, RSS %.0f MB,"
                  " changes applied %s, reloads %s" % (
                      name, get("p2p_dird_replica_names"),
                      float(get('p2p_dird_replica_memory_bytes{part="name_index"}')) / 1e6,
                      float(get('p2p_dird_replica_memory_bytes{part="peers_files"}')) / 1e6,
                      float(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % (pa if name == "A" else pb).pid)
                                      .read()).group(1)) / 1024,
                      get("p2p_dird_replica_changes_applied_total"), get("p2p_dird_replica_reloads_total")))
        print("load average after: %s" % open("/proc/loadavg").read().split()[:3])
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
